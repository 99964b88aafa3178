"""Baselines the benchmark compares RW-TTT with: naive shared-state batching, per-stream replicas,
and the static-weights ceiling (the same serving loop with TTT off).

Naive batching is fast and WRONG: every owner reads one shared fast weight and every WRITE lands
in it, so owners corrupt each other. It exists to show why the contract is needed. It runs on the
serving loop (`ttt.local.LocalLoop`) with its own runner: its WRITEs return receipts, so the
scheduler commits them as usual, but what they wrote is already in the shared weight.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import replace

import torch

from rwttt_ray.core.phase import WriteReceipt
from rwttt_ray.core.types import Group
from rwttt_ray.ttt.kernels import chunk_values
from rwttt_ray.ttt.local import LocalLoop, OwnerOutcome
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.reference import SequentialReference
from rwttt_ray.ttt.runner import GroupResult, GroupRunner
from rwttt_ray.ttt.sampling import Request

SHARED = "__shared__"


class NaiveSharedRunner(GroupRunner):
    """One fast weight for everyone: reads ignore ownership, writes add into the shared state."""

    static_rounds = False         # its READs go through the shared slot, not the owners' rows

    def run(self, group: Group) -> GroupResult:   # no legality check: that is the point
        return self._run_write(group) if group.effect.value == "write" else self._run_read(group)

    def _fast_slot(self, owner_id: str) -> int | None:
        return self.pool.slot_of(SHARED)

    def write_room(self) -> int:
        return len(self.owners)       # its WRITEs add into the shared slot: no candidates

    def _run_write(self, group: Group) -> GroupResult:
        s, owners = self.settings, group.owner_ids
        slot = self.pool.slot_of(SHARED)
        if slot is None:
            slot = self.pool.pin(SHARED)
        idx = torch.tensor([self.seqs.owner_slot[o] for o in owners],
                           device=self.seqs.hbuf[0].device if self.seqs.hbuf else None)
        for ti, layer_idx in enumerate(s.layers):
            h = self.seqs.hbuf[ti].index_select(0, idx)
            src = (self.seqs.xbuf if self.seqs.sbuf is None else self.seqs.sbuf)[ti].index_select(0, idx)
            v = chunk_values(src, self.model.conv[layer_idx], self.model.proj[layer_idx] if s.use_proj else None)
            for g in range(len(owners)):
                self.pool.layers[ti][slot].addmm_(h[g].t().float(), v[g].float(), alpha=s.lr)
        return GroupResult(receipts=tuple(WriteReceipt(o, self.owners[o].writes, 0.0) for o in owners))

    def commit(self, owner_id: str) -> None:
        st = self.owners[owner_id]
        st.progress = st.progress.after_write()

    def rollback(self, owner_id: str) -> None:
        pass


def naive_loop(model: TTTModel, **kw) -> LocalLoop:
    """The serving loop whose workers' runners share one fast weight across owners (fast, wrong)."""
    return LocalLoop(model=model, runner_cls=NaiveSharedRunner, **kw)


def static_model(model: TTTModel) -> TTTModel:
    """The same weights with TTT off: the static-weights ceiling."""
    return model.with_settings(replace(model.settings, enabled=False))


def _replica_main(model: TTTModel, requests: list[Request], threads: int, ready, go, out) -> None:
    torch.set_num_threads(threads)
    ref = SequentialReference(model, record_logits=False)
    ref.run(Request("warmup", (5, 6, 7), 2))
    ready.put(1)
    go.wait()
    out.put({r.owner_id: ref.run(r).tokens for r in requests})


def run_replicas(model: TTTModel, requests: list[Request], num_replicas: int) -> tuple[dict[str, list[int]], float]:
    """Per-stream replicas: `num_replicas` processes, each a batch-1 sequential TTT server over its
    share of the streams (round robin). Returns tokens per owner and the wall time in seconds,
    timed from when every replica has loaded its model (startup excluded, as for the other modes)."""
    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // num_replicas)
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [s for s in (requests[i::num_replicas] for i in range(num_replicas)) if s]
    procs = [ctx.Process(target=_replica_main, args=(model, s, threads, ready, go, out)) for s in shares]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    t0 = time.perf_counter()
    go.set()
    tokens: dict[str, list[int]] = {}
    for _ in procs:
        tokens.update(out.get(timeout=3600))
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return tokens, wall


def outcome_tokens(outcomes: dict[str, OwnerOutcome]) -> dict[str, list[int]]:
    return {o: r.tokens for o, r in outcomes.items()}
