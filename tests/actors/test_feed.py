"""TokenFeed (one long-poll per ingress replica for all its streams), against a fake scheduler
call: pure asyncio, no Ray."""
import asyncio

import pytest

from actors.feed import TokenFeed


class FakeScheduler:
    """Answers each call with the news of the owners given to `publish`, like next_tokens_many:
    at once if an asked owner has news, else at the next publish (news or none)."""

    def __init__(self):
        self.calls: list[dict] = []
        self.news: dict[str, dict] = {}
        self.changed = asyncio.Event()
        self.fail: Exception | None = None

    async def call(self, wants, timeout_s):
        self.calls.append(dict(wants))
        for attempt in range(2):
            if self.fail:
                raise self.fail
            out = {o: self.news.pop(o) for o in list(self.news) if o in wants}
            if out or attempt:
                return out
            self.changed.clear()
            await self.changed.wait()

    def publish(self, **news):
        self.news.update(news)
        self.changed.set()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def feed_over_fake():
    s = FakeScheduler()
    return s, TokenFeed(s.call)


async def reading(feed, owner, cursor=0):
    """A stream asking the feed for `owner`'s tokens past `cursor`, its ask registered."""
    read = asyncio.ensure_future(feed.next("t", owner, cursor))
    await asyncio.sleep(0)
    return read


def test_many_streams_share_one_call_per_change():
    async def main():
        s, feed = feed_over_fake()
        reads = [asyncio.ensure_future(feed.next("t", o, 0)) for o in ("a", "b", "c")]   # before the feed asks
        await asyncio.sleep(0)
        s.publish(a={"tokens": [1]}, b={"tokens": [2]}, c={"tokens": [3]})
        assert [r["tokens"] for r in await asyncio.gather(*reads)] == [[1], [2], [3]]
        return s.calls
    calls = run(main())
    assert calls == [{"a": ("t", 0), "b": ("t", 0), "c": ("t", 0)}]


def test_a_stream_that_starts_during_a_call_joins_the_next():
    async def main():
        s, feed = feed_over_fake()
        first = await reading(feed, "a")
        late = await reading(feed, "b", 4)
        s.publish(a={"tokens": [1]}, b={"tokens": [9]})
        assert (await first)["tokens"] == [1] and (await late)["tokens"] == [9]
        return s.calls
    assert run(main()) == [{"a": ("t", 0)}, {"b": ("t", 4)}]


def test_a_failed_call_reaches_every_waiting_stream():
    async def main():
        s, feed = feed_over_fake()
        reads = [await reading(feed, o) for o in ("a", "b")]
        s.fail = RuntimeError("scheduler died")
        s.changed.set()
        return await asyncio.gather(*reads, return_exceptions=True)
    assert [str(e) for e in run(main())] == ["scheduler died"] * 2


def test_a_stream_that_goes_away_is_forgotten():
    async def main():
        s, feed = feed_over_fake()
        gone = await reading(feed, "a")
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert feed.waiting == {}
        stays = await reading(feed, "b")
        s.publish(b={"tokens": [5]})
        return (await stays)["tokens"]
    assert run(main()) == [5]


def test_one_owner_read_by_two_streams_at_once_is_refused():
    async def main():
        s, feed = feed_over_fake()
        first = await reading(feed, "a")
        with pytest.raises(RuntimeError, match="two streams"):
            await feed.next("t", "a", 0)
        first.cancel()
    run(main())
