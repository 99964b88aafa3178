"""A small checkpoint with a real BPE tokenizer, built offline in the tests (nothing downloaded).

A byte-level BPE (the `tokenizers` library, trained on the text below, so multi-byte characters
are split into several tokens), wrapped in PreTrainedTokenizerFast with a ChatML template and
`<|im_end|>` as EOS; a tiny random Qwen3 in the official In-Place-TTT layout; and a
generation_config.json whose `eos_token_id` is a list. The EOS row of the output layer is tilted
so greedy replies of the random model reach EOS within tens of tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from rwttt_ray.ttt.checkpoint import save_checkpoint
from rwttt_ray.ttt.model import build_default_model
from rwttt_ray.ttt.settings import TTTSettings

TEXT = ["The quick brown fox jumps over the lazy dog. héllo wörld ✓ 日本語のテキスト 🎉 emoji ñandú",
        "Ein Bär läuft über die Straße. Привет мир. 你好，世界。 naïve café résumé",
        "user assistant system: tell me a story about a cat who lives in Zürich and eats crème brûlée."]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
ARCH = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32, max_position_embeddings=512, tie_word_embeddings=False)


def bpe_tokenizer(vocab_size: int = 400, metaspace: bool = False):
    """A byte-level BPE (or, with `metaspace`, a SentencePiece-style one) trained on TEXT."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=metaspace))
    if metaspace:
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        alphabet = sorted(set("".join(TEXT)))
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(TEXT * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHATML, clean_up_tokenization_spaces=False)


def _tilt_eos(model, eos: int, rate: float = 0.06) -> None:
    """Make EOS the argmax at about `rate` of positions: its output row becomes a scaled mean of
    the final hidden states of some text, scaled until that share of positions picks it."""
    hf = model.hf
    ids = torch.randint(3, hf.config.vocab_size, (4, 96), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        h = hf.model(input_ids=ids).last_hidden_state.reshape(-1, hf.config.hidden_size)
        direction = h.mean(0) / h.mean(0).norm()
        logits = h @ hf.lm_head.weight.t()
        for scale in torch.linspace(0.0, 50.0, 501):
            eos_logit = scale * (h @ direction)
            others = logits.clone()
            others[:, eos] = float("-inf")
            if (eos_logit > others.max(1).values).float().mean() >= rate:
                break
        hf.lm_head.weight[eos] = scale * direction


def build_bpe_checkpoint(path: str | Path, chunk: int = 8, ttt_mode: bool = True, with_ttt_tensors: bool = True,
                         generation: dict | None = None) -> Path:
    """Write the checkpoint to `path` and return it."""
    path = Path(path)
    tok = bpe_tokenizer()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    model = build_default_model(TTTSettings(layers=(0,), chunk=chunk, lr=0.3), vocab_size=len(tok), **ARCH)
    _tilt_eos(model, eos)
    save_checkpoint(model, path)
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(ttt_mode=ttt_mode, eos_token_id=eos, bos_token_id=None, pad_token_id=tok.pad_token_id)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    if not with_ttt_tensors:
        from safetensors.torch import load_file, save_file

        tensors = {k: v for k, v in load_file(str(path / "model.safetensors")).items() if ".mlp.ttt_" not in k}
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    tok.save_pretrained(str(path))
    gen = {"eos_token_id": [eos, tok.convert_tokens_to_ids("<|endoftext|>")], **(generation or {})}
    (path / "generation_config.json").write_text(json.dumps(gen, indent=2))
    return path
