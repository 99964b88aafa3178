"""CUDA graphs of the static decode rounds (skipped without CUDA): the captured rounds give the
eager rounds' tokens and logits, and the eager group path's, for several buckets."""
import pytest
import torch

from rwttt_ray.ttt.local import LocalLoop
from tests.ttt.oracle import LOGIT_TOL, make_requests

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def cuda_model(model_c8):
    from rwttt_ray.ttt.model import build_default_model

    m = build_default_model()
    m = m.with_settings(model_c8.settings)
    m.hf.to("cuda")
    m.conv = {i: t.cuda() for i, t in m.conv.items()}
    m.proj = {i: t.cuda() for i, t in m.proj.items()}
    return m


@pytest.mark.parametrize("owners", [1, 3, 8, 17])
def test_graphs_equal_eager_rounds_and_eager_groups(cuda_model, owners):
    reqs = make_requests(owners, prompt_lens=[3, 9, 14], gen_lens=[11, 6, 17])
    outs = {}
    for name, opts in (("graphs", dict(graphs=True)), ("eager", dict(graphs=False)), ("groups", dict(static_rounds=False))):
        loop = LocalLoop(model=cuda_model, max_states_per_worker=owners, record_logits=True, worker_options=opts)
        outs[name] = loop.run(reqs)
        if name == "graphs":
            assert loop.workers["w0"].static.decoder._captured        # graphs were captured and replayed
    for o in outs["graphs"]:
        for other in ("eager", "groups"):
            assert outs["graphs"][o].tokens == outs[other][o].tokens
            worst = max(float((a.cpu() - b.cpu()).abs().max()) for a, b in zip(outs["graphs"][o].logits, outs[other][o].logits))
            assert worst <= LOGIT_TOL


def test_spills_copy_to_pinned_memory_on_a_side_stream_and_reload_exactly(cuda_model):
    """More owners than slots: spilled owners sit in pinned host tensors (HostState, copied on
    the worker's copy stream) and every owner ends with the tokens of a run with a slot each."""
    from rwttt_ray.ttt.host_state import HostState

    reqs = make_requests(6, prompt_lens=[4, 11], gen_lens=[21, 13])
    loop = LocalLoop(model=cuda_model, max_states_per_worker=2, quantum_steps=4)
    worker, pinned = loop.workers["w0"], []
    spill = worker.spill

    def watched(owner_id):
        spill(owner_id)
        entry = worker.host[owner_id]
        pinned.append(isinstance(entry, HostState) and all(t.is_pinned() for t in entry.snap.tensors.values()))
    worker.spill = watched
    out = loop.run(reqs)
    assert pinned and all(pinned) and worker.copy_stream is not None
    want = LocalLoop(model=cuda_model, max_states_per_worker=6).run(reqs)
    assert all(out[o].tokens == want[o].tokens for o in out)
