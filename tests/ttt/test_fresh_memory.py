"""Fresh pool memory is never read as garbage: a slot is zeroed at its first use, so owners of
different lengths batched together (a shorter row reads masked KV positions up to the longest)
match the sequential reference even when the allocator hands out NaN-filled pages. (The scratch
block and row, where padding rows write and unused table entries point, are zeroed when the
pool is built and only ever hold finite values.)"""
import torch

from rwttt_ray.ttt.local import LocalLoop
from tests.ttt.oracle import assert_matches_reference, make_requests


def test_nan_garbage_in_fresh_slots_never_reaches_an_output(model_c8):
    reqs = make_requests(3, prompt_lens=[5, 13, 21], gen_lens=[12])
    loop = LocalLoop(model=model_c8, max_states_per_worker=4, record_logits=True, keep_state=True)
    seqs = loop.workers["w0"].runner.seqs
    for t in (*seqs.kv.k, *seqs.kv.v, *seqs.xbuf, *seqs.hbuf):
        t[:-1].fill_(float("nan"))            # what fresh memory may hold (all but the scratch)
    out = loop.run(reqs)
    assert all(torch.isfinite(x).all() for o in out.values() for x in o.logits)
    assert_matches_reference(model_c8, reqs, out)
