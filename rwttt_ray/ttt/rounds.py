"""StaticRounds: runs a phase's consecutive decode READ rounds on the static-shape path.

The worker hands it a run of rounds, each one decode READ group. It checks each group as the
runner would (legality, and each member's planned tag against its simulated progress), drops
members that stopped or failed earlier in the phase, prepares the run's inputs on the host
(positions, rows, KV slots, buffer rows, membership per round), reserves the KV blocks, lets
`StaticDecoder` run every round on the device with no host sync, and then applies the tokens
in order on the host: stop tokens and stop strings end an owner's turn there, and the tokens
it computed after its stop are dropped (they wrote only KV and buffer rows past its position,
which nothing reads before they are written again). Anything it cannot take returns None, and
the worker runs those rounds eagerly.
"""
from __future__ import annotations

import torch

from rwttt_ray.core.planner import assert_legal
from rwttt_ray.core.types import Effect, Group, StepKind
from rwttt_ray.ttt.decode import DecodeInputs, StaticDecoder
from rwttt_ray.ttt.runner import GroupResult, GroupRunner


class StaticRounds:
    def __init__(self, runner: GroupRunner, *, graphs: bool = True) -> None:
        self.runner = runner
        self.decoder = StaticDecoder(runner.model, runner.seqs, runner.pool, graphs=graphs)
        self.decoder.profile = runner.profile
        self.rounds_run = 0                       # rounds taken on the static path

    def takes(self, groups: tuple[Group, ...]) -> bool:
        """Whether a round can join a static run: one decode READ group of plain greedy requests."""
        if len(groups) != 1 or groups[0].effect is not Effect.READ or self.runner.read_fault is not None:
            return False
        r = self.runner
        for tag in groups[0].tags:
            st = r.owners.get(tag.owner_id)
            if st is None or tag != r.tag(tag.owner_id, StepKind.DECODE, Effect.READ, st.writes):
                return False
            req = st.request
            if not req.greedy or req.logprobs is not None or req.shapes_logits:
                return False
        return True

    def run(self, rounds: list[Group], failed: dict[str, str]) -> list[GroupResult] | None:
        """Each round's result, or None if the run must go the eager way."""
        r = self.runner
        members = [[t.owner_id for t in g.tags if t.owner_id not in failed and not r.progress(t.owner_id).done]
                   for g in rounds]
        sim = {o: r.progress(o) for ms in members for o in ms}
        for g, ms in zip(rounds, members):
            assert_legal(g, lambda o: r.owners[o].writes)
            for o in ms:
                p = sim[o]
                if p.unfed != 1 or p.piece() != 1:
                    return None
                sim[o] = p.after_read()
        if not sim:
            return [GroupResult() for _ in rounds]
        inputs = self._inputs(members, sim)
        toks, logits = self.decoder.run(inputs, record_logits=r.record_logits)
        self.rounds_run += len(rounds)
        return self._apply(members, toks, logits)

    def _inputs(self, members: list[list[str]], end) -> DecodeInputs:
        r, kv = self.runner, self.runner.seqs.kv
        rows = {o: r.seqs.owner_slot[o] for o in end}
        for o in end:
            r.seqs.ensure(o, end[o].pos, r.progress(o).pos)
        bucket = self.decoder.bucket(max(rows.values()) + 1)
        blocks = self.decoder.blocks(-(-max(p.pos for p in end.values()) // kv.block_size))
        n, scratch = len(members), r.seqs.scratch
        pos = torch.zeros((n, bucket), dtype=torch.long)
        state_rows = torch.full((n, bucket), scratch, dtype=torch.long)
        slots = torch.full((n, bucket), kv.scratch * kv.block_size, dtype=torch.long)
        fills = torch.zeros((n, bucket), dtype=torch.long)
        member = torch.zeros((n, bucket), dtype=torch.bool)
        first = torch.zeros(bucket, dtype=torch.long)
        at = {o: r.progress(o) for o in end}
        for o, row in rows.items():
            first[row] = r.owners[o].stream[at[o].pos]
        for i, ms in enumerate(members):
            for o in ms:
                row, p = rows[o], at[o]
                pos[i, row], state_rows[i, row], fills[i, row], member[i, row] = p.pos, row, p.fill, True
                slots[i, row] = kv.slots(row, p.pos, 1)[0]
                at[o] = p.after_read()
        return DecodeInputs(bucket, blocks, first, pos, state_rows, slots, fills, member,
                            contiguous=all(kv.at_home(row) for row in rows.values()))

    def _apply(self, members: list[list[str]], toks: torch.Tensor, logits: torch.Tensor | None) -> list[GroupResult]:
        r = self.runner
        out: list[GroupResult] = []
        dropped: set[str] = set()
        for i, ms in enumerate(members):
            res = GroupResult()
            for o in ms:
                st = r.owners[o]
                if st.progress.done or o in dropped:
                    continue                       # stopped or failed earlier in this run: token dropped
                row = r.seqs.owner_slot[o]
                try:
                    r.accept(o, st, int(toks[i, row]), None if logits is None else logits[i, row], res)
                except Exception as exc:           # this owner's token only: the others' stand
                    res.failed[o] = f"{type(exc).__name__}: {exc}"
                    dropped.add(o)
            out.append(res)
        return out
