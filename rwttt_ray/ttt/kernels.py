"""Plain-torch batched fast-weight kernels: the only place the TTT maths touches tensors in batch.

Layout: per TTT layer a pool of fp32 delta slots `pool: [S, F, D]`, each slot holding an owner's
dW transposed (dW^T = eta * sum_chunks H^T V), so a READ is `h @ pool[slot]`. Named dims:
B owners in a group, T tokens per owner, C chunk rows, D d_model, F d_ff, S slots.
Every op states its semantics as torch code; tests compare each with a float64 loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gated_hidden(x: torch.Tensor, gate_w: torch.Tensor, up_w: torch.Tensor, act) -> torch.Tensor:
    """Semantics: h = act(x @ gate_w.T) * (x @ up_w.T).   x: [..., D] -> [..., F]."""
    return act(F.linear(x, gate_w)) * F.linear(x, up_w)


def chunk_values(s: torch.Tensor, conv_w: torch.Tensor, proj: torch.Tensor | None) -> torch.Tensor:
    """V-hat of whole chunks: depthwise conv (width 5, zero-padded inside each chunk), then @ P.

    Semantics: u[g, t] = sum_{j=-2..2} conv_w[:, 0, j+2] * s[g, t+j]  (s[g, t+j] = 0 outside
    [0, C)); v = u @ proj (proj as stored, no transpose; None -> v = u).
    s: [G, C, D]; conv_w: [D, 1, 5]; proj: [D, D] -> [G, C, D].
    """
    d = s.shape[-1]
    u = F.conv1d(s.transpose(1, 2), conv_w.to(s.dtype), padding=2, groups=d).transpose(1, 2)
    return u if proj is None else u @ proj.to(s.dtype)


def read_delta_(out: torch.Tensor, h: torch.Tensor, pool: torch.Tensor, rows: list[int],
                slots: list[int]) -> torch.Tensor:
    """Add each owner's fast-weight delta to the shared base output, in place, without gathering.

    Semantics: for i: out[rows[i]] += h[rows[i]] @ pool[slots[i]].
    out: [B, T, D] (modified in place); h: [B, T, F]; pool: [S, F, D] fp32.
    When rows are 0..n-1 and slots a contiguous ascending range, one bmm over the pool view;
    otherwise one mm per owner over slot views (never `pool[slots]`, which copies whole matrices).
    """
    if not rows:
        return out
    n = len(rows)
    hf = h.to(pool.dtype)
    if rows == list(range(n)) and slots == list(range(slots[0], slots[0] + n)):
        if out.dtype == pool.dtype:
            out[:n].baddbmm_(hf[:n], pool[slots[0]:slots[0] + n])
        else:
            out[:n] += torch.bmm(hf[:n], pool[slots[0]:slots[0] + n]).to(out.dtype)
        return out
    for r, s in zip(rows, slots):
        out[r] += (hf[r] @ pool[s]).to(out.dtype)
    return out


def write_candidate_(pool: torch.Tensor, cand_slot: int, base_slot: int | None, h: torch.Tensor,
                     v: torch.Tensor, lr: float) -> None:
    """The dirty candidate of one owner's WRITE, written in place into a reserved slot.

    Semantics: pool[cand_slot] = (pool[base_slot] if base_slot is not None else 0) + lr * h.T @ v.
    pool: [S, F, D] fp32; h: [C, F]; v: [C, D]. The base slot is only read, so the committed
    state stays intact until commit publishes the candidate slot (rollback just frees it).
    """
    hf, vf = h.to(pool.dtype), v.to(pool.dtype)
    if base_slot is None:
        torch.mm(hf.t(), vf, out=pool[cand_slot])
        pool[cand_slot].mul_(lr)
    else:
        torch.addmm(pool[base_slot], hf.t(), vf, alpha=lr, out=pool[cand_slot])
