"""OwnerProgress: where an owner stands in its token stream, and what its next step is (pure).

The stream is prompt + generated tokens; `pos` of them have been fed. Unfed tokens are fed in
pieces that never cross a chunk boundary (chunks aligned to absolute position 0); a piece that
reaches the end of the stream emits the next token; a full chunk makes a WRITE pending. The
worker steps with this, and the scheduler simulates future rounds with it without any tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from rwttt_ray.core.types import Effect, StepKind, shape_class


@dataclass(frozen=True, slots=True)
class OwnerProgress:
    """An owner's position; `writes` mirrors its committed version."""

    chunk: int                 # C
    num_prompt: int            # prompt tokens at the head of the stream
    stream_len: int            # prompt + generated tokens
    max_new_tokens: int        # generation target
    pos: int = 0               # tokens fed
    writes: int = 0            # committed WRITEs
    done: bool = False         # generation complete (stop token or max_new_tokens)
    ttt: bool = True           # False: static weights, never WRITE

    @classmethod
    def fresh(cls, chunk: int, prompt_len: int, generated: int, max_new_tokens: int, *, ttt: bool = True,
              pos: int = 0, writes: int = 0, done: bool = False) -> "OwnerProgress":
        """An owner's progress from its request: `prompt_len` prompt tokens, `generated` tokens
        already generated (a replay or an adopted state), none of them fed unless `pos` says so."""
        return cls(chunk, prompt_len, prompt_len + generated, max_new_tokens, pos=pos, writes=writes, done=done,
                   ttt=ttt)

    @property
    def num_generated(self) -> int:
        return self.stream_len - self.num_prompt

    @property
    def fill(self) -> int:
        """Rows in the chunk buffer: tokens fed since the last WRITE boundary."""
        return self.pos - self.chunk * self.writes if self.ttt else self.pos % self.chunk

    @property
    def write_pending(self) -> bool:
        return self.ttt and self.fill == self.chunk

    @property
    def unfed(self) -> int:
        return 0 if self.done else self.stream_len - self.pos

    @property
    def finished(self) -> bool:
        return self.unfed == 0 and not self.write_pending

    def next_effect(self) -> Effect | None:
        if self.write_pending:
            return Effect.WRITE
        return Effect.READ if self.unfed else None

    def piece(self) -> int:
        """Tokens the next READ feeds: all unfed ones, up to the next chunk boundary."""
        return min(self.unfed, self.chunk - self.fill)

    def step_kind(self) -> StepKind:
        if self.write_pending:
            return StepKind.WRITE
        return StepKind.DECODE if self.piece() == 1 else StepKind.PREFILL

    def shape_class(self, prefix: str) -> str:
        """The shape class of the next step on a worker whose shapes are `prefix`."""
        return shape_class(prefix, self.step_kind(), self.piece())

    def next_turn(self, prompt_len: int, max_new_tokens: int) -> "OwnerProgress":
        """A session's next turn: the stream is the new prompt (all it held, and the new text)."""
        return replace(self, num_prompt=prompt_len, stream_len=prompt_len, max_new_tokens=max_new_tokens, done=False)

    def after_read(self, stopped: bool = False) -> "OwnerProgress":
        """The progress after the next READ; `stopped`: the emitted token was a stop token."""
        pos = self.pos + self.piece()
        if pos < self.stream_len:
            return replace(self, pos=pos)
        emitted = self.num_generated + 1
        return replace(self, pos=pos, stream_len=self.stream_len + 1,
                       done=stopped or emitted >= self.max_new_tokens)

    def after_write(self) -> "OwnerProgress":
        return replace(self, writes=self.writes + 1)
