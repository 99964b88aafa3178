import pytest
import torch

from rwttt_ray.ttt.model import build_default_model


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run tiny matmuls: one thread is fastest, and two OpenMP threads on two shared,
    busy cores spin-wait (measured ~30x slower). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_c8():
    """The built-in default model with chunk 8, so short streams cross many WRITE boundaries."""
    model = build_default_model()
    return model.with_settings(model.settings.with_overrides(chunk=8))
