"""OpenAI-compatible request shapes and the error body, as pydantic models (no ray).

Field names and defaults follow the OpenAI API and vLLM's server (vLLM's extensions: `top_k`,
`repetition_penalty`, `ignore_eos`, `stop_token_ids`, `skip_special_tokens`, `return_token_ids`);
rwttt adds `session_id` and `expected_version`. No field is silently ignored: an unknown field is
a 400 naming it, and a known one rwttt does not implement (`tools`, `response_format` other than
text, `suffix`, ...) is a 400 naming it too.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_CHOICES = 64          # prompts x n in one request: each choice is an owner
MAX_STOPS = 16


class Unsupported(ValueError):
    """A known OpenAI field rwttt-ray does not implement (400, naming it)."""


def _utf8(text: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} is not valid Unicode (a lone surrogate?)") from None
    return text


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)                      # vLLM: -1 or 0 = off
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=100.0)   # vLLM
    logit_bias: dict[str, float] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**62)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None                             # vLLM
    ignore_eos: bool = False                                            # vLLM
    skip_special_tokens: bool = True                                    # vLLM
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    best_of: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None   # {"include_usage": true}: a final usage chunk
    user: str | None = Field(default=None, max_length=256)              # a label, logged with the request
    session_id: str | None = Field(default=None, max_length=200)
    expected_version: int | None = Field(default=None, ge=0)
    return_token_ids: bool = False     # vLLM-style extension: token ids beside the text

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop strings")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return [_utf8(s, "stop") for s in stops]

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v):
        for key, bias in (v or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"keys are token ids, got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"bias of token {key} must be in [-100, 100], got {bias}")
        return v

    @field_validator("stream_options")
    @classmethod
    def _stream_options(cls, v):
        unknown = set(v or {}) - {"include_usage"}
        if unknown:
            raise Unsupported(f"stream_options.{sorted(unknown)[0]} is not supported")
        return v

    @model_validator(mode="after")
    def _best_of(self):
        if self.best_of not in (None, self.n):
            raise Unsupported("best_of other than n is not supported")
        return self

    def stops(self) -> list[str]:
        return list(self.stop or [])


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1, le=1_000_000)   # null: the rest of the context
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("no prompt given")
        for p in v if isinstance(v, list) else [v]:
            if isinstance(p, str):
                _utf8(p, "prompt")
            elif isinstance(p, list) and not p:
                raise ValueError("a token-id prompt must not be empty")
        return v

    @model_validator(mode="after")
    def _unsupported(self):
        if self.suffix:
            raise Unsupported("suffix (insertion) is not supported")
        if self.echo and self.logprobs is not None:
            raise Unsupported("echo with logprobs (prompt logprobs) is not supported")
        return self

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: text, or token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        return [p] if p and isinstance(p[0], int) else list(p)   # type: ignore[list-item]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = ""
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[Any] | None = None

    @model_validator(mode="after")
    def _content(self):
        if self.tool_calls:
            raise Unsupported("messages[].tool_calls is not supported (no tool calling)")
        return self

    def text(self) -> str:
        """The content as one string; a list of parts must be text parts (joined by newlines)."""
        if not isinstance(self.content, list):
            return _utf8(self.content or "", "messages[].content")
        texts = []
        for part in self.content:
            kind = part.get("type")
            if kind != "text" or not isinstance(part.get("text"), str):
                raise Unsupported(f"messages[].content part of type {kind!r} is not supported (text only)")
            texts.append(_utf8(part["text"], "messages[].content"))
        return "\n".join(texts)

    def template_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.name is not None:
            d["name"] = self.name
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        return d


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)        # default: rest of the context
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _unsupported(self):
        if self.tools:
            raise Unsupported("tools (tool calling) is not supported")
        if self.tool_choice not in (None, "none", "auto"):
            raise Unsupported("tool_choice other than 'none' is not supported (no tool calling)")
        if (self.response_format or {}).get("type", "text") != "text":
            raise Unsupported(f"response_format {self.response_format.get('type')!r} is not supported (text only)")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if None not in (self.max_tokens, self.max_completion_tokens) and self.max_tokens != self.max_completion_tokens:
            raise ValueError("max_tokens and max_completion_tokens differ; give one")
        return self

    @property
    def max_new(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0)


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_s: float | None = Field(default=None, gt=0, le=30 * 86400)   # idle seconds before it expires


def error_body(message: str, type_: str, code: str | int | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
