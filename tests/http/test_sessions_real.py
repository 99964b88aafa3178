"""Sessions on the BPE checkpoint: turns that end at every offset around a chunk boundary continue
exactly like one sequential stream; every kept version listed can be rolled back to and continued
exactly; the caller's sessions are listed; an idle session expires; its tokens can be read back."""
import time

import httpx
import pytest

from rwttt_ray.core.request import Request

pytestmark = pytest.mark.ray
MODEL = "bpe-tiny"
A = {"Authorization": "Bearer sk-alpha"}
B = {"Authorization": "Bearer sk-beta"}
C = 8




def new_session(server, headers=A, **body):
    res = httpx.post(f"{server}/v1/sessions", headers=headers, json=body or None)
    assert res.status_code == 200, res.text
    return res.json()["id"]


def turn(bpe_client, sid, prompt, n):
    out = bpe_client.completions.create(model=MODEL, prompt=prompt, max_tokens=n, temperature=0,
                                    extra_body={"session_id": sid, "ignore_eos": True, "return_token_ids": True})
    return out.choices[0].model_extra["token_ids"], out.model_extra["session"]


def ref_turns(bpe_reference, bpe_tok, turns):
    return bpe_reference.run_turns([Request("s", tuple(bpe_tok.encode(p)), n) for p, n in turns])


@pytest.mark.parametrize("fed", [C - 1, C, C + 1, 2 * C])
def test_turns_ending_around_a_chunk_boundary(bpe_client, bpe_server, bpe_tok, bpe_reference, fed):
    first = "héllo"
    n = fed - len(bpe_tok.encode(first)) + 1                 # the stream fed by the end of the turn = fed
    sid = new_session(bpe_server)
    turns = [(first, n), (" wörld, Ein Bär", 9), (" 日本語", 7)]
    got, views = [], []
    for p, k in turns:
        ids, view = turn(bpe_client, sid, p, k)
        got.append(ids)
        views.append(view)
    want = ref_turns(bpe_reference, bpe_tok, turns)
    assert got == [w.tokens for w in want]
    assert [v["version"] for v in views] == [w.num_writes for w in want]
    assert views[-1]["kept_versions"] == sorted(set(v["version"] for v in views))
    for v in sorted(views[-1]["kept_versions"], reverse=True):   # each listed version: back to it, on from it
        last = max(j for j, x in enumerate(want) if x.num_writes == v)   # (a rollback forgets later ones)
        back = httpx.post(f"{bpe_server}/v1/sessions/{sid}/rollback", headers=A, json={"version": v})
        assert back.status_code == 200, back.text
        ids, _ = turn(bpe_client, sid, " café", 6)
        assert ids == ref_turns(bpe_reference, bpe_tok, turns[:last + 1] + [(" café", 6)])[-1].tokens
    httpx.delete(f"{bpe_server}/v1/sessions/{sid}", headers=A)


def test_listing_tokens_and_expiry(bpe_client, bpe_server, bpe_tok):
    mine = [new_session(bpe_server), new_session(bpe_server, ttl_s=1.5)]
    theirs = new_session(bpe_server, B)
    listed = [s["id"] for s in httpx.get(f"{bpe_server}/v1/sessions", headers=A).json()["data"]]
    assert set(mine) <= set(listed) and theirs not in listed
    ids, _ = turn(bpe_client, mine[1], "naïve café", 5)
    info = httpx.get(f"{bpe_server}/v1/sessions/{mine[1]}", headers=A, params={"include": "tokens"}).json()
    assert info["token_ids"] == bpe_tok.encode("naïve café") + ids and info["ttl_s"] == 1.5
    assert info["text"] == bpe_tok.decode(info["token_ids"])
    assert httpx.get(f"{bpe_server}/v1/sessions/{mine[1]}", headers=A, params={"include": "x"}).status_code == 400
    deadline = time.time() + 20
    while time.time() < deadline and httpx.get(f"{bpe_server}/v1/sessions/{mine[1]}", headers=A).status_code == 200:
        time.sleep(0.25)
    assert httpx.get(f"{bpe_server}/v1/sessions/{mine[1]}", headers=A).status_code == 404   # expired, freed
    assert httpx.get(f"{bpe_server}/v1/sessions/{mine[0]}", headers=A).status_code == 200   # default ttl: kept
    assert httpx.post(f"{bpe_server}/v1/sessions", headers=A, json={"ttl_s": -1}).status_code == 400
    for sid, h in ((mine[0], A), (theirs, B)):
        httpx.delete(f"{bpe_server}/v1/sessions/{sid}", headers=h)
