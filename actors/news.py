"""TokenNews: what each owner's readers are told, and the long-polls that tell them.

The base of SessionService. A reader asks for an owner's tokens past a cursor; it is answered as
soon as there are some, or the turn is closed, or at the timeout. The answer carries the tokens
(with their logprobs when asked for), whether the turn is over, and how it ended: `stop` (a
stop id or string, named in `stop_reason`), `length`, or an error. A one-shot owner whose end
has been read is released. TTFT and per-token latency are observed here.
"""
from __future__ import annotations

import asyncio
import time

from rwttt_ray.core.metrics import LATENCY_BUCKETS_S, Histogram
from rwttt_ray.core.session import SessionBook
from rwttt_ray.core.tenancy import BENIGN_ENDS, TenancyError


class TokenNews:
    def __init__(self, book: SessionBook) -> None:
        self.book = book                          # per owner: turn over?, started, lease, unread result
        self.ttft = Histogram(LATENCY_BUCKETS_S)
        self.token_latency = Histogram(LATENCY_BUCKETS_S)
        self._pulse: asyncio.Future = asyncio.get_running_loop().create_future()   # set at each change

    def observe(self, rec, owner_id: str, n: int, now: float) -> None:
        started = s.started if (s := self.book.get(owner_id)) is not None else None
        if n and len(rec.tokens) == n and started is not None:
            self.ttft.observe(now - started)
        times = rec.token_times
        for a, b in zip(times[-n - 1:], times[-n:]):
            self.token_latency.observe(b - a)

    def result(self, owner_id: str) -> dict:
        if (s := self.book.get(owner_id)) is not None and s.result is not None:
            return s.result
        rec = self.core.owners[owner_id]
        finished = self.book.is_closed(owner_id)
        reason = None if not finished else "error" if rec.error and rec.error not in BENIGN_ENDS else \
            "stop" if rec.stop_reason is not None else "length"
        return {"tokens": list(rec.tokens), "logprobs": list(rec.logprobs), "finished": finished,
                "error": rec.error, "finish_reason": reason, "stop_reason": rec.stop_reason,
                "version": self.core.ledger.committed(owner_id), "prompt_tokens": rec.progress.num_prompt}

    async def next_tokens(self, tenant: str, owner_id: str, cursor: int, timeout_s: float = 30.0) -> dict:
        """Long-poll: returns as soon as tokens past `cursor` exist or the turn ends."""
        self.tenants.check_owner(tenant, owner_id)
        deadline = time.monotonic() + timeout_s
        while not (news := await self.next_tokens_many({owner_id: (tenant, cursor)}, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                return dict(self.result(owner_id), tokens=[], logprobs=[])
        return news[owner_id]

    async def next_tokens_many(self, wants: dict[str, tuple[str, int]], timeout_s: float = 30.0) -> dict[str, dict]:
        """Long-poll for many owners in one call (an ingress replica's token feed), `wants`:
        owner -> (tenant, cursor). Returns the news of every owner that has some as soon as one
        has, else after the next settle of any phase (the caller then asks again, with owners
        it has learnt of since), else at the timeout. An owner that is gone (or another
        tenant's) comes back finished, with an error."""
        deadline = time.monotonic() + timeout_s
        for attempt in range(2):
            news = {}
            for owner_id, (tenant, cursor) in wants.items():
                try:
                    self.tenants.check_owner(tenant, owner_id)
                except TenancyError as exc:
                    news[owner_id] = {"tokens": [], "logprobs": [], "finished": True, "error": str(exc),
                                      "finish_reason": "error", "stop_reason": None}
                    continue
                if (res := self._news(owner_id, cursor)) is not None:
                    news[owner_id] = await self._deliver(owner_id, res, cursor)
            if news or attempt or not await self._pulse_within(deadline):
                return news
        return {}

    def _news(self, owner_id: str, cursor: int) -> dict | None:
        res = self.result(owner_id)
        return res if len(res["tokens"]) > cursor or res["finished"] else None

    async def _pulse_within(self, deadline: float) -> bool:
        """Wait for the next change to any owner's tokens; False at the deadline."""
        try:
            await asyncio.wait_for(asyncio.shield(self._pulse), max(0.0, deadline - time.monotonic()))
            return True
        except asyncio.TimeoutError:
            return False

    def pulse(self) -> None:
        """Wake every long-poll (once per settled phase): a fresh future for the next change."""
        if not self._pulse.done():
            self._pulse.set_result(None)
        self._pulse = asyncio.get_running_loop().create_future()

    async def _deliver(self, owner_id: str, res: dict, cursor: int) -> dict:
        """The news past `cursor`; a one-shot owner whose end is read is released."""
        res = dict(res, tokens=res["tokens"][cursor:], logprobs=res["logprobs"][cursor:])
        if res["finished"]:
            self.book.end_lease(owner_id)         # its reader has the end
        if res["finished"] and (s := self.book.get(owner_id)) is not None and s.result is not None:
            s.result = None
            await self.release(owner_id)
        return res

    def forget(self, owner_id: str) -> None:
        self.book.remove(owner_id)
