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
