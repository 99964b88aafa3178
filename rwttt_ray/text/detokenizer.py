"""IncrementalDetokenizer: token ids in, text out as soon as it is final (no torch, no ray).

The prefix/read-offset scheme of vLLM's detokenizer: the text of the newest tokens is decoded
together with a few tokens before them (the prefix), and only the part past the prefix's own
text is emitted, so byte-level BPE pieces of one UTF-8 character wait until the character is
whole (a trailing U+FFFD means "not yet"), and SentencePiece leading spaces survive (the prefix
gives the tokenizer the context it strips a leading space in). Seeded with the last prompt
tokens, the first generated token keeps its leading space too. Stream and non-stream paths,
the ingress and the worker's stop check, all read text through this one class.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

CONTEXT_TOKENS = 5          # prompt tokens a stream starts with as its prefix (as vLLM)
REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Feed generated ids with `push`; `flush` at the end returns what was held back."""

    def __init__(self, decoder: Decoder, context: Sequence[int] = (), skip_special_tokens: bool = True) -> None:
        self.decoder, self.skip = decoder, skip_special_tokens
        self.ids: list[int] = list(context[-CONTEXT_TOKENS:]) if context else []
        self.prefix = 0                   # first id of the decode window
        self.read = len(self.ids)         # ids before this have been emitted as text
        self.text = ""                    # everything emitted so far
        self._prefix_text: str | None = None   # decode of ids[prefix:read], until they move

    def _decode(self, ids: Sequence[int]) -> str:
        return self.decoder.decode(ids, skip_special_tokens=self.skip)

    def _advance(self, final: bool) -> str:
        if self._prefix_text is None:
            self._prefix_text = self._decode(self.ids[self.prefix:self.read])
        prefix_text, new_text = self._prefix_text, self._decode(self.ids[self.prefix:])
        if len(new_text) <= len(prefix_text) or (new_text.endswith(REPLACEMENT) and not final):
            return ""
        piece = new_text[len(prefix_text):]
        self.prefix, self.read, self._prefix_text = self.read, len(self.ids), None
        self.text += piece
        return piece

    def push(self, ids: Iterable[int]) -> str:
        """The text that became final with these ids (possibly "")."""
        out = []
        for i in ids:
            self.ids.append(int(i))
            out.append(self._advance(final=False))
        return "".join(out)

    def flush(self) -> str:
        """At the end of the stream: the held-back tail (an incomplete character included)."""
        return self._advance(final=True) if self.read < len(self.ids) else ""
