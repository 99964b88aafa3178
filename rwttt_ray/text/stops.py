"""Where generation stops, and the text a client sees (no torch, no ray).

`StopChecker` runs in the worker, beside the sampler: after each emitted token it says whether
the turn ends there (a stop token id, or a stop string completed in the decoded text), so an
owner never generates, feeds or learns from a token past its stop. `TextStream` runs in the
ingress, one per choice: token batches in, text deltas out, with OpenAI's semantics: the stop
string and a stop token's own text are not in the output, and while the stream runs the last
(longest stop - 1) characters are held back in case a stop string is being completed.
Both read text through the same IncrementalDetokenizer, so they agree on every character.
"""
from __future__ import annotations

from collections.abc import Sequence

from rwttt_ray.text.detokenizer import Decoder, IncrementalDetokenizer

StopReason = int | str | None      # the stop token id or the stop string that ended a turn


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> tuple[int, str] | None:
    """The earliest (position, stop string) in `text` that ends at or after `start`."""
    best = None
    for s in stops:
        i = text.find(s, max(0, start - len(s) + 1))
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return best


class StopChecker:
    """One owner's turn: `push(token)` returns its stop reason if the turn ends at this token."""

    def __init__(self, decoder: Decoder | None, stop: Sequence[str] = (), stop_ids: Sequence[int] = (),
                 skip_special_tokens: bool = True, context: Sequence[int] = ()) -> None:
        self.stop, self.stop_ids = tuple(stop), frozenset(stop_ids)
        if self.stop and decoder is None:
            raise ValueError("stop strings need a tokenizer to decode with")
        self.detok = IncrementalDetokenizer(decoder, context, skip_special_tokens) if self.stop else None

    def push(self, token: int) -> StopReason:
        if token in self.stop_ids:
            return token
        if self.detok is None:
            return None
        before = len(self.detok.text)
        self.detok.push([token])
        hit = find_stop(self.detok.text, self.stop, before)
        return hit[1] if hit else None

    def replay(self, tokens: Sequence[int]) -> StopReason:
        """Feed a turn's tokens so far (a rebuilt owner); the reason if one of them was a stop."""
        reason = None
        for t in tokens:
            reason = self.push(t)
        return reason


class TextStream:
    """One choice's text as the client sees it: `feed(ids, finished, reason)` -> the new delta."""

    def __init__(self, decoder: Decoder, stop: Sequence[str] = (), skip_special_tokens: bool = True,
                 context: Sequence[int] = ()) -> None:
        self.detok = IncrementalDetokenizer(decoder, context, skip_special_tokens)
        self.stop = tuple(stop)
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.sent = 0                      # characters already handed out

    def feed(self, ids: Sequence[int], finished: bool = False, reason: StopReason = None) -> str:
        ids = list(ids)
        if finished and isinstance(reason, int) and ids and ids[-1] == reason:
            ids = ids[:-1]                 # a stop token's own text is not output (vLLM, OpenAI)
        self.detok.push(ids)
        if not finished:
            end = max(self.sent, len(self.detok.text) - self.hold)
            return self._take(self.detok.text, end)
        self.detok.flush()
        text = self.detok.text
        if isinstance(reason, str) and (hit := find_stop(text, self.stop)) is not None:
            text = text[:hit[0]]
        return self._take(text, max(self.sent, len(text)))

    def _take(self, text: str, end: int) -> str:
        piece = text[self.sent:end]
        self.sent = end
        return piece

    @property
    def text(self) -> str:
        """Everything handed out so far."""
        return self.detok.text[:self.sent]
