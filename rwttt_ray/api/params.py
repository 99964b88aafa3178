"""From an OpenAI request body to what the scheduler takes: prompt ids and Request fields (pure).

Prompts: a string, a list of strings, a list of token ids or a list of lists (one choice per
prompt, times `n`); chat messages go through the model's chat template. Sampling: a field the
request leaves out takes the generation config's default, else OpenAI's; the stop ids are the
model's EOS ids (unless `ignore_eos`) plus `stop_token_ids`. Every refusal names its field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rwttt_ray.api.protocol import ChatRequest, CompletionRequest, SamplingFields
from rwttt_ray.api.served import ServedModel
from rwttt_ray.core.request import Request
from rwttt_ray.text.codec import ChatTemplateError


class BadRequest(ValueError):
    """A 400, with the field it is about."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


@dataclass(frozen=True)
class Prompt:
    ids: tuple[int, ...]
    text: str          # what `echo` repeats: the prompt as given, or the decoded ids


def completion_prompts(body: CompletionRequest, model: ServedModel) -> list[Prompt]:
    out = []
    for p in body.prompts():
        if isinstance(p, str):
            out.append(Prompt(tuple(model.codec.encode(p)), p))
        else:
            _check_ids(p, model, "prompt")
            out.append(Prompt(tuple(p), model.codec.decode(p)))
    if any(not p.ids for p in out):
        raise BadRequest("prompt is empty", "prompt")
    return out


def chat_prompt(body: ChatRequest, model: ServedModel) -> Prompt:
    try:
        messages = [m.template_dict() for m in body.messages]
        text = model.codec.render_chat(messages)
    except (ValueError, ChatTemplateError) as exc:
        raise BadRequest(str(exc), "messages") from None
    ids = tuple(model.codec.encode(text, add_special_tokens=False))
    if not ids:
        raise BadRequest("the chat template rendered an empty prompt", "messages")
    return Prompt(ids, text)


def _check_ids(ids, model: ServedModel, param: str) -> None:
    bad = [t for t in ids if not 0 <= t < model.codec.vocab_size]
    if bad:
        raise BadRequest(f"{param}: token id {bad[0]} is outside the vocabulary (0..{model.codec.vocab_size - 1})",
                         param)


def _default(body: SamplingFields, model: ServedModel, name: str, fallback: Any) -> Any:
    value = getattr(body, name)
    return value if value is not None else model.defaults.sampling.get(name, fallback)


def sampling_fields(body: SamplingFields, model: ServedModel, logprobs: int | None) -> dict[str, Any]:
    """Request fields (all but owner, prompt, length and seed) for `body`."""
    bias = tuple((int(k), float(v)) for k, v in (body.logit_bias or {}).items())
    _check_ids([t for t, _ in bias], model, "logit_bias")
    _check_ids(body.stop_token_ids or [], model, "stop_token_ids")
    top_k = int(_default(body, model, "top_k", 0))
    fields = dict(temperature=float(_default(body, model, "temperature", 1.0)),
                  top_p=float(_default(body, model, "top_p", 1.0)), top_k=max(0, top_k),
                  presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                  repetition_penalty=float(_default(body, model, "repetition_penalty", 1.0)), logit_bias=bias,
                  stop=tuple(body.stops()), skip_special_tokens=body.skip_special_tokens, logprobs=logprobs,
                  stop_ids=tuple(dict.fromkeys((*(() if body.ignore_eos else model.eos_ids),
                                                *(body.stop_token_ids or ())))))
    try:
        Request("check", (0,), 1, **fields)      # every value checked once, here
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return fields


def max_new_tokens(body: CompletionRequest | ChatRequest, model: ServedModel, prompt_len: int,
                   session: bool) -> int | None:
    """Tokens to generate; None: the rest of the context (the scheduler knows a session's history)."""
    chat = isinstance(body, ChatRequest)
    given = body.max_new if chat else body.max_tokens
    set_ = bool({"max_tokens", "max_completion_tokens"} & body.model_fields_set)
    if not set_:
        given = model.defaults.sampling.get("max_tokens", None if chat else 16)
    limit = model.max_len - prompt_len
    if limit < 1 or (given is not None and given > limit):
        asked = "" if given is None else f" + max_tokens ({given})"
        raise BadRequest(f"prompt ({prompt_len} tokens){asked} exceeds the context limit {model.max_len}",
                         "messages" if chat else "prompt", 413, "context_length_exceeded")
    return given if given is not None or session else limit


def logprobs_asked(body: CompletionRequest | ChatRequest) -> int | None:
    """How many top logprobs per token (0: only the chosen token's); None: not asked."""
    if isinstance(body, ChatRequest):
        return (body.top_logprobs or 0) if body.logprobs else None
    return body.logprobs
