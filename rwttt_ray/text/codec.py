"""TextCodec: one model's tokenizer as the server uses it (encode, decode, chat, token strings).

Wraps a transformers tokenizer (a checkpoint's tokenizer.json) or the project's byte tokenizer
behind one interface, so the ingress and the worker read text the same way. Chat prompts use
the tokenizer's own `chat_template` (or a `--chat-template` file that overrides it); the
built-in `<|role|>` template is only for the byte tokenizer, which has none.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

BUILTIN_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


class ChatTemplateError(ValueError):
    """The chat template could not render these messages."""


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: printable stand-in character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_OF = _bytes_to_unicode()


class TextCodec:
    def __init__(self, tokenizer: Any, chat_template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.hf = hasattr(tokenizer, "convert_ids_to_tokens")
        self.template_override = chat_template

    # -- ids <-> text ----------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self.hf:
            return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        if self.hf:
            return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens,
                                         clean_up_tokenization_spaces=False)
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    @cached_property
    def vocab_size(self) -> int:
        return len(self.tokenizer) if self.hf else self.tokenizer.vocab_size

    @cached_property
    def eos_ids(self) -> tuple[int, ...]:
        eos = getattr(self.tokenizer, "eos_token_id", None) if self.hf else self.tokenizer.eos_id
        return () if eos is None else (int(eos),)

    # -- chat --------------------------------------------------------------------------------
    @property
    def chat_template(self) -> str:
        if self.template_override is not None:
            return self.template_override
        own = getattr(self.tokenizer, "chat_template", None) if self.hf else None
        return own if isinstance(own, str) and own else BUILTIN_TEMPLATE

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text of `messages` with the assistant's turn opened."""
        try:
            if self.hf:
                return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template,
                                                          add_generation_prompt=True, tokenize=False)
            from transformers.utils.chat_template_utils import render_jinja_template

            return render_jinja_template(conversations=[messages], chat_template=self.chat_template,
                                         add_generation_prompt=True)[0][0]
        except Exception as exc:   # jinja raises many types (raise_exception in templates too)
            raise ChatTemplateError(f"chat template: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
                from None

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Chat prompt ids: the rendered template, tokenized without adding special tokens again."""
        return self.encode(self.render_chat(messages), add_special_tokens=False)

    # -- single tokens (logprobs) --------------------------------------------------------------
    def token_text(self, token: int) -> str:
        return self.decode([token], skip_special_tokens=False)

    def token_bytes(self, token: int) -> list[int]:
        """The raw bytes a token stands for (a piece of a UTF-8 character has no text of its own)."""
        if not self.hf:
            return list(self.tokenizer.token_bytes(token))
        piece = self.tokenizer.convert_ids_to_tokens(int(token))
        if piece is not None and piece not in self.tokenizer.all_special_tokens and all(c in _BYTE_OF for c in piece):
            return [_BYTE_OF[c] for c in piece]
        return list(self.token_text(token).encode("utf-8"))


def read_chat_template(path: str | None) -> str | None:
    """The contents of a --chat-template file (None: use the tokenizer's own)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"chat template file {path!r} does not exist")
    return p.read_text()
