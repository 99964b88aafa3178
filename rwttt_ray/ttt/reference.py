"""The sequential reference: one owner at a time, batch 1, the oracle every batched path must match.

It is written independently of the batched engine: the transformers model's own forward with a
`DynamicCache`, whose TTT-layer MLPs are swapped for `ReferenceTTTMLP`, the In-Place TTT decode
loop of reference/inplace_ttt.md (full-matrix W cloned at the first WRITE, x/s row buffers,
READ-then-WRITE at every chunk boundary, boundaries found inside whatever block is fed).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rwttt_ray.text.codec import TextCodec
from rwttt_ray.text.stops import StopChecker
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.sampling import Request, sample


class ReferenceTTTMLP(torch.nn.Module):
    """A TTT layer's MLP holding one owner's state; wraps (does not copy) the original MLP."""

    def __init__(self, mlp: torch.nn.Module, conv: torch.Tensor, proj: torch.Tensor | None,
                 chunk: int, lr: float, use_embed: bool) -> None:
        super().__init__()
        self.mlp, self.conv, self.proj, self.chunk, self.lr, self.use_embed = mlp, conv, proj, chunk, lr, use_embed
        self.embeds: torch.Tensor | None = None   # [T, D] token embeddings of the block (input_embed target)
        self.reset()

    def reset(self) -> None:
        self.w: torch.Tensor | None = None        # full fast weight [D, F], fp32, from the first WRITE
        self.xs: list[torch.Tensor] = []           # buffered MLP inputs
        self.ss: list[torch.Tensor] = []           # buffered target sources
        self.num_writes = 0

    def _h(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp.act_fn(self.mlp.gate_proj(x)) * self.mlp.up_proj(x)

    def _read(self, x: torch.Tensor) -> torch.Tensor:
        w = self.mlp.down_proj.weight if self.w is None else self.w
        return (self._h(x).float() @ w.float().t()).to(x.dtype)

    def _write(self) -> None:
        xb, sb = torch.stack(self.xs), torch.stack(self.ss)                 # [C, D]
        h = self._h(xb).float()                                             # [C, F]
        u = F.conv1d(sb.float().t().unsqueeze(0), self.conv.float(), padding=2, groups=sb.shape[1])[0].t()
        v = u if self.proj is None else u @ self.proj.float()               # [C, D]
        base = self.mlp.down_proj.weight.float() if self.w is None else self.w
        self.w = base + self.lr * v.t() @ h                                 # W += eta V^T H
        self.xs, self.ss = [], []
        self.num_writes += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:                      # x: [1, T, D]
        rows, src = x[0], (self.embeds if self.use_embed else x[0])
        out, start = [], 0
        while start < rows.shape[0]:
            n = min(rows.shape[0] - start, self.chunk - len(self.xs))       # up to the next boundary
            out.append(self._read(rows[start:start + n]))                   # READ with the current W
            self.xs.extend(rows[start:start + n])
            self.ss.extend(src[start:start + n])
            if len(self.xs) == self.chunk:
                self._write()                                               # WRITE after the chunk's last read
            start += n
        return torch.cat(out).unsqueeze(0)


@dataclass
class ReferenceResult:
    """One owner's sequential run: tokens, logits per emitted token, fast-weight deltas."""

    tokens: list[int]
    logits: list[torch.Tensor] = field(default_factory=list)
    deltas: list[torch.Tensor] | None = None   # W - W0 per TTT layer [D, F]; None if never written
    num_writes: int = 0
    token_times_s: list[float] = field(default_factory=list)   # perf_counter at each emitted token


class SequentialReference:
    """Runs requests one at a time through the unbatched model (the paper's serial TTT path)."""

    def __init__(self, model: TTTModel, record_logits: bool = True) -> None:
        self.model, self.record_logits = model, record_logits

    @contextmanager
    def _patched(self):
        s, layers = self.model.settings, self.model.hf.model.layers
        originals = {i: layers[i].mlp for i in s.layers} if s.enabled else {}
        mlps = {i: ReferenceTTTMLP(m, self.model.conv[i], self.model.proj[i] if s.use_proj else None,
                                   s.chunk, s.lr, s.target == "input_embed") for i, m in originals.items()}
        for i, m in mlps.items():
            layers[i].mlp = m
        try:
            yield mlps
        finally:
            for i, m in originals.items():
                layers[i].mlp = m

    @torch.inference_mode()
    def run(self, req: Request) -> ReferenceResult:
        return self.run_turns([req])[-1]

    @torch.inference_mode()
    def run_turns(self, turns: list[Request]) -> list[ReferenceResult]:
        """One owner's stream over several turns (a session): turn k's prompt tokens follow the
        tokens generated by turn k-1, whose last token is fed first. Results per turn."""
        from transformers import DynamicCache

        hf, results = self.model.hf, []
        with self._patched() as mlps:
            cache, carry, stream = DynamicCache(), [], []
            for req in turns:
                res = ReferenceResult(tokens=[])
                block = carry + list(req.prompt)
                stream += list(req.prompt)
                stops = StopChecker(TextCodec(self.model.tokenizer), req.stop, req.stop_ids, req.skip_special_tokens,
                                    context=stream)
                while True:
                    ids = torch.tensor([block], device=hf.device)
                    for m in mlps.values():
                        m.embeds = hf.model.embed_tokens(ids)[0]
                    logits = hf(input_ids=ids, cache=cache, use_cache=True).logits[0, -1].float()
                    if self.record_logits:
                        res.logits.append(logits.clone())
                    tok = sample(logits, req, len(res.tokens), res.tokens, stream)
                    res.tokens.append(tok)
                    stream.append(tok)
                    res.token_times_s.append(time.perf_counter())
                    if stops.push(tok) is not None or len(res.tokens) >= req.max_new_tokens:
                        break
                    block = [tok]
                carry = [res.tokens[-1]]
                self._collect_state(mlps, res)
                results.append(res)
        return results

    def _collect_state(self, mlps: dict, res: ReferenceResult) -> None:
        res.num_writes = next(iter(mlps.values())).num_writes if mlps else 0
        if mlps and next(iter(mlps.values())).w is not None:
            res.deltas = [m.w - m.mlp.down_proj.weight.float() for m in mlps.values()]

    def run_all(self, requests: list[Request]) -> dict[str, ReferenceResult]:
        return {r.owner_id: self.run(r) for r in requests}
