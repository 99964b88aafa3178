import pytest

from rwttt_ray.ttt.model import build_default_model


@pytest.fixture(scope="session")
def model():
    """The built-in default model (chunk 32)."""
    return build_default_model()


@pytest.fixture(scope="session")
def model_c8(model):
    """The same weights with chunk 8, so short runs cross many WRITE boundaries."""
    return model.with_settings(model.settings.with_overrides(chunk=8))


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory):
    """The small checkpoint with a real BPE tokenizer (tests/checkpoints.py), chunk 8."""
    from tests.checkpoints import build_bpe_checkpoint

    return build_bpe_checkpoint(tmp_path_factory.mktemp("bpe") / "ckpt")


@pytest.fixture(scope="session")
def bpe_model(bpe_dir):
    from rwttt_ray.ttt.checkpoint import load_model

    return load_model(bpe_dir)
