"""A poisoned request fails alone: each bad sampling value is a 400 before it reaches a worker (or,
where it is valid, is served), and every other stream running beside them gets the reference's
tokens."""
import concurrent.futures as cf
import json

import httpx
import pytest

from rwttt_ray.core.request import Request
from rwttt_ray.ttt.tokenizer import EOS_ID, ByteTokenizer

pytestmark = pytest.mark.ray
TOK = ByteTokenizer()
A = {"Authorization": "Bearer sk-alpha", "content-type": "application/json"}
BASE = {"model": "rwttt-tiny", "prompt": "poison", "max_tokens": 6}
POISON = [({"temperature": 1e-300}, 200), ({"top_p": 1e-300}, 200), ({"top_p": 1e-300, "temperature": 1.5}, 200),
          ({"temperature": "NaN"}, 400), ({"temperature": "Infinity"}, 400), ({"top_p": 0}, 400),
          ({"top_k": -5}, 400), ({"presence_penalty": 1e308}, 400), ({"repetition_penalty": 1e-300}, 400),
          ({"frequency_penalty": "-Infinity"}, 400), ({"logit_bias": {"5": 1e9}}, 400), ({"seed": -1}, 400)]


def raw(body):
    """JSON with NaN/Infinity literals where the value is one of those strings (as a client may send)."""
    text = json.dumps(body)
    for word in ("NaN", "Infinity", "-Infinity"):
        text = text.replace(f'"{word}"', word)
    return text


def test_bad_sampling_values_fail_alone(server, http_reference):
    prompts = [f"a good stream {i} " for i in range(6)]

    def good(p):
        body = {"model": "rwttt-tiny", "prompt": p, "max_tokens": 16, "temperature": 0, "return_token_ids": True}
        return httpx.post(f"{server}/v1/completions", headers=A, json=body, timeout=120).json()

    def bad(case):
        return httpx.post(f"{server}/v1/completions", headers=A, content=raw({**BASE, **case[0]}), timeout=120)

    with cf.ThreadPoolExecutor(12) as pool:
        goods = [pool.submit(good, p) for p in prompts]
        bads = list(pool.map(bad, POISON))
        goods = [g.result() for g in goods]
    for (case, status), res in zip(POISON, bads):
        assert res.status_code == status, (case, res.text)
        if status == 400:
            assert res.json()["error"]["type"] == "invalid_request_error"
    for p, out in zip(prompts, goods):
        want = http_reference.run(Request("r", tuple(TOK.encode(p)), 16, stop_ids=(EOS_ID,))).tokens
        assert out["choices"][0]["token_ids"] == want
