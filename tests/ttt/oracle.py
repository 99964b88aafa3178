"""The key oracle: per owner, the serving loop's outputs and states equal the sequential reference."""
import random

import torch

from rwttt_ray.ttt.reference import SequentialReference
from rwttt_ray.ttt.sampling import Request

LOGIT_TOL = 1e-4


def make_requests(n, prompt_lens, gen_lens, seed=0, **kw):
    rng = random.Random(seed)
    return [Request(f"o{i}", tuple(rng.randint(3, 258) for _ in range(prompt_lens[i % len(prompt_lens)])),
                    gen_lens[i % len(gen_lens)], seed=i, **kw) for i in range(n)]


def assert_matches_reference(model, requests, outcomes, check_state=True, check_logits=True, logits_tail=False):
    """logits_tail: owners rebuilt by replay only hold the logits emitted after the rebuild."""
    ref = SequentialReference(model)
    for req in requests:
        want, got = ref.run(req), outcomes[req.owner_id]
        assert got.error is None, got.error
        assert got.tokens == want.tokens, f"{req.owner_id}: tokens differ"
        if check_logits:
            ref_logits = want.logits[len(want.logits) - len(got.logits):] if logits_tail else want.logits
            assert len(got.logits) == len(ref_logits) and got.logits
            worst = max(float((a - b).abs().max()) for a, b in zip(got.logits, ref_logits))
            assert worst <= LOGIT_TOL, f"{req.owner_id}: max logit diff {worst}"
        assert got.version == want.num_writes, f"{req.owner_id}: version {got.version} != {want.num_writes} writes"
        if check_state:
            assert (got.deltas is None) == (want.deltas is None)
            for a, b in zip(got.deltas or [], want.deltas or []):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
