"""FastWeightForward: a batched forward of a transformers Qwen3/Llama model with fast weights.

It adapts the model without copying base weights: it calls the model's own norms, projections,
rotary embedding and lm_head, and replaces only what batching needs: per-owner paged KV
(SequencePool's PagedKV: each row's blocks through its block table), and in TTT layers `out = h @ W0^T + h @ dW^T[slot]` (one shared base GEMM plus
per-owner products over slot views) while appending the MLP-input rows to each owner's chunk buffer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rwttt_ray.ttt.kernels import gated_hidden, read_delta_
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.pool import FastWeightPool
from rwttt_ray.ttt.seqpool import SequencePool
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb


@dataclass(frozen=True)
class BatchView:
    """Where each row of a batch lives: B rows, each an owner feeding T tokens."""

    seq_slots: tuple[int, ...]              # SequencePool device row per batch row
    positions: tuple[int, ...]              # absolute position of each row's first token
    fills: tuple[int, ...]                  # chunk-buffer rows already held per row (fill + T <= C)
    fast_slots: tuple[int | None, ...]      # FastWeightPool slot per row (None: delta is zero)

    def index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(seq rows, positions, fills) as index tensors, built once per forward."""
        return (torch.tensor(self.seq_slots, device=device), torch.tensor(self.positions, device=device),
                torch.tensor(self.fills, device=device))

    def kv_slots(self, seqs: SequencePool, t: int, device: torch.device) -> torch.Tensor:
        """The flat KV cache slots the block's tokens are written to, row-major [B * T]."""
        return torch.tensor([s for r, p in zip(self.seq_slots, self.positions) for s in seqs.kv.slots(r, p, t)],
                            device=device)


class FastWeightForward:
    """Runs [B, T] token blocks through the model for owners placed in the pools."""

    def __init__(self, model: TTTModel, seqs: SequencePool, pool: FastWeightPool | None) -> None:
        self.model, self.seqs, self.pool = model, seqs, pool
        hf = model.hf
        self.base = hf.model
        self.layers = list(self.base.layers)
        self.ttt_index = {layer: i for i, layer in enumerate(model.settings.layers)} if model.settings.enabled else {}
        self.device = next(hf.parameters()).device
        self.dtype = next(hf.parameters()).dtype

    @torch.inference_mode()
    def __call__(self, tokens: torch.Tensor, view: BatchView, all_logits: bool = False) -> torch.Tensor:
        """tokens: [B, T] -> logits [B, V] at each row's last token ([B, T, V] if all_logits)."""
        bsz, t = tokens.shape
        tokens = tokens.to(self.device)
        pos = torch.tensor(view.positions, device=self.device).unsqueeze(1) + torch.arange(t, device=self.device)
        embeds = self.base.embed_tokens(tokens)                               # [B, T, D]
        cos_sin = self.base.rotary_emb(embeds, pos)
        self.seqs.kv.sync_table()
        self._blocks = -(-(max(view.positions) + t) // self.seqs.kv.block_size)
        mask = self._mask(pos, self._blocks * self.seqs.kv.block_size)
        self._idx = view.index(self.device)
        self._slots = view.kv_slots(self.seqs, t, self.device)
        x = embeds
        for li, layer in enumerate(self.layers):
            x = x + self._attention(li, layer, layer.input_layernorm(x), cos_sin, mask, view, pos)
            x = x + self._mlp(li, layer, layer.post_attention_layernorm(x), embeds, view)
        x = self.base.norm(x)
        return self.model.hf.lm_head(x if all_logits else x[:, -1]).float()

    def _mask(self, pos: torch.Tensor, length: int) -> torch.Tensor:
        keys = torch.arange(length, device=self.device)
        return (keys.view(1, 1, 1, -1) <= pos.view(pos.shape[0], 1, -1, 1))   # [B, 1, T, L]

    def _attention(self, li, layer, h, cos_sin, mask, view, pos) -> torch.Tensor:
        attn = layer.self_attn
        bsz, t, _ = h.shape
        shape = (bsz, t, -1, attn.head_dim)
        q, k = attn.q_proj(h).view(shape), attn.k_proj(h).view(shape)
        if hasattr(attn, "q_norm"):
            q, k = attn.q_norm(q), attn.k_norm(k)
        v = attn.v_proj(h).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), *cos_sin)
        kv = self.seqs.kv
        kv.write(li, k.transpose(1, 2).reshape(bsz * t, k.shape[1], -1),
                 v.transpose(1, 2).reshape(bsz * t, v.shape[1], -1), self._slots)
        keys, values = kv.read(li, self._idx[0], self._blocks)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling,
                                             enable_gqa=q.shape[1] != keys.shape[1])
        return attn.o_proj(out.transpose(1, 2).reshape(bsz, t, -1))

    def _mlp(self, li, layer, x, embeds, view) -> torch.Tensor:
        mlp = layer.mlp
        ti = self.ttt_index.get(li)
        if ti is None:
            return mlp(x)
        h = gated_hidden(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.act_fn)   # [B, T, F]
        out = F.linear(h, mlp.down_proj.weight)                                    # shared W0 GEMM
        rows = [b for b, s in enumerate(view.fast_slots) if s is not None]
        read_delta_(out, h, self.pool.layers[ti], rows, [view.fast_slots[b] for b in rows])
        self._buffer_rows(ti, x, h, embeds, view)
        return out

    def _buffer_rows(self, ti: int, x: torch.Tensor, h: torch.Tensor, embeds: torch.Tensor, view: BatchView) -> None:
        t = x.shape[1]
        targets = [(self.seqs.xbuf[ti], x), (self.seqs.hbuf[ti], h)]
        if self.seqs.sbuf is not None:
            targets.append((self.seqs.sbuf[ti], embeds))
        for buf, rows in targets:
            if t == 1:
                buf[self._idx[0], self._idx[2]] = rows[:, 0]
                continue
            for b, (s, f) in enumerate(zip(view.seq_slots, view.fills)):
                buf[s, f:f + t] = rows[b]
