"""TokenFeed: one long-poll per ingress replica for the tokens of all its streams.

Each stream asks the feed for its owner's tokens past a cursor; the feed asks the scheduler
for every waiting stream in ONE call (`next_tokens_many`), which returns at the next settled
phase, and hands each stream its news. So a phase costs the scheduler one call per replica,
not one per stream. Streams that start while a call is out join the next one, which goes out
as soon as the current one returns (at the latest, at the next settle: when new tokens exist).
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable


class TokenFeed:
    def __init__(self, call: Callable[..., Any], timeout_s: float = 30.0) -> None:
        """`call(owners_to_tenant_and_cursor, timeout_s)`: awaits the scheduler's news."""
        self.call, self.timeout_s = call, timeout_s
        self.waiting: dict[str, tuple[str, int, asyncio.Future]] = {}
        self.task: asyncio.Task | None = None

    async def next(self, tenant: str, owner_id: str, cursor: int) -> dict:
        """This owner's tokens past `cursor` (or its end), as `next_tokens` returns them."""
        if owner_id in self.waiting:
            raise RuntimeError(f"owner {owner_id} is read by two streams at once")
        future = asyncio.get_running_loop().create_future()
        self.waiting[owner_id] = (tenant, cursor, future)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        try:
            return await future
        finally:
            if self.waiting.get(owner_id, (None, None, None))[2] is future:
                del self.waiting[owner_id]    # the stream went away (or its news came)

    async def _run(self) -> None:
        while self.waiting:
            asked = dict(self.waiting)
            try:
                news = await self.call({o: (t, c) for o, (t, c, _) in asked.items()}, self.timeout_s)
            except Exception as exc:          # the scheduler is gone: every stream hears of it
                news = {o: exc for o in asked}
            for owner_id, res in news.items():
                if owner_id in asked and self.waiting.get(owner_id) is asked[owner_id]:
                    future = self.waiting.pop(owner_id)[2]
                    if not future.done():
                        future.set_exception(res) if isinstance(res, Exception) else future.set_result(res)
