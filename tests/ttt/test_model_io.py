"""The built-in model is deterministic, non-trivial TTT; a checkpoint in the official
In-Place-TTT layout saves and loads back with identical outputs."""
import json

import pytest
import torch
from safetensors import safe_open

from rwttt_ray.ttt.checkpoint import load_model, save_checkpoint
from rwttt_ray.ttt.model import ModelError, build_default_model
from rwttt_ray.ttt.reference import SequentialReference
from rwttt_ray.ttt.sampling import Request
from rwttt_ray.ttt.tokenizer import ByteTokenizer


def test_default_model_is_deterministic_and_ttt_params_nonzero(model):
    other = build_default_model()
    x = torch.tensor([[5, 6, 7, 8]])
    assert torch.equal(model.hf(x).logits, other.hf(x).logits)
    for i in model.settings.layers:
        assert model.conv[i].abs().sum() > 0 and model.proj[i].abs().sum() > 0
        assert torch.equal(model.conv[i], other.conv[i])


def test_official_layout_roundtrip(model_c8, tmp_path):
    path = save_checkpoint(model_c8, tmp_path / "ckpt")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["ttt_layers"] == list(model_c8.settings.layers) and cfg["ttt_chunk"] == 8
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    for i in model_c8.settings.layers:
        assert f"model.layers.{i}.mlp.ttt_conv.weight" in keys and f"model.layers.{i}.mlp.ttt_proj.weight" in keys
    loaded = load_model(path)
    assert loaded.settings == model_c8.settings
    for i in model_c8.settings.layers:
        assert torch.equal(loaded.conv[i], model_c8.conv[i]) and torch.equal(loaded.proj[i], model_c8.proj[i])
    req = Request("a", tuple(range(40, 60)), 12)
    a, b = SequentialReference(model_c8).run(req), SequentialReference(loaded).run(req)
    assert a.tokens == b.tokens and a.num_writes == b.num_writes > 0
    assert max(float((x - y).abs().max()) for x, y in zip(a.logits, b.logits)) < 1e-5   # same weights


def test_plain_checkpoint_needs_ttt_settings(model, tmp_path):
    model.hf.save_pretrained(str(tmp_path / "plain"))
    with pytest.raises(ModelError, match="ttt"):
        load_model(tmp_path / "plain")


def test_missing_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        load_model(tmp_path / "nope")


def test_byte_tokenizer_roundtrip():
    tok = ByteTokenizer()
    text = "héllo, wörld ✓"
    assert tok.decode(tok.encode(text)) == text
    assert all(3 <= i < tok.vocab_size for i in tok.encode(text))
