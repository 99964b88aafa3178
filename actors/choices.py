"""Choices: the owners one HTTP request started, and their text as it arrives (ingress side).

Each choice (a prompt, times `n`) is its own owner, so they are batched like any others. A
choice's tokens come from the replica's token feed; its text comes out of one TextStream (the
incremental detokenizer, stop-string truncation, hold-back while running), for streamed and
non-streamed responses alike. The stop itself is decided by the worker, where tokens are made.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from rwttt_ray.api.params import Prompt
from rwttt_ray.core.tenancy import BENIGN_ENDS
from rwttt_ray.text.codec import TextCodec
from rwttt_ray.text.stops import TextStream


@dataclass
class Delta:
    """What one read of a choice brought: text, token ids, logprobs and, at the end, why."""

    text: str
    ids: list[int]
    logprobs: list
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class Choice:
    index: int
    owner_id: str
    prompt: Prompt
    stream: TextStream
    echo: str = ""                               # the prompt text, repeated first (`echo`)
    ids: list[int] = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    done: bool = False

    def add(self, d: Delta) -> Delta:
        self.ids += d.ids
        self.logprobs += d.logprobs
        self.text += d.text
        self.finish_reason, self.stop_reason = d.finish_reason, d.stop_reason
        return d


class GenerationFailed(RuntimeError):
    """A choice's owner ended with an error (the worker's or the cluster's)."""


def make_choice(index: int, started: dict, prompt: Prompt, codec: TextCodec, stop: tuple[str, ...],
                skip_special_tokens: bool, echo: bool) -> Choice:
    stream = TextStream(codec, stop, skip_special_tokens, context=started["context"])
    return Choice(index, started["owner_id"], prompt, stream, prompt.text if echo else "")


async def read_choice(choice: Choice, next_news: Callable[[str, int], Awaitable[dict]],
                      cancel: Callable[[str], Awaitable[None]]) -> AsyncIterator[Delta]:
    """The choice's deltas until its turn is over; a reader that goes away cancels the owner."""
    try:
        while not choice.done:
            res = await next_news(choice.owner_id, len(choice.ids))
            if res.get("error") and res["error"] not in BENIGN_ENDS:
                raise GenerationFailed(res["error"])
            choice.done = res["finished"]
            reason = res.get("stop_reason") if choice.done else None
            text = choice.stream.feed(res["tokens"], choice.done, reason)
            yield choice.add(Delta(text, list(res["tokens"]), list(res.get("logprobs") or []),
                                   res["finish_reason"] if choice.done else None, reason))
    finally:
        if not choice.done:
            try:
                await asyncio.shield(cancel(choice.owner_id))
            except Exception:
                pass


async def merged(choices: list[Choice], next_news, cancel) -> AsyncIterator[tuple[Choice, Delta]]:
    """Every choice's deltas as they come, interleaved; the first failure ends them all."""
    if len(choices) == 1:
        async for d in read_choice(choices[0], next_news, cancel):
            yield choices[0], d
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(c: Choice) -> None:
        try:
            async for d in read_choice(c, next_news, cancel):
                await queue.put((c, d))
        except BaseException as exc:       # noqa: BLE001 - handed to the reader below
            await queue.put((c, exc))
            return
        await queue.put((c, None))

    tasks = [asyncio.ensure_future(pump(c)) for c in choices]
    try:
        open_ = len(choices)
        while open_:
            c, item = await queue.get()
            if item is None:
                open_ -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield c, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
