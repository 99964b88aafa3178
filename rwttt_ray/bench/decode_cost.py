"""The decode forward's cost against a plain-torch static step on the same weights.

`plain_step` is what a hand-written static decoder would do with the model's weights and no
serving machinery: fused QKV and gate/up GEMMs, a preallocated contiguous KV cache per row and,
on the TTT layers, each row's own fast weight READ by one `bmm` from a contiguous [B, F, D]
tensor (the same weights: a TTT model's forward reads them; `fast=False` leaves them out, which
is the step of the base model). The bench times it, the static-shape round of the serving loop
(`StaticDecoder.step`: paged KV, the pool's fast-weight READ, chunk buffers) and the eager group
forward (`FastWeightForward`) on one batch at one context, and reports milliseconds and ratios.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from rwttt_ray.ttt.decode import StaticDecoder, _fused
from rwttt_ray.ttt.forward import BatchView
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.runner import GroupRunner
from rwttt_ray.ttt.sampling import Request
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb


def plain_step(model: TTTModel, batch: int, context: int, fast: bool = True) -> Callable[[], torch.Tensor]:
    """A plain-torch decode step of `batch` rows at position `context` (cache preallocated;
    `fast`: with each row's fast-weight READ on the TTT layers)."""
    hf = model.hf
    base, cfg = hf.model, hf.config
    device, dtype = next(hf.parameters()).device, next(hf.parameters()).dtype
    fused = [_fused(layer) for layer in base.layers]
    shape = (batch, cfg.num_key_value_heads, context + 1, cfg.head_dim)
    cache = [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
             for _ in base.layers]
    ttt = set(model.settings.layers) if model.settings.enabled and fast else set()
    deltas = {i: torch.full((batch, cfg.intermediate_size, cfg.hidden_size), 1e-3, device=device)
              for i in ttt if i < len(base.layers)}                   # fp32, like the pool's
    tok = torch.full((batch, 1), 50, device=device)
    pos = torch.full((batch, 1), context, device=device)

    def step() -> torch.Tensor:
        x = base.embed_tokens(tok)
        cos_sin = base.rotary_emb(x, pos)
        for li, (layer, (qkv, gate_up, (nq, nk)), (kc, vc)) in enumerate(zip(base.layers, fused, cache)):
            attn, hd = layer.self_attn, layer.self_attn.head_dim
            q, k, v = F.linear(layer.input_layernorm(x), qkv).split((nq, nk, nk), dim=-1)
            q, k = attn.q_norm(q.view(batch, 1, -1, hd)), attn.k_norm(k.view(batch, 1, -1, hd))
            q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), *cos_sin)
            kc[:, :, context] = k[:, :, 0]
            vc[:, :, context] = v.view(batch, -1, hd)
            out = F.scaled_dot_product_attention(q, kc, vc, scale=attn.scaling, enable_gqa=True)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(batch, 1, -1))
            g, u = F.linear(layer.post_attention_layernorm(x), gate_up).chunk(2, dim=-1)
            hidden = layer.mlp.act_fn(g) * u
            out = F.linear(hidden, layer.mlp.down_proj.weight)
            if li in deltas:
                out = out + torch.bmm(hidden.to(deltas[li].dtype), deltas[li]).to(out.dtype)
            x = x + out
        return torch.argmax(hf.lm_head(base.norm(x[:, 0])).float(), dim=-1)
    return step


def _serving_steps(model: TTTModel, batch: int, context: int) -> tuple[Callable, Callable]:
    runner = GroupRunner(model, max_owners=batch, max_seq_len=context + 1)
    for i in range(batch):
        runner.admit(Request(f"o{i}", tuple(40 + j % 50 for j in range(context)), 1))
        runner.seqs.ensure(f"o{i}", context + 1, 0)
        if model.settings.enabled:          # a committed delta, so the READ does real work
            runner.pool.load(f"o{i}", [torch.full_like(layer[0], 1e-3) for layer in runner.pool.layers])
    dec = StaticDecoder(model, runner.seqs, runner.pool, graphs=False)
    dev = dec.device
    rows, tok = torch.arange(batch, device=dev), torch.full((batch,), 50, device=dev)
    pos = torch.full((batch,), context, device=dev)
    fills = torch.full((batch,), context % model.settings.chunk, device=dev)
    slots = torch.tensor([runner.seqs.kv.slots(i, context, 1)[0] for i in range(batch)], device=dev)
    blocks = -(-(context + 1) // runner.seqs.kv.block_size)
    runner.seqs.kv.sync_table()
    view = BatchView(tuple(range(batch)), (context,) * batch, (context % model.settings.chunk,) * batch,
                     tuple(runner.pool.slot_of(f"o{i}") for i in range(batch)))
    home = all(runner.seqs.kv.at_home(i) for i in range(batch))
    return (lambda: dec.step(tok, pos, rows, slots, fills, blocks, home),
            lambda: runner.forward(tok.view(batch, 1), view))


def _ms(fn: Callable, iters: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            fn()
        _sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync()
    return 1e3 * (time.perf_counter() - t0) / iters


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def decode_costs(model: TTTModel, batch: int = 8, context: int = 192, iters: int = 30) -> dict:
    """ms per decode step: plain torch (with and without the fast-weight READ), the static round,
    the eager group forward; ratios to plain torch with the READ (the same weights)."""
    static, eager = _serving_steps(model, batch, context)
    steps = {"plain": plain_step(model, batch, context), "plain_no_ttt": plain_step(model, batch, context, fast=False),
             "static": static, "eager": eager}
    ms = {k: min(_ms(fn, iters) for _ in range(2)) for k, fn in steps.items()}     # the better of two
    return {"batch": batch, "context": context, **{f"{k}_ms": round(v, 3) for k, v in ms.items()},
            "static_vs_plain": round(ms["static"] / ms["plain"], 3), "eager_vs_plain": round(ms["eager"] / ms["plain"], 3)}
