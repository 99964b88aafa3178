"""A session turn cut before its end (the client went away) leaves no trace: the session goes
back to its last kept state at once, so the next turn equals the one a session that never saw
the cut turn takes; a first turn cut leaves the session empty."""
import json

import httpx
import pytest

pytestmark = pytest.mark.ray
A = {"Authorization": "Bearer sk-alpha"}


def new_session(server) -> str:
    return httpx.post(f"{server}/v1/sessions", headers=A, timeout=30).json()["id"]


def turn(server, sid: str, prompt: str, n: int) -> list[int]:
    body = {"model": "rwttt-tiny", "prompt": prompt, "max_tokens": n, "temperature": 0, "session_id": sid,
            "return_token_ids": True, "ignore_eos": True}
    res = httpx.post(f"{server}/v1/completions", headers=A, json=body, timeout=120)
    assert res.status_code == 200, res.text
    return res.json()["choices"][0]["token_ids"]


def cut_turn(server, sid: str, prompt: str) -> None:
    """A long streamed turn, dropped after a few chunks."""
    body = {"model": "rwttt-tiny", "prompt": prompt, "max_tokens": 400, "temperature": 0, "session_id": sid,
            "stream": True, "ignore_eos": True}
    chunks = 0
    with httpx.stream("POST", f"{server}/v1/completions", headers=A, json=body, timeout=60) as res:
        for line in res.iter_lines():
            if line.startswith("data: {") and "choices" in json.loads(line[6:]):
                chunks += 1
            if chunks >= 3:
                break
    assert chunks >= 3


def info(server, sid: str) -> dict:
    return httpx.get(f"{server}/v1/sessions/{sid}", params={"include": "tokens"}, headers=A, timeout=30).json()


def settled(server, sid: str) -> dict:
    """The session once it no longer generates (a cut is done between two phases: soon)."""
    import time

    deadline = time.monotonic() + 20
    while (now := info(server, sid))["generating"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.1)
    return now


def test_a_cut_turn_rolls_back_to_the_last_kept_state(server):
    cut, clean = new_session(server), new_session(server)
    assert turn(server, cut, "the first turn ", 12) == turn(server, clean, "the first turn ", 12)
    before = info(server, cut)
    cut_turn(server, cut, "a turn the client drops ")
    after = settled(server, cut)
    assert (after["version"], after["token_ids"], after["kept_versions"]) == \
        (before["version"], before["token_ids"], before["kept_versions"])
    fork = httpx.post(f"{server}/v1/sessions/{cut}/fork", headers=A, timeout=30)
    assert fork.status_code == 200, fork.text          # not 409: the session is idle again
    assert turn(server, cut, " the next turn ", 10) == turn(server, clean, " the next turn ", 10)


def test_a_cut_first_turn_leaves_the_session_empty(server):
    sid = new_session(server)
    cut_turn(server, sid, "dropped at once ")
    after = settled(server, sid)
    assert (after["version"], after["token_ids"], after["kept_versions"]) == (0, [], [])
    fresh = new_session(server)
    assert turn(server, sid, "hello ", 8) == turn(server, fresh, "hello ", 8)
