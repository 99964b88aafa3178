"""Request: one owner's generation job, as plain data (crosses actors and processes).

Besides the stream (prompt) and the length it carries what decides each token where tokens are
made: sampling (temperature, top-p, top-k, penalties, logit bias, seed), when to stop (stop
token ids, stop strings) and what to report (logprobs). Every value is checked here, so a bad
one is refused before it reaches a worker.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MAX_LOGPROBS = 20
GREEDY_BELOW = 1e-5          # a temperature under this samples greedily (vLLM's epsilon)


def _finite(name: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")


@dataclass(frozen=True, slots=True)
class Request:
    owner_id: str
    prompt: tuple[int, ...]          # token ids fed before generation
    max_new_tokens: int              # tokens to generate
    temperature: float = 0.0         # 0 (or < 1e-5) = greedy
    top_p: float = 1.0               # nucleus mass kept when sampling
    seed: int = 0                    # per-owner sampling seed
    stop_ids: tuple[int, ...] = ()   # generation ends after emitting one of these
    stop: tuple[str, ...] = ()       # ... or once the generated text contains one of these
    top_k: int = 0                   # keep the k most likely tokens when sampling; 0 = all
    presence_penalty: float = 0.0    # OpenAI: minus this for every token generated at least once
    frequency_penalty: float = 0.0   # OpenAI: minus this times the token's count so far
    repetition_penalty: float = 1.0  # vLLM/HF: logits of tokens seen in the stream / (or *) this
    logit_bias: tuple[tuple[int, float], ...] = ()   # (token id, bias) added to the logits
    logprobs: int | None = None      # report the chosen token's logprob and this many top ones
    skip_special_tokens: bool = True  # text (and stop strings) without special tokens
    keep_at_end: bool = False        # a session turn: keep the end state as a rollback point
    request_id: str = ""             # the client's x-request-id (or the ingress's): in every log line

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("prompt must not be empty")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        _finite("temperature", self.temperature, 0.0, 1e6)
        if not (isinstance(self.top_p, (int, float)) and math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        _finite("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _finite("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        _finite("repetition_penalty", self.repetition_penalty, 1e-2, 100.0)
        for token, bias in self.logit_bias:
            if token < 0:
                raise ValueError(f"logit_bias: token id must be >= 0, got {token}")
            _finite(f"logit_bias[{token}]", bias, -100.0, 100.0)
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ValueError(f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    @property
    def shapes_logits(self) -> bool:
        """Whether anything but temperature/top-p/top-k changes the logits before sampling."""
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0
                    or self.logit_bias)

    def to_dict(self) -> dict:
        """Plain lists and numbers (msgpack/JSON-able), for the directory."""
        d = asdict(self)
        d["prompt"], d["stop_ids"], d["stop"] = list(self.prompt), list(self.stop_ids), list(self.stop)
        d["logit_bias"] = [list(tb) for tb in self.logit_bias]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Request":
        return cls(**{**d, "prompt": tuple(d["prompt"]), "stop_ids": tuple(d.get("stop_ids", ())),
                      "stop": tuple(d.get("stop", ())),
                      "logit_bias": tuple((int(t), float(b)) for t, b in d.get("logit_bias", ()))})
