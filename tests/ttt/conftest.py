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
