"""StaticDecoder: static-shape greedy decode rounds over device rows [0, bucket) (torch, no ray).

A run of R decode rounds is prepared on the host once (`DecodeInputs`: per round and row the
position, the state row, the KV slot, the chunk-buffer row and whether the row is a member),
copied to the device in one transfer, and executed with no host sync: each round embeds the
rows' current tokens, runs every layer with fused QKV and gate/up weights, READs the fast
weights with one `bmm` over the pool's rows [0, bucket), samples greedily on the device and
feeds the tokens to the next round; the tokens (and logits, if recorded) come back in one copy.
A padding row (no member of this round) has state row = the scratch row, so its KV and buffer
writes land in the scratch block and row, and its output is discarded: it changes no state.
On CUDA each (bucket, KV blocks) shape is captured once as a CUDA graph and replayed, unless
graphs are off (`enforce_eager`); on CPU the same step runs eagerly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.pool import FastWeightPool
from rwttt_ray.ttt.seqpool import SequencePool
from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb


def bucket_sizes(capacity: int) -> tuple[int, ...]:
    """Batch buckets: powers of two below the slot count, and the slot count itself."""
    sizes, b = [], 1
    while b < capacity:
        sizes.append(b)
        b *= 2
    return (*sizes, capacity)


@dataclass(frozen=True)
class DecodeInputs:
    """A prepared run: R rounds over `bucket` rows attending `blocks` KV blocks; tensors [R, bucket]."""

    bucket: int
    blocks: int
    first: torch.Tensor        # [bucket] token each row feeds in the first round
    pos: torch.Tensor          # position of the fed token
    rows: torch.Tensor         # state row (scratch for padding)
    slots: torch.Tensor        # flat KV slot of the fed token
    fills: torch.Tensor        # chunk-buffer row of the fed token
    member: torch.Tensor       # bool: the row READs in this round
    contiguous: bool = False   # every member's KV blocks at home: attention reads a view, no gather

    def to(self, device: torch.device) -> "DecodeInputs":
        packed = torch.stack([self.pos, self.rows, self.slots, self.fills, self.member.long()]).to(device)
        return DecodeInputs(self.bucket, self.blocks, self.first.to(device), packed[0], packed[1], packed[2],
                            packed[3], packed[4].bool(), self.contiguous)


def _fused(layer: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """The layer's QKV and gate/up weights concatenated (made once per model, then cached)."""
    cached = getattr(layer, "_rwttt_fused", None)
    if cached is None:
        attn, mlp = layer.self_attn, layer.mlp
        qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
        cached = (qkv, gate_up, (attn.q_proj.weight.shape[0], attn.k_proj.weight.shape[0]))
        layer._rwttt_fused = cached
    return cached


class StaticDecoder:
    def __init__(self, model: TTTModel, seqs: SequencePool, pool: FastWeightPool, *, graphs: bool = True) -> None:
        self.model, self.seqs, self.pool = model, seqs, pool
        hf = model.hf
        self.base, self.layers = hf.model, list(hf.model.layers)
        if any(getattr(layer.self_attn.q_proj, "bias", None) is not None for layer in self.layers):
            raise ValueError("static decode needs bias-free attention projections")
        self.fused = [_fused(layer) for layer in self.layers]
        self.ttt_index = {layer: i for i, layer in enumerate(model.settings.layers)} if model.settings.enabled else {}
        self.device = next(hf.parameters()).device
        self.dtype = next(hf.parameters()).dtype
        self.buckets = bucket_sizes(seqs.capacity)
        self.graphs = graphs and self.device.type == "cuda"
        self._captured: dict[tuple[int, int], tuple] = {}
        self.profile = {"host_sync": 0.0}          # the runner's profile dict, when it shares one
        self.runs = {"view": 0, "gather": 0}       # runs whose attention read a view of home blocks, or gathered

    def bucket(self, rows: int) -> int:
        return next(b for b in self.buckets if b >= rows)

    def blocks(self, needed: int) -> int:
        """KV blocks a run attends: exact on CPU; a power of two (fewer graphs) on CUDA."""
        if not self.graphs:
            return needed
        b = 1
        while b < needed:
            b *= 2
        return min(b, self.seqs.kv.max_blocks)

    @torch.inference_mode()
    def run(self, inputs: DecodeInputs, record_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens [R, bucket] (and logits [R, bucket, V]) of the run, on the host."""
        x = inputs.to(self.device)
        self.seqs.kv.sync_table()
        self.runs["view" if x.contiguous else "gather"] += 1
        rounds = x.pos.shape[0]
        toks = torch.empty((rounds, x.bucket), dtype=torch.long, device=self.device)
        logits = (torch.empty((rounds, x.bucket, self.model.hf.config.vocab_size), dtype=torch.float32,
                              device=self.device) if record_logits else None)
        cur = x.first.clone()
        for r in range(rounds):
            nxt, lg = self._round(cur, x.pos[r], x.rows[r], x.slots[r], x.fills[r], x.blocks, x.contiguous)
            toks[r] = nxt
            if logits is not None:
                logits[r] = lg
            cur = torch.where(x.member[r], nxt, cur)
        t0 = time.perf_counter()
        out = toks.cpu(), None if logits is None else logits.cpu()     # the run's one device-to-host copy
        self.profile["host_sync"] += time.perf_counter() - t0
        return out

    def _round(self, tok, pos, rows, slots, fills, blocks, contiguous):
        if not self.graphs:
            return self.step(tok, pos, rows, slots, fills, blocks, contiguous)
        key = (tok.shape[0], blocks, contiguous)
        if key not in self._captured:
            self._captured[key] = self._capture(tok, pos, rows, slots, fills, blocks, contiguous)
        graph, ins, outs = self._captured[key]
        for buf, val in zip(ins, (tok, pos, rows, slots, fills)):
            buf.copy_(val)
        graph.replay()
        return outs

    def _capture(self, *args) -> tuple:
        ins = tuple(a.clone() for a in args[:5])
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):                          # warm-up (cuBLAS workspaces, lazy inits)
                self.step(*ins, *args[5:])
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outs = self.step(*ins, *args[5:])
        return graph, ins, outs

    def step(self, tok: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor,
             fills: torch.Tensor, blocks: int, contiguous: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One decode round over `bucket` rows: (greedy tokens [bucket], logits [bucket, V]);
        `contiguous`: the members' KV is at home (PagedKV.at_home), read without a gather."""
        embeds = self.base.embed_tokens(tok).unsqueeze(1)                          # [B, 1, D]
        cos_sin = self.base.rotary_emb(embeds, pos.unsqueeze(1))
        length = blocks * self.seqs.kv.block_size
        mask = torch.arange(length, device=self.device).view(1, 1, 1, -1) <= pos.view(-1, 1, 1, 1)
        h = embeds
        for li, layer in enumerate(self.layers):
            h = h + self._attention(li, layer, layer.input_layernorm(h), cos_sin, mask, rows, slots, blocks,
                                    contiguous)
            h = h + self._mlp(li, layer, layer.post_attention_layernorm(h), embeds, rows, fills)
        logits = self.model.hf.lm_head(self.base.norm(h[:, 0])).float()
        return torch.argmax(logits, dim=-1), logits

    def _attention(self, li, layer, h, cos_sin, mask, rows, slots, blocks, contiguous) -> torch.Tensor:
        attn, (qkv, _, (nq, nk)) = layer.self_attn, self.fused[li]
        bsz, hd = h.shape[0], attn.head_dim
        q, k, v = F.linear(h, qkv).split((nq, nk, nk), dim=-1)
        q, k = q.view(bsz, 1, -1, hd), k.view(bsz, 1, -1, hd)
        if hasattr(attn, "q_norm"):
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), *cos_sin)
        kv = self.seqs.kv
        kv.write(li, k[:, :, 0], v.view(bsz, -1, hd), slots)
        keys, values = kv.read(li, rows, blocks, contiguous)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling,
                                             enable_gqa=q.shape[1] != keys.shape[1])
        return attn.o_proj(out.transpose(1, 2).reshape(bsz, 1, -1))

    def _mlp(self, li, layer, x, embeds, rows, fills) -> torch.Tensor:
        mlp, (_, gate_up, _) = layer.mlp, self.fused[li]
        g, u = F.linear(x, gate_up).chunk(2, dim=-1)
        hidden = mlp.act_fn(g) * u                                                  # [B, 1, F]
        out = F.linear(hidden, mlp.down_proj.weight)
        ti = self.ttt_index.get(li)
        if ti is None:
            return out
        fast = self.pool.layers[ti][:x.shape[0]]                                    # rows [0, bucket): a view
        if out.dtype == fast.dtype:
            out.baddbmm_(hidden, fast)
        else:
            out += torch.bmm(hidden.to(fast.dtype), fast).to(out.dtype)
        seqs = self.seqs
        seqs.xbuf[ti][rows, fills] = x[:, 0]
        seqs.hbuf[ti][rows, fills] = hidden[:, 0]
        if seqs.sbuf is not None:
            seqs.sbuf[ti][rows, fills] = embeds[:, 0]
        return out
