"""Stops: the worker's checker ends a turn at the token that completes a stop string (or is a stop
id); the ingress's text stream never shows the stop string, whatever batch it falls in."""
import random

import pytest

from rwttt_ray.text.stops import StopChecker, TextStream, find_stop


def test_find_stop_earliest_and_from_start():
    assert find_stop("abc\n\nxyz", ["yz", "\n\n"]) == (3, "\n\n")
    assert find_stop("abcabc", ["abc"], start=4) == (3, "abc")     # ends at/after 4: the second one
    assert find_stop("abc", ["zz"]) is None


def client_text(codec, ids, stop, reason, rng):
    """What a client sees when `ids` arrive in random batches, the last one marked finished."""
    stream, out, i = TextStream(codec, stop), [], 0
    while i < len(ids):
        n = rng.randint(1, 4)
        batch, i = ids[i:i + n], i + n
        out.append(stream.feed(batch, finished=i >= len(ids), reason=reason))
    return "".join(out)


@pytest.mark.parametrize("which", ["bpe", "byte_codec"])
def test_stop_string_at_every_offset(which, request):
    """For each token offset: the stop string is the text the token completes; the checker stops
    exactly there, and the client text is the text before the stop's first occurrence."""
    codec, rng = request.getfixturevalue(which), random.Random(3)
    text = "The quick brown fox jumps over the lazy dog. héllo wörld ✓ 日本語"
    ids = codec.encode(text)
    for k in range(1, len(ids)):
        full, before = codec.decode(ids[:k + 1]), codec.decode(ids[:k])
        if "\ufffd" in full[len(before) - 1:] or not full.startswith(before) or full == before:
            continue                                  # a token inside a character: nothing completes there
        stop = full[len(before):][-3:]
        checker = StopChecker(codec, [stop])
        ends = [j for j, t in enumerate(ids) if checker.push(t) is not None]
        assert ends and ends[0] <= k
        j = ends[0]
        want = codec.decode(ids[:j + 1])
        want = want[:want.find(stop)]
        for _ in range(5):
            assert client_text(codec, ids[:j + 1], [stop], stop, rng) == want


def test_stop_id_text_is_not_output(bpe):
    eos = bpe.tokenizer.eos_token_id
    ids = bpe.encode("ab") + [eos]
    checker = StopChecker(bpe, (), [eos])
    assert [checker.push(t) for t in ids] == [None] * (len(ids) - 1) + [eos]
    stream = TextStream(bpe, skip_special_tokens=False)
    assert stream.feed(ids, finished=True, reason=eos) == "ab"


def test_text_is_held_back_while_a_stop_may_be_forming(byte_codec):
    stream = TextStream(byte_codec, ["\n\n"])
    assert stream.feed(byte_codec.encode("line\n")) == "line"             # the "\n" may start a stop
    assert stream.feed(byte_codec.encode("\n"), finished=True, reason="\n\n") == ""
    assert stream.text == "line"
    stream = TextStream(byte_codec, ["\n\n"])
    assert stream.feed(byte_codec.encode("a\n")) + stream.feed(byte_codec.encode("b"), finished=True) == "a\nb"


def test_replay_finds_a_stop_in_logged_tokens(byte_codec):
    ids = byte_codec.encode("abc STOP")
    assert StopChecker(byte_codec, ["STOP"]).replay(ids) == "STOP"
    assert StopChecker(byte_codec, ["STOP"]).replay(ids[:-1]) is None
