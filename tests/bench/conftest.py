import pytest

from rwttt_ray.ttt.model import build_default_model


@pytest.fixture(scope="session")
def model_c8():
    """The built-in default model with chunk 8, so short streams cross many WRITE boundaries."""
    model = build_default_model()
    return model.with_settings(model.settings.with_overrides(chunk=8))
