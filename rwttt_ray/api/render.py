"""Response bodies in OpenAI's shapes: completions, chat, their stream chunks, logprobs (pure).

A choice carries vLLM's `stop_reason` (the stop id or string that ended it, None at EOS-free
ends) beside `finish_reason`; `token_ids` with `return_token_ids`. Logprobs: completions in the
legacy shape (tokens, token_logprobs, top_logprobs, text_offset), chat in the `content` shape
(token, logprob, bytes, top_logprobs).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from rwttt_ray.text.codec import TextCodec


def new_id(chat: bool, request_id: str | None = None) -> str:
    """The response's id, named after the request's (as vLLM does), else a new one."""
    return ("chatcmpl-" if chat else "cmpl-") + (request_id or uuid.uuid4().hex)


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_logprobs(codec: TextCodec, ids: Sequence[int], entries: Sequence, offset: int = 0) -> dict:
    """Legacy completions logprobs; `offset`: where the first token's text starts in `text`."""
    tokens, lps, offsets, top = [], [], [], []
    for tok, (lp, alts) in zip(ids, entries):
        text = codec.token_text(tok)
        tokens.append(text)
        lps.append(lp)
        offsets.append(offset)
        offset += len(text)
        top.append({codec.token_text(t): v for t, v in (*alts, (tok, lp))})
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": top, "text_offset": offsets}


def chat_logprobs(codec: TextCodec, ids: Sequence[int], entries: Sequence) -> dict:
    def one(tok: int, lp: float) -> dict:
        return {"token": codec.token_text(tok), "logprob": lp, "bytes": codec.token_bytes(tok)}

    return {"content": [dict(one(tok, lp), top_logprobs=[one(t, v) for t, v in alts])
                        for tok, (lp, alts) in zip(ids, entries)], "refusal": None}


def choice(chat: bool, index: int, text: str, finish_reason: str | None, stop_reason: Any = None,
           logprobs: dict | None = None, token_ids: list[int] | None = None, chunk: bool = False,
           first: bool = False) -> dict:
    if not chat:
        out = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
    elif chunk:
        delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
        out = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
    else:
        out = {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
               "finish_reason": finish_reason}
    if finish_reason is not None:
        out["stop_reason"] = stop_reason
    if token_ids is not None:
        out["token_ids"] = token_ids
    return out


def body(rid: str, chat: bool, model: str, choices: list[dict], use: dict | None = None,
         session: dict | None = None, chunk: bool = False) -> dict[str, Any]:
    obj = ("chat.completion.chunk" if chunk else "chat.completion") if chat else "text_completion"
    out: dict[str, Any] = {"id": rid, "object": obj, "created": int(time.time()), "model": model,
                           "choices": choices}
    if use is not None:
        out["usage"] = use
    if session is not None:
        out["session"] = session
    return out
