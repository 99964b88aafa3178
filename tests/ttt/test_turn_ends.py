"""Where tokens are made (SchedulerCore + WorkerCore, no Ray: the in-process loop), on a checkpoint with a real BPE
tokenizer: a turn ends at its stop string or stop id and at no later token; logprobs are the
reference's log-softmax; penalties, bias and top-k give the reference's tokens; a session turn's
end state is kept (and reported) exactly once its last WRITE is published, at any offset from a
chunk boundary, and continuing from it equals one sequential stream."""

import pytest
import torch

from rwttt_ray.core.request import Request
from rwttt_ray.text.codec import TextCodec
from rwttt_ray.ttt.reference import SequentialReference
from tests.ttt.test_phases import loop_of, serve


def prompt_of(codec, text):
    return tuple(codec.encode(text))


def test_stop_strings_end_the_turn_at_the_completing_token(bpe_model):
    codec, ref = TextCodec(bpe_model.tokenizer), SequentialReference(bpe_model)
    prompt = prompt_of(codec, "tell me a story about Zürich")
    free = ref.run(Request("f", prompt, 48)).tokens
    cases = []
    for k in range(1, 44):         # a stop completed at token k: every position in a phase (C = 8)
        before, full = codec.decode(free[:k]), codec.decode(free[:k + 1])
        if full.startswith(before) and len(full) > len(before) and "\ufffd" not in full[len(before) - 1:]:
            cases.append((k, full[len(before):][-2:]))
    assert len({k % 8 for k, _ in cases}) >= 6
    reqs = [Request(f"s{i}", prompt, 48, stop=(stop,)) for i, (_, stop) in enumerate(cases)]
    out = serve(loop_of(bpe_model), reqs)
    for r, (k, stop) in zip(reqs, cases):
        j = next(j for j in range(len(free)) if stop in codec.decode(free[:j + 1]))   # first completing token
        assert j <= k and out[r.owner_id].tokens == free[:j + 1], stop
        assert out[r.owner_id].stop_reason == stop
        assert ref.run(r).tokens == free[:j + 1]


def test_stop_ids_end_the_turn(bpe_model):
    codec, ref = TextCodec(bpe_model.tokenizer), SequentialReference(bpe_model)
    prompt = prompt_of(codec, "héllo wörld")
    free = ref.run(Request("f", prompt, 30)).tokens
    stop_id = free[7]
    rec = serve(loop_of(bpe_model), [Request("a", prompt, 30, stop_ids=(stop_id,))])["a"]
    assert rec.tokens == free[:free.index(stop_id) + 1] and rec.stop_reason == stop_id


def test_logprobs_are_the_references_log_softmax(bpe_model):
    codec, ref = TextCodec(bpe_model.tokenizer), SequentialReference(bpe_model, record_logits=True)
    reqs = [Request(f"o{i}", prompt_of(codec, t), 20, logprobs=k)
            for i, (t, k) in enumerate([("日本語", 0), ("Ein Bär läuft", 3), ("naïve café", 5)])]
    out = serve(loop_of(bpe_model), reqs)
    for r in reqs:
        want, rec = ref.run(r), out[r.owner_id]
        assert rec.tokens == want.tokens and len(rec.logprobs) == len(want.tokens)
        for tok, logits, (lp, top) in zip(want.tokens, want.logits, rec.logprobs):
            ls = torch.log_softmax(logits.float(), -1)
            assert abs(lp - float(ls[tok])) < 1e-4 and len(top) == r.logprobs
            assert all(abs(v - float(ls[t])) < 1e-4 for t, v in top)
            assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)


def test_penalties_bias_and_top_k_follow_the_reference(bpe_model):
    codec, ref = TextCodec(bpe_model.tokenizer), SequentialReference(bpe_model)
    prompt = prompt_of(codec, "The quick brown fox")
    variants = [dict(presence_penalty=1.5), dict(frequency_penalty=2.0), dict(repetition_penalty=1.8),
                dict(logit_bias=((codec.encode(" fox")[0], 8.0),)),
                dict(temperature=0.9, top_k=5, seed=3), dict(temperature=0.7, top_p=0.8, frequency_penalty=0.5, seed=4)]
    reqs = [Request(f"v{i}", prompt, 24, **kw) for i, kw in enumerate(variants)]
    out = serve(loop_of(bpe_model), reqs)
    plain = ref.run(Request("p", prompt, 24)).tokens
    for r in reqs:
        assert out[r.owner_id].tokens == ref.run(r).tokens
    assert all(out[r.owner_id].tokens != plain for r in reqs)


@pytest.mark.parametrize("fed", [7, 8, 9, 16])       # C-1, C, C+1, 2C (C = 8)
def test_a_session_turn_is_kept_once_its_last_write_is_published(bpe_model, fed):
    codec, ref = TextCodec(bpe_model.tokenizer), SequentialReference(bpe_model)
    prompt = prompt_of(codec, "héllo")
    n = fed - len(prompt) + 1                          # the last generated token is not fed yet
    loop = loop_of(bpe_model)
    loop.submit(Request("s", prompt, n, keep_at_end=True))
    while not loop.stats.kept:
        assert loop.tick()
    worker = loop.workers["w0"]
    want = ref.run_turns([Request("s", prompt, n)])[-1]
    assert loop.stats.kept == [("s", want.num_writes)] and loop.core.ledger.committed("s") == want.num_writes
    assert not worker.runner.pool.has_candidate("s") and ("s", want.num_writes) in worker.kept
    loop.next_turn("s", prompt_of(codec, " wörld"), 12)  # the next turn, from the kept state's successor
    out = serve(loop, [])
    two = ref.run_turns([Request("s", prompt, n), Request("s", prompt_of(codec, " wörld"), 12)])
    assert out["s"].tokens == two[-1].tokens and len(loop.stats.kept) == 2 and "s" in loop.core.owners
    worker.restore_kept("s", want.num_writes)          # and back to the first turn's end, exactly
    st = worker.runner.owners["s"]
    assert st.generated == want.tokens and st.writes == want.num_writes and st.pos == fed
