"""A byte-level tokenizer written in the project: UTF-8 bytes shifted past a few special ids.

It needs no files and no downloads, so the default model runs anywhere. Ids 0..2 are
<pad>, <bos>, <eos>; byte b is id b + 3. Decoding replaces invalid UTF-8; special ids are
dropped (or, with skip_special_tokens=False, written as their names).
"""
from __future__ import annotations

from collections.abc import Iterable

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
NUM_SPECIAL = 3
VOCAB_SIZE = 256 + NUM_SPECIAL
SPECIAL_NAMES = ("<pad>", "<bos>", "<eos>")


class ByteTokenizer:
    """Text <-> token ids, one id per UTF-8 byte."""

    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    vocab_size = VOCAB_SIZE

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [b + NUM_SPECIAL for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        out, run = [], bytearray()
        for i in ids:
            if NUM_SPECIAL <= i < VOCAB_SIZE:
                run.append(i - NUM_SPECIAL)
            elif 0 <= i < NUM_SPECIAL and not skip_special_tokens:
                out.append(run.decode("utf-8", errors="replace") + SPECIAL_NAMES[i])
                run = bytearray()
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_bytes(self, token: int) -> bytes:
        if NUM_SPECIAL <= token < VOCAB_SIZE:
            return bytes([token - NUM_SPECIAL])
        return SPECIAL_NAMES[token].encode() if 0 <= token < NUM_SPECIAL else b""
