"""The OpenAI client, unchanged, against the real server: outputs equal the sequential reference;
sessions continue, fork and roll back exactly; 32 concurrent streams all get their outputs."""
import concurrent.futures as cf

import httpx
import pytest
from openai import OpenAI

from rwttt_ray.core.request import Request
from rwttt_ray.text.codec import TextCodec
from rwttt_ray.ttt.tokenizer import EOS_ID, ByteTokenizer

pytestmark = pytest.mark.ray
TOK = ByteTokenizer()
MODEL = "rwttt-tiny"
EOS = (EOS_ID,)        # the server ends a reply at the tokenizer's EOS


def text_of(tokens):
    return TOK.decode(tokens)


def ref_text(reference, prompt: str, max_tokens: int) -> str:
    return text_of(reference.run(Request("r", tuple(TOK.encode(prompt)), max_tokens, stop_ids=EOS)).tokens)


@pytest.fixture
def client(server):
    return OpenAI(base_url=f"{server}/v1", api_key="sk-alpha", max_retries=0)


def test_completions_and_chat_streaming_and_not(client, http_reference):
    prompt = "The quick brown fox jumps over"
    want = ref_text(http_reference, prompt, 24)
    out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0)
    assert out.choices[0].text == want and out.usage.completion_tokens == 24
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want
    assert all(c.usage is None for c in chunks)                  # usage only when asked for, as OpenAI
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
    msgs = [{"role": "user", "content": "hello there"}]
    want_chat = ref_text(http_reference, TextCodec(TOK).render_chat(msgs), 12)
    chat = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, temperature=0)
    assert chat.choices[0].message.content == want_chat and chat.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == want_chat
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_seeded_sampling_matches_reference(client, http_reference):
    prompt = "sampling with a seed"
    req = Request("r", tuple(TOK.encode(prompt)), 16, temperature=0.8, top_p=0.9, seed=42, stop_ids=EOS)
    out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=16, temperature=0.8, top_p=0.9, seed=42)
    assert out.choices[0].text == text_of(http_reference.run(req).tokens)


def _session(server, key="sk-alpha"):
    return httpx.post(f"{server}/v1/sessions", headers={"Authorization": f"Bearer {key}"}).json()["id"]


def _turn(client, sid, prompt, n=10, **kw):
    return client.completions.create(model=MODEL, prompt=prompt, max_tokens=n, temperature=0,
                                     extra_body={"session_id": sid, **kw})


def test_session_over_three_turns_equals_one_sequential_stream(client, server, http_reference):
    sid = _session(server)
    prompts = ["first turn of the session ", "second turn ", "third and last turn "]
    outs = [_turn(client, sid, p, 9) for p in prompts]
    want = http_reference.run_turns([Request("s", tuple(TOK.encode(p)), 9, stop_ids=EOS) for p in prompts])
    assert [o.choices[0].text for o in outs] == [text_of(w.tokens) for w in want]
    info = httpx.get(f"{server}/v1/sessions/{sid}", headers={"Authorization": "Bearer sk-alpha"}).json()
    assert info["version"] == want[-1].num_writes > 0


def test_fork_diverges_only_from_the_fork_point_and_rollback_restores(client, server, http_reference):
    auth = {"Authorization": "Bearer sk-alpha"}
    sid = _session(server)
    base = "a shared beginning for both branches "
    _turn(client, sid, base, 8)
    v1 = httpx.get(f"{server}/v1/sessions/{sid}", headers=auth).json()["version"]
    child = httpx.post(f"{server}/v1/sessions/{sid}/fork", headers=auth).json()["id"]
    a, b = _turn(client, sid, "branch A goes here", 10), _turn(client, child, "branch B goes elsewhere", 10)

    def turn(p: str, n: int) -> Request:
        return Request("s", tuple(TOK.encode(p)), n, stop_ids=EOS)

    want_a = http_reference.run_turns([turn(base, 8), turn("branch A goes here", 10)])[-1]
    want_b = http_reference.run_turns([turn(base, 8), turn("branch B goes elsewhere", 10)])[-1]
    assert a.choices[0].text == text_of(want_a.tokens) and b.choices[0].text == text_of(want_b.tokens)
    back = httpx.post(f"{server}/v1/sessions/{sid}/rollback", headers=auth, json={"version": v1})
    assert back.status_code == 200 and back.json()["version"] == v1
    again = _turn(client, sid, "branch B goes elsewhere", 10)
    assert again.choices[0].text == text_of(want_b.tokens)     # exactly the state after the shared turn


def test_32_concurrent_streaming_clients(server, http_reference):
    prompts = [f"client number {i} says hello " for i in range(32)]

    def one(p):
        c = OpenAI(base_url=f"{server}/v1", api_key="sk-beta", max_retries=0)
        return "".join(ch.choices[0].text for ch in c.completions.create(
            model=MODEL, prompt=p, max_tokens=12, temperature=0, stream=True) if ch.choices)

    with cf.ThreadPoolExecutor(32) as pool:
        got = list(pool.map(one, prompts))
    assert got == [ref_text(http_reference, p, 12) for p in prompts]
