"""A byte-level tokenizer written in the project: UTF-8 bytes shifted past a few special ids.

It needs no files and no downloads, so the default model runs anywhere. Ids 0..2 are
<pad>, <bos>, <eos>; byte b is id b + 3. Decoding replaces invalid UTF-8.
"""
from __future__ import annotations

from collections.abc import Iterable

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
NUM_SPECIAL = 3
VOCAB_SIZE = 256 + NUM_SPECIAL


class ByteTokenizer:
    """Text <-> token ids, one id per UTF-8 byte."""

    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    vocab_size = VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        return [b + NUM_SPECIAL for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        data = bytes(i - NUM_SPECIAL for i in ids if NUM_SPECIAL <= i < VOCAB_SIZE)
        return data.decode("utf-8", errors="replace")
