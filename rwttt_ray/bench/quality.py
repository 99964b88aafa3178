"""Quality gates (the paper's Table 6): teacher-forced NLL/perplexity and top-5 relative drift,
the batched serving loop (`ttt.local.LocalLoop`) versus the sequential reference, on seeded held-out text.

Held-out streams are English-like text (`ruler.english_text`, no downloads) as tokens. Both paths
score them teacher-forced and both apply every TTT WRITE as the stream crosses chunk boundaries:
- reference: `TeacherForcedReference` feeds a whole stream as one block through the sequential
  reference's model (its TTT MLPs READ, then WRITE at each boundary inside the block) and keeps the
  logits of every position;
- engine: a stream's first `prefix_len` tokens are the prompt (batched prefill); the runner's `_emit`
  is wrapped (`teacher_forced`) so each owner "generates" its held-out continuation: logits are
  recorded, the sampled token is replaced by the held-out one. The real scheduler batches the owners.
Logits at position p score token p + 1, over each continuation. NLL gate: |mean NLL difference| <= tol.
Drift gate: min over positions of |top5_ref & top5_engine| / 5 >= alpha. `runner_cls` is the hook for
broken engines: `baselines.NaiveSharedRunner` (one shared fast weight) fails both gates.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rwttt_ray.bench.ruler import english_text
from rwttt_ray.ttt.local import LocalLoop
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.reference import SequentialReference
from rwttt_ray.ttt.runner import GroupRunner, OwnerState
from rwttt_ray.ttt.sampling import Request
from rwttt_ray.ttt.tokenizer import ByteTokenizer


def heldout_streams(num_streams: int, num_tokens: int, seed: int = 0, tokenizer: Any = None) -> list[list[int]]:
    """`num_streams` token streams of exactly `num_tokens` tokens of seeded English-like text."""
    tok = tokenizer or ByteTokenizer()
    streams = []
    for i in range(num_streams):
        chars, ids = num_tokens, []
        while len(ids) < num_tokens:      # a subword tokenizer needs more characters per token
            ids, chars = tok.encode(english_text(chars, seed=seed * 100_003 + i)), chars * 2
        streams.append(list(ids[:num_tokens]))
    return streams


def _prefixes(prefix_len: int | Sequence[int], streams: Sequence[Sequence[int]]) -> list[int]:
    prefixes = [prefix_len] * len(streams) if isinstance(prefix_len, int) else list(prefix_len)
    if len(prefixes) != len(streams) or any(not 1 <= p < len(s) for p, s in zip(prefixes, streams)):
        raise ValueError("each prefix_len must be >= 1 and shorter than its stream (one per stream)")
    return prefixes


# -- the two teacher-forced paths ----------------------------------------------------------------
class TeacherForcedReference(SequentialReference):
    """The sequential reference, scoring a given stream instead of sampling one."""

    @torch.inference_mode()
    def stream_logits(self, stream: Sequence[int]) -> torch.Tensor:
        """Logits [len(stream) - 1, V]: row p predicts stream[p + 1]; one block, TTT on."""
        hf = self.model.hf
        ids = torch.tensor([list(stream[:-1])], device=hf.device)
        with self._patched() as mlps:
            for m in mlps.values():
                m.embeds = hf.model.embed_tokens(ids)[0]
            return hf(input_ids=ids, use_cache=False).logits[0].float()


def reference_logits(model: TTTModel, streams: Sequence[Sequence[int]],
                     prefix_len: int | Sequence[int]) -> list[torch.Tensor]:
    """Per stream, the reference's logits [len - prefix, V] for the continuation tokens."""
    ref = TeacherForcedReference(model)
    return [ref.stream_logits(s)[p - 1:] for s, p in zip(streams, _prefixes(prefix_len, streams))]


def teacher_forced(runner_cls: type[GroupRunner]) -> type[GroupRunner]:
    """A subclass of `runner_cls` whose owners emit `targets[owner_id]` instead of samples."""

    class TeacherForcedRunner(runner_cls):  # type: ignore[valid-type, misc]
        targets: dict[str, list[int]] = {}
        static_rounds = False       # the device path feeds its own greedy tokens, not the targets

        def _emit(self, owner_id: str, st: OwnerState, logits: torch.Tensor, out) -> None:
            super()._emit(owner_id, st, logits, out)    # records logits, advances progress
            st.stream[-1] = out.tokens[owner_id] = self.targets[owner_id][len(st.generated) - 1]

    TeacherForcedRunner.__name__ = f"TeacherForced{runner_cls.__name__}"
    return TeacherForcedRunner


def engine_logits(model: TTTModel, streams: Sequence[Sequence[int]], prefix_len: int | Sequence[int],
                  runner_cls: type[GroupRunner] = GroupRunner, arrival_steps: list[int] | None = None,
                  **engine_kw: Any) -> list[torch.Tensor]:
    """Per stream, the batched serving loop's logits [len - prefix, V] for the continuation tokens.
    `engine_kw` go to `LocalLoop` (max_group_size, wait_budget_steps)."""
    prefixes = _prefixes(prefix_len, streams)
    reqs = [Request(f"heldout-{i}", tuple(s[:p]), len(s) - p) for i, (s, p) in enumerate(zip(streams, prefixes))]
    loop = LocalLoop(model=model, max_states_per_worker=len(reqs), record_logits=True, runner_cls=teacher_forced(runner_cls),
                     **engine_kw)
    targets = {r.owner_id: list(s[p:]) for r, s, p in zip(reqs, streams, prefixes)}
    for worker in loop.workers.values():
        worker.runner.targets = targets
    outcomes = loop.run(reqs, arrival_steps)
    for r in reqs:
        out = outcomes[r.owner_id]
        if out.error or out.tokens != targets[r.owner_id]:
            raise RuntimeError(f"{r.owner_id}: teacher forcing failed ({out.error or 'tokens differ'})")
    return [torch.stack(outcomes[r.owner_id].logits) for r in reqs]


# -- the gates ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NLLGate:
    """Mean per-token NLL (nats) and perplexity of both paths; passes if they differ by <= tol."""

    ref_nll: float            # sequential reference
    engine_nll: float         # batched engine (or the broken one under test)
    ref_ppl: float
    engine_ppl: float
    delta: float              # |engine_nll - ref_nll|
    max_token_delta: float    # largest per-token |NLL difference| (reported, not gated)
    num_tokens: int
    tol: float
    passed: bool


@dataclass(frozen=True, slots=True)
class DriftGate:
    """Top-k agreement of the two paths' logits; passes if its minimum over positions >= alpha."""

    top5_min: float
    top5_mean: float
    num_positions: int
    alpha: float
    passed: bool


def token_nll(logits: Sequence[torch.Tensor], streams: Sequence[Sequence[int]],
              prefix_len: int | Sequence[int]) -> torch.Tensor:
    """Per-token NLL [sum of continuation lengths] of each stream's continuation under `logits`."""
    targets = [torch.tensor(list(s[p:])) for s, p in zip(streams, _prefixes(prefix_len, streams))]
    return torch.cat([F.cross_entropy(lg.float(), t.to(lg.device), reduction="none").cpu()
                      for lg, t in zip(logits, targets, strict=True)])


def nll_gate(ref: Sequence[torch.Tensor], got: Sequence[torch.Tensor], streams: Sequence[Sequence[int]],
             prefix_len: int | Sequence[int], tol: float = 1e-4) -> NLLGate:
    a, b = token_nll(ref, streams, prefix_len).double(), token_nll(got, streams, prefix_len).double()
    ref_nll, engine_nll = float(a.mean()), float(b.mean())
    delta = abs(engine_nll - ref_nll)
    return NLLGate(ref_nll, engine_nll, math.exp(ref_nll), math.exp(engine_nll), delta,
                   float((a - b).abs().max()), len(a), tol, delta <= tol)


def topk_agreement(a: torch.Tensor, b: torch.Tensor, k: int = 5, tie_tol: float = 1e-4) -> torch.Tensor:
    """Per row of logits [N, V], |topk(a) & topk(b)| / k, taking the smaller of both directions.
    A token of b's top-k counts as in a's if its a-logit is within `tie_tol` of a's k-th largest:
    top-k is ill-defined between near-equal logits (tie_tol = 0: exact set intersection)."""

    def hits(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kth = x.topk(k, dim=-1).values[:, -1:]                            # [N, 1]
        return (x.gather(1, y.topk(k, dim=-1).indices) >= kth - tie_tol).sum(1)

    return torch.minimum(hits(a, b), hits(b, a)).float() / k


def drift_gate(ref: Sequence[torch.Tensor], got: Sequence[torch.Tensor], alpha: float = 1.0,
               k: int = 5, tie_tol: float = 1e-4) -> DriftGate:
    agree = torch.cat([topk_agreement(a.float().cpu(), b.float().cpu(), k, tie_tol)
                       for a, b in zip(ref, got, strict=True)])
    top_min = float(agree.min())
    return DriftGate(top_min, float(agree.mean()), len(agree), alpha, top_min >= alpha)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Both gates on one configuration."""

    nll: NLLGate
    drift: DriftGate

    @property
    def passed(self) -> bool:
        return self.nll.passed and self.drift.passed

    def as_dict(self) -> dict[str, Any]:
        return {"nll": asdict(self.nll), "drift": asdict(self.drift), "passed": self.passed}


def quality_gates(model: TTTModel, num_streams: int = 4, num_tokens: int = 512,
                  prefix_len: int | Sequence[int] = 64, seed: int = 0, tol: float = 1e-4, alpha: float = 1.0,
                  runner_cls: type[GroupRunner] = GroupRunner, **engine_kw: Any) -> QualityReport:
    """Held-out streams through the reference and the engine (`runner_cls`), then both gates."""
    streams = heldout_streams(num_streams, num_tokens, seed, model.tokenizer)
    ref = reference_logits(model, streams, prefix_len)
    got = engine_logits(model, streams, prefix_len, runner_cls, **engine_kw)
    return QualityReport(nll_gate(ref, got, streams, prefix_len, tol), drift_gate(ref, got, alpha))
