"""OpenAI-compatible request/response shapes and the error body, as pydantic models (no ray).

Field names and defaults follow the OpenAI API (and vLLM's server): `n` must be 1, `stream`
returns server-sent events ending in `[DONE]`. rwttt adds `session_id` and `expected_version`.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = Field(default=16, ge=1, le=1_000_000)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**62)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None   # {"include_usage": true}: a final usage chunk
    session_id: str | None = Field(default=None, max_length=200)
    expected_version: int | None = Field(default=None, ge=0)
    return_token_ids: bool = False     # vLLM-style extension: token ids beside the text

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s][:4]


class CompletionRequest(SamplingFields):
    prompt: str | list[str] = Field(min_length=1)
    echo: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = ""


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)


class RollbackRequest(BaseModel):
    version: int = Field(ge=0)


def error_body(message: str, type_: str, code: str | int | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(model: str, text: str, reason: str | None, use: dict | None, chat: bool, rid: str,
                    session: dict | None = None, chunk: bool = False, first: bool = False) -> dict[str, Any]:
    if chat:
        obj = "chat.completion.chunk" if chunk else "chat.completion"
        if chunk:
            delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
                      "logprobs": None}
    else:
        obj = "text_completion"
        choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
    body = {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [choice]}
    if use is not None:
        body["usage"] = use
    if session is not None:
        body["session"] = session
    return body


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex


def chat_prompt(messages: list[ChatMessage]) -> str:
    """A plain chat template for models without one (the byte tokenizer)."""
    parts = [f"<|{m.role}|>\n{m.content or ''}\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"
