"""Logit shaping and logprobs, as OpenAI and vLLM define them (against hand-written loops)."""
import math

import torch

from rwttt_ray.core.request import Request
from rwttt_ray.ttt.sampling import sample, shape_logits, token_logprobs

V = 12


def req(**kw):
    return Request("a", (1,), 4, **kw)


def test_presence_frequency_penalties_count_generated_tokens():
    logits, gen = torch.linspace(-1, 1, V), [3, 3, 5]
    got = shape_logits(logits, req(presence_penalty=0.5, frequency_penalty=0.25), gen, [9, 9] + gen)
    want = logits.clone()
    for t in set(gen):
        want[t] -= 0.25 * gen.count(t) + 0.5                # OpenAI: mu - c*alpha_f - (c>0)*alpha_p
    torch.testing.assert_close(got, want)


def test_repetition_penalty_over_the_stream_and_logit_bias():
    logits = torch.linspace(-1, 1, V)
    got = shape_logits(logits, req(repetition_penalty=2.0, logit_bias=((0, 5.0), (11, -100.0))), [], [0, 1, 11])
    want = logits.clone()
    want[0] += 5.0
    want[11] -= 100.0
    for t in (0, 1, 11):
        want[t] = want[t] / 2 if want[t] > 0 else want[t] * 2
    torch.testing.assert_close(got, want)


def test_greedy_and_bias_change_the_token():
    logits = torch.linspace(-1, 1, V)
    assert sample(logits, req(), 0) == V - 1
    assert sample(logits, req(logit_bias=((2, 100.0),)), 0) == 2
    assert sample(logits, req(temperature=1e-300), 0) == V - 1      # below 1e-5: greedy, never inf/nan
    assert sample(logits, req(temperature=1.0, top_p=1e-300, seed=1), 0) == V - 1   # 0 in fp32: the top token


def test_top_k_keeps_only_the_k_best():
    logits = torch.linspace(-1, 1, V)
    draws = {sample(logits, req(temperature=1.0, top_k=2, seed=s), 0) for s in range(60)}
    assert draws == {V - 1, V - 2}


def test_token_logprobs_is_a_log_softmax():
    logits = torch.randn(V, generator=torch.Generator().manual_seed(0))
    lp, top = token_logprobs(logits, 4, 3)
    ref = [x - math.log(sum(math.exp(y) for y in logits.tolist())) for x in logits.tolist()]
    assert abs(lp - ref[4]) < 1e-5
    assert [t for t, _ in top] == sorted(range(V), key=lambda i: -ref[i])[:3]
    assert all(abs(v - ref[t]) < 1e-5 for t, v in top)
    assert token_logprobs(logits, 4, 0) == (lp, ())
