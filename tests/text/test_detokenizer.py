"""The incremental detokenizer gives the text of a whole decode, however the ids arrive: byte-level
BPE pieces of one character split across batches, SentencePiece leading spaces, invalid bytes."""
import random

import pytest

from rwttt_ray.text.detokenizer import IncrementalDetokenizer

TEXTS = ["héllo wörld ✓ 日本語のテキスト 🎉", "Ein Bär läuft über die Straße.", "naïve café résumé 你好，世界。"]


def pieces(ids, rng):
    """`ids` cut into batches of random sizes (1..5), as long-polls deliver them."""
    out, i = [], 0
    while i < len(ids):
        n = rng.randint(1, 5)
        out.append(ids[i:i + n])
        i += n
    return out


def streamed(codec, ids, rng, context=()):
    d = IncrementalDetokenizer(codec, context)
    text = "".join(d.push(batch) for batch in pieces(ids, rng))
    return text + d.flush(), d


@pytest.mark.parametrize("which", ["bpe", "byte_codec"])
def test_text_in_batches_equals_one_decode(which, request):
    codec, rng = request.getfixturevalue(which), random.Random(0)
    for text in TEXTS:
        ids = codec.encode(text)
        assert len(ids) > len(text.split())                      # multi-byte characters take several ids
        for _ in range(20):
            assert streamed(codec, ids, rng)[0] == codec.decode(ids) == text


@pytest.mark.parametrize("which", ["bpe", "byte_codec"])
def test_random_ids_including_invalid_utf8(which, request):
    codec, rng = request.getfixturevalue(which), random.Random(1)
    for _ in range(200):
        ids = [rng.randrange(codec.vocab_size) for _ in range(rng.randint(1, 40))]
        assert streamed(codec, ids, rng)[0] == codec.decode(ids)


def test_a_split_character_waits_until_whole(bpe):
    ids = bpe.encode("🎉")
    assert len(ids) > 1
    d = IncrementalDetokenizer(bpe)
    assert [d.push([i]) for i in ids] == [""] * (len(ids) - 1) + ["🎉"]


def test_sentencepiece_keeps_leading_spaces_with_the_prompt_as_context(metaspace):
    prompt, rng = metaspace.encode("Ein Bär"), random.Random(2)
    for text in (" läuft über die Straße.", " naïve café"):
        gen = metaspace.encode("Ein Bär" + text)[len(prompt):]
        assert metaspace.decode(gen) != text                      # alone, SentencePiece drops the space
        got, _ = streamed(metaspace, gen, rng, context=prompt)
        assert got == text


def test_special_tokens_skipped_or_shown(bpe):
    ids = bpe.encode("hi") + [bpe.tokenizer.eos_token_id] + bpe.encode(" there")
    d = IncrementalDetokenizer(bpe)
    assert d.push(ids) + d.flush() == "hi there"
    d = IncrementalDetokenizer(bpe, skip_special_tokens=False)
    assert d.push(ids) + d.flush() == "hi<|im_end|> there"
