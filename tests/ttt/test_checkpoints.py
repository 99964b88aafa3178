"""Checkpoint settings are checked, never taken on trust: `ttt_mode: false` serves the static model,
declared TTT layers without their tensors are an error (unless --ttt-init random), a TTT layer the
model lacks is an error, an architecture the forward does not know is one clear line."""
import json

import pytest
import torch

from rwttt_ray.config import ModelConfig
from rwttt_ray.core.request import Request
from rwttt_ray.ttt.checkpoint import checkpoint_dtype, load_model
from rwttt_ray.ttt.model import ModelError
from rwttt_ray.ttt.reference import SequentialReference
from tests.checkpoints import build_bpe_checkpoint
from tests.test_cli import rwttt


def edit_config(path, **kw):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(kw)
    (path / "config.json").write_text(json.dumps(cfg))


def test_ttt_mode_false_is_the_static_model(tmp_path, bpe_model):
    path = build_bpe_checkpoint(tmp_path / "off", ttt_mode=False)
    model = load_model(path)
    assert not model.settings.enabled and "static" in model.describe("cpu", 4)
    req = Request("a", tuple(range(5, 30)), 12)
    static, ttt = SequentialReference(model).run(req), SequentialReference(bpe_model).run(req)
    assert static.num_writes == 0 < ttt.num_writes
    assert max(float((a - b).abs().max()) for a, b in zip(static.logits, ttt.logits)) > 1e-3
    on = load_model(path, {"layers": (0,)})                     # asked for on the command line: on
    assert on.settings.enabled and "turns TTT on" in on.describe("cpu", 4)


def test_missing_ttt_tensors_are_an_error_unless_random_is_asked_for(tmp_path):
    path = build_bpe_checkpoint(tmp_path / "bare", with_ttt_tensors=False)
    with pytest.raises(ModelError, match="lacks 2 of their tensors.*--ttt-init random"):
        load_model(path)
    model = load_model(path, ttt_init="random")
    assert model.conv[0].abs().sum() > 0 and "--ttt-init random" in model.describe("cpu", 4)


def test_out_of_range_layers(tmp_path, bpe_dir):
    with pytest.raises(ModelError, match="--ttt-layers 5: .* has layers 0..1"):
        load_model(bpe_dir, {"layers": (5,)})
    with pytest.raises(ModelError, match="--ttt-layers 5"):
        ModelConfig(ttt_layers=(5, 6)).load_model()             # the built-in model checks too
    path = build_bpe_checkpoint(tmp_path / "wide")
    edit_config(path, ttt_layers=[0, 6])                      # the official configs name one past the end
    model = load_model(path)
    assert model.settings.layers == (0,) and "[6] do not exist" in model.describe("cpu", 4)
    edit_config(path, ttt_layers=[6])
    with pytest.raises(ModelError, match="none of the declared TTT layers"):
        load_model(path)


@pytest.mark.parametrize("arch", ["gpt2", "qwen2", None])
def test_unsupported_architecture_is_one_line(tmp_path, arch):
    path = tmp_path / "m"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": arch, "num_hidden_layers": 2}))
    with pytest.raises(ModelError, match="unsupported architecture"):
        load_model(path)
    res = rwttt("serve", str(path))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [
        f"rwttt: error: unsupported architecture {arch!r} in {path}: rwttt-ray serves qwen3, llama"]


def test_dtype_auto_is_the_checkpoints(bpe_dir, tmp_path):
    assert checkpoint_dtype(json.loads((bpe_dir / "config.json").read_text())) == "float32"
    assert ModelConfig(model=str(bpe_dir), dtype="auto").torch_dtype == torch.float32
    path = build_bpe_checkpoint(tmp_path / "bf")
    edit_config(path, dtype="bfloat16")
    assert ModelConfig(model=str(path), dtype="auto").torch_dtype == torch.bfloat16
    assert ModelConfig(dtype="auto").torch_dtype == torch.float32
