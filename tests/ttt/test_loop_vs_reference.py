"""Batched RW-TTT (the in-process serving loop) equals the sequential reference per owner:
tokens, logits (1e-4), states."""
import random

import pytest

from rwttt_ray.ttt.local import LocalLoop
from tests.ttt.oracle import assert_matches_reference, make_requests


def _run(model, reqs, arrivals=None, **kw):
    loop = LocalLoop(model=model, max_states_per_worker=max(len(reqs), 1), record_logits=True, keep_state=True, **kw)
    return loop, loop.run(reqs, arrivals)


@pytest.mark.parametrize("owners", [1, 2, 8, 32])
def test_owners_match_reference(model_c8, owners):
    reqs = make_requests(owners, prompt_lens=[3, 11, 20, 8, 17], gen_lens=[14, 9, 21])
    _, out = _run(model_c8, reqs)
    assert_matches_reference(model_c8, reqs, out)


def test_default_chunk_prompts_shorter_than_a_chunk(model):
    reqs = make_requests(4, prompt_lens=[5, 12, 31, 33], gen_lens=[40, 6])
    _, out = _run(model, reqs)
    assert_matches_reference(model, reqs, out)


def test_join_and_leave_mid_run_with_phase_skew(model_c8):
    rng = random.Random(7)
    reqs = make_requests(10, prompt_lens=[1, 4, 9, 13, 26], gen_lens=[5, 12, 30], seed=3)
    arrivals = [rng.randint(0, 25) for _ in reqs]
    loop, out = _run(model_c8, reqs, arrivals)
    assert_matches_reference(model_c8, reqs, out)
    assert max(loop.stats.group_sizes) > 1   # it really batched


@pytest.mark.parametrize("group_size,wait", [(3, 0), (4, 2), (64, 5)])
def test_group_size_and_wait_budget_do_not_change_outputs(model_c8, group_size, wait):
    reqs = make_requests(7, prompt_lens=[6, 10, 15], gen_lens=[11, 17], seed=5)
    _, out = _run(model_c8, reqs, [0, 1, 2, 3, 5, 8, 13], max_group_size=group_size, wait_budget_steps=wait)
    assert_matches_reference(model_c8, reqs, out)


def test_seeded_sampling_matches_reference(model_c8):
    reqs = make_requests(5, prompt_lens=[9, 14], gen_lens=[16], temperature=0.9, top_p=0.8)
    _, out = _run(model_c8, reqs)
    assert_matches_reference(model_c8, reqs, out)


@pytest.mark.parametrize("override", [{"target": "input_embed"}, {"use_proj": False}, {"layers": (1, 2, 3)}])
def test_ttt_variants_match_reference(model_c8, override):
    variant = model_c8.with_settings(model_c8.settings.with_overrides(**override))
    reqs = make_requests(4, prompt_lens=[7, 12], gen_lens=[13, 10])
    _, out = _run(variant, reqs)
    assert_matches_reference(variant, reqs, out)


def test_static_model_matches_its_reference(model_c8):
    from rwttt_ray.ttt.baselines import static_model

    static = static_model(model_c8)
    reqs = make_requests(4, prompt_lens=[7, 12], gen_lens=[13])
    _, out = _run(static, reqs)
    assert_matches_reference(static, reqs, out)
    assert all(o.version == 0 and o.deltas is None for o in out.values())
