"""Every OpenAI parameter either changes the output as OpenAI documents (checked against the
sequential reference) or is a 400 naming it; unknown routes answer in the OpenAI error shape."""
import json

import httpx
import pytest
from openai import BadRequestError

from rwttt_ray.core.request import Request

pytestmark = pytest.mark.ray
MODEL = "bpe-tiny"
A = {"Authorization": "Bearer sk-alpha", "content-type": "application/json"}




def ref(bpe_reference, bpe_tok, prompt, n, **kw):
    ids = prompt if isinstance(prompt, list) else bpe_tok.encode(prompt)
    kw.setdefault("stop_ids", (bpe_tok.eos_token_id, bpe_tok.convert_tokens_to_ids("<|endoftext|>")))
    return bpe_reference.run(Request("r", tuple(ids), n, **kw)).tokens


def ids_of(choice):
    return choice.model_extra["token_ids"] if hasattr(choice, "model_extra") else choice["token_ids"]


def test_list_and_token_prompts_echo_and_n(bpe_client, bpe_tok, bpe_reference):
    prompts = ["héllo wörld", "Ein Bär", "日本語"]
    out = bpe_client.completions.create(model=MODEL, prompt=prompts, max_tokens=10, temperature=0,
                                    extra_body={"return_token_ids": True})
    assert [c.index for c in out.choices] == [0, 1, 2]
    for p, c in zip(prompts, out.choices):
        assert ids_of(c) == ref(bpe_reference, bpe_tok, p, 10)
    assert out.usage.prompt_tokens == sum(len(bpe_tok.encode(p)) for p in prompts)
    ids = bpe_tok.encode("naïve café")
    one = bpe_client.completions.create(model=MODEL, prompt=ids, max_tokens=8, temperature=0,
                                    extra_body={"return_token_ids": True}).choices[0]
    two = bpe_client.completions.create(model=MODEL, prompt=[ids, bpe_tok.encode("x")], max_tokens=8, temperature=0,
                                    extra_body={"return_token_ids": True}).choices
    assert ids_of(one) == ids_of(two[0]) == ref(bpe_reference, bpe_tok, ids, 8) and len(two) == 2
    echo = bpe_client.completions.create(model=MODEL, prompt="Ein Bär", max_tokens=6, temperature=0, echo=True)
    plain = bpe_client.completions.create(model=MODEL, prompt="Ein Bär", max_tokens=6, temperature=0)
    assert echo.choices[0].text == "Ein Bär" + plain.choices[0].text
    stream = list(bpe_client.completions.create(model=MODEL, prompt="Ein Bär", max_tokens=6, temperature=0, echo=True,
                                            stream=True))
    assert "".join(c.choices[0].text for c in stream if c.choices) == echo.choices[0].text
    many = bpe_client.completions.create(model=MODEL, prompt="Ein Bär", max_tokens=8, temperature=1.0, n=3, seed=5,
                                     extra_body={"return_token_ids": True})
    assert [c.index for c in many.choices] == [0, 1, 2]
    for i, c in enumerate(many.choices):       # choice i draws with seed + i
        assert ids_of(c) == ref(bpe_reference, bpe_tok, "Ein Bär", 8, temperature=1.0, seed=5 + i)


def test_penalties_bias_and_vllm_extensions(bpe_client, bpe_tok, bpe_reference):
    prompt = "The quick brown fox"
    cases = [dict(presence_penalty=1.5), dict(frequency_penalty=2.0), dict(logit_bias={str(bpe_tok.encode(" fox")[0]): 9}),
             dict(extra_body={"top_k": 4, "repetition_penalty": 1.5}, temperature=0.8, seed=2)]
    for kw in cases:
        body = dict(kw)
        extra = {"return_token_ids": True, **body.pop("extra_body", {})}
        body.setdefault("temperature", 0)
        out = bpe_client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, extra_body=extra, **body)
        want_kw = {k: v for k, v in {**body, **extra}.items() if k not in ("return_token_ids",)}
        if "logit_bias" in want_kw:
            want_kw["logit_bias"] = tuple((int(k), float(v)) for k, v in want_kw["logit_bias"].items())
        assert ids_of(out.choices[0]) == ref(bpe_reference, bpe_tok, prompt, 12, **want_kw), kw
    eos = bpe_tok.eos_token_id
    forced = bpe_client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0,
                                       logit_bias={str(eos): 100}).choices[0]
    assert forced.finish_reason == "stop" and forced.text == ""
    ignored = bpe_client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0,
                                        logit_bias={str(eos): 100}, extra_body={"ignore_eos": True,
                                                                                "return_token_ids": True}).choices[0]
    assert ignored.finish_reason == "length" and ids_of(ignored) == [eos] * 5
    free = ref(bpe_reference, bpe_tok, prompt, 12, stop_ids=())
    by_id = bpe_client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0,
                                      extra_body={"stop_token_ids": [free[4]], "ignore_eos": True,
                                                  "return_token_ids": True}).choices[0]
    assert ids_of(by_id) == free[:free.index(free[4]) + 1] and by_id.finish_reason == "stop"
    assert by_id.model_extra["stop_reason"] == free[4]


def test_lengths_default_to_the_rest_of_the_context(bpe_client, bpe_tok, bpe_reference, bpe_server):
    prompt = "tell me a story"
    out = bpe_client.completions.create(model=MODEL, prompt=prompt, max_tokens=None, temperature=0,
                                    extra_body={"return_token_ids": True}).choices[0]
    assert ids_of(out) == ref(bpe_reference, bpe_tok, prompt, 512 - len(bpe_tok.encode(prompt)))
    msgs = [{"role": "user", "content": "hi"}]
    chat = bpe_client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_completion_tokens=7,
                                          extra_body={"ignore_eos": True})
    assert chat.usage.completion_tokens == 7
    full = bpe_client.chat.completions.create(model=MODEL, messages=msgs, temperature=0)   # no limit: until EOS
    assert full.choices[0].finish_reason == "stop" or full.usage.total_tokens == 512
    res = httpx.post(f"{bpe_server}/v1/chat/completions", headers=A, json={"model": MODEL, "messages": msgs,
                                                                             "max_tokens": 3, "max_completion_tokens": 4})
    assert res.status_code == 400 and "max_completion_tokens" in res.json()["error"]["message"]


@pytest.mark.parametrize("body,field", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "image_url"),
    ({"stream_options": {"continuous_usage_stats": True}}, "continuous_usage_stats"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logit_bias": {"999999": 1}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "Unicode"),
])
def test_unsupported_chat_fields_are_400_naming_them(bpe_server, body, field):
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **body}
    res = httpx.post(f"{bpe_server}/v1/chat/completions", headers=A, content=json.dumps(payload), timeout=60)
    assert res.status_code == 400, res.text
    assert field in res.json()["error"]["message"] or field == res.json()["error"]["param"]


@pytest.mark.parametrize("body,field", [
    ({"suffix": "end"}, "suffix"), ({"echo": True, "logprobs": 1}, "echo"), ({"best_of": 3}, "best_of"),
    ({"prompt": [999999]}, "vocabulary"), ({"prompt": []}, "prompt"), ({"prompt": [""]}, "prompt"),
    ({"max_tokens": 600}, "context"), ({"n": 2, "session_id": "sess-x"}, "session"), ({"stop": [""]}, "stop"),
])
def test_unsupported_or_bad_completion_fields(bpe_server, body, field):
    payload = {"model": MODEL, "prompt": "hi", "max_tokens": 2, **body}
    res = httpx.post(f"{bpe_server}/v1/completions", headers=A, content=json.dumps(payload), timeout=60)
    assert res.status_code in (400, 413), res.text
    assert field in res.json()["error"]["message"]


def test_the_clients_own_errors_and_unknown_routes(bpe_client, bpe_server):
    with pytest.raises(BadRequestError, match="tools"):
        bpe_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/embeddings"), ("DELETE", "/v1/models")):
        res = httpx.request(method, f"{bpe_server}{path}", headers=A)
        assert res.status_code in (404, 405) and res.json()["error"]["message"]
    assert [m.id for m in bpe_client.models.list().data] == ["bpe-tiny", "bpe"]
