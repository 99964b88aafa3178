"""Bad input never returns 500: each gets the right status and an OpenAI error body; another
tenant's session is indistinguishable from a missing one; disconnects leak nothing."""
import json
import time

import httpx
import pytest

from tests.http.conftest import OPERATOR

pytestmark = pytest.mark.ray
A = {"Authorization": "Bearer sk-alpha"}
B = {"Authorization": "Bearer sk-beta"}
OK = {"model": "rwttt-tiny", "prompt": "hi", "max_tokens": 4, "temperature": 0}


def post(server, path, body=None, headers=A, raw=None):
    return httpx.post(f"{server}{path}", headers={**headers, "content-type": "application/json"},
                      content=raw if raw is not None else json.dumps(body), timeout=60)


def assert_error(res, status):
    assert res.status_code == status, (res.status_code, res.text)
    err = res.json()["error"]
    assert err["message"] and err["type"]


@pytest.mark.parametrize("body,status", [
    ({**OK, "max_tokens": -1}, 400), ({**OK, "max_tokens": "many"}, 400), ({**OK, "max_tokens": 10**9}, 400),
    ({**OK, "max_tokens": 5000}, 413), ({**OK, "prompt": "x" * 3000}, 413), ({**OK, "prompt": ""}, 400),
    ({**OK, "temperature": -2}, 400), ({**OK, "n": 65}, 400), ({"prompt": "hi"}, 400), ({**OK, "model": "gpt-9"}, 404),
    ({**OK, "prompt": 42}, 400), ({**OK, "session_id": "sess-nope"}, 404), ({**OK, "stop": 7}, 400),
])
def test_bad_completion_fields(server, body, status):
    assert_error(post(server, "/v1/completions", body), status)


def test_bad_json_oversized_and_no_key(server):
    assert_error(post(server, "/v1/completions", raw=b"{not json"), 400)
    assert_error(post(server, "/v1/completions", raw=b"[]"), 400)
    assert_error(post(server, "/v1/completions", raw=json.dumps({**OK, "prompt": "x" * (2 << 20)}).encode()), 413)
    assert_error(post(server, "/v1/completions", OK, headers={}), 401)
    assert_error(post(server, "/v1/completions", OK, headers={"Authorization": "Bearer sk-wrong"}), 401)
    assert_error(post(server, "/v1/chat/completions", {**OK, "messages": []}), 400)
    assert_error(post(server, "/v1/chat/completions", {"model": "rwttt-tiny", "messages": [{"role": "wizard"}]}), 400)


def test_another_tenants_session_is_not_found(server):
    sid = post(server, "/v1/sessions").json()["id"]
    assert post(server, "/v1/completions", {**OK, "session_id": sid}).status_code == 200
    for res in (httpx.get(f"{server}/v1/sessions/{sid}", headers=B),
                post(server, "/v1/completions", {**OK, "session_id": sid}, headers=B),
                post(server, f"/v1/sessions/{sid}/fork", headers=B),
                post(server, f"/v1/sessions/{sid}/rollback", {"version": 0}, headers=B),
                httpx.delete(f"{server}/v1/sessions/{sid}", headers=B),
                httpx.get(f"{server}/v1/sessions/sess-does-not-exist", headers=B)):
        assert_error(res, 404)
    assert "version" not in httpx.get(f"{server}/v1/sessions/{sid}", headers=B).text


def test_version_conflict_quota_and_rollback_errors(server):
    sid = post(server, "/v1/sessions").json()["id"]
    post(server, "/v1/completions", {**OK, "session_id": sid, "prompt": "x" * 20, "max_tokens": 8})
    version = httpx.get(f"{server}/v1/sessions/{sid}", headers=A).json()["version"]
    res = post(server, "/v1/completions", {**OK, "session_id": sid, "expected_version": version + 5})
    assert_error(res, 409)
    assert res.json()["error"]["code"] == version
    assert_error(post(server, f"/v1/sessions/{sid}/rollback", {"version": version + 7}), 404)
    assert_error(post(server, f"/v1/sessions/{sid}/rollback", {"version": "x"}), 400)
    tiny = {"Authorization": "Bearer sk-tiny"}
    assert post(server, "/v1/sessions", headers=tiny).status_code == 200
    over = post(server, "/v1/sessions", headers=tiny)
    assert_error(over, 429)
    assert int(over.headers["retry-after"]) >= 1
    assert httpx.delete(f"{server}/v1/sessions/{sid}", headers=A).json()["deleted"] is True
    assert_error(httpx.get(f"{server}/v1/sessions/{sid}", headers=A), 404)


def test_client_disconnect_mid_stream_leaks_nothing(server):
    body = {**OK, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{server}/v1/completions", headers=A, json=body, timeout=60) as res:
        for i, _ in enumerate(res.iter_lines()):
            if i > 2:
                break                                   # hang up mid-stream
    deadline = time.time() + 30
    while time.time() < deadline:
        metrics = httpx.get(f"{server}/metrics", headers=OPERATOR).text
        if "rwttt_active_owners 0" in metrics:
            break
        time.sleep(0.2)
    assert "rwttt_active_owners 0" in metrics


def test_health_and_metrics(server):
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "workers": 1, "directory": True}
    assert httpx.get(f"{server}/ping").json() == {"status": "alive"}
    assert post(server, "/v1/completions", OK).status_code == 200       # tenant alpha has traffic
    text = httpx.get(f"{server}/metrics", headers=OPERATOR).text
    for name in ("rwttt_tokens_total", "rwttt_commits_total", "rwttt_group_size_bucket", "rwttt_ttft_seconds_count",
                 "rwttt_token_latency_seconds_bucket", "rwttt_queue_depth", "rwttt_spills_total",
                 'rwttt_tenant_tokens_total{tenant="alpha"}', 'rwttt_tenant_tokens_last_minute{tenant="alpha"}'):
        assert name in text
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families))          # each family described once


def test_metrics_need_the_operator_key(server):
    assert_error(httpx.get(f"{server}/metrics"), 401)
    assert_error(httpx.get(f"{server}/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    res = httpx.get(f"{server}/metrics", headers=A)              # a tenant's key shows no one's traffic
    assert_error(res, 403)
    assert "alpha" not in res.text


def test_chunked_bodies_are_capped_too(server):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536                     # 2.5 MiB without a content-length
    res = httpx.post(f"{server}/v1/completions", headers={**A, "content-type": "application/json"},
                     content=chunks(), timeout=60)
    assert_error(res, 413)


def test_the_schema_names_the_served_models(server):
    schema = httpx.get(f"{server}/openapi.json").json()["components"]["schemas"]
    assert schema["CompletionRequest"]["properties"]["model"]["enum"] == ["rwttt-tiny"]
    assert schema["ChatRequest"]["properties"]["model"]["enum"] == ["rwttt-tiny"]


def test_a_token_budget_holds_while_generating(server):
    """tokens_per_minute 40: a request asking for 400 stops with "length" once the tenant has used
    its budget (at most one phase over: C = 8 here), and the next request is a 429."""
    meter = {"Authorization": "Bearer sk-meter"}
    out = post(server, "/v1/completions", {**OK, "max_tokens": 400, "ignore_eos": True}, headers=meter).json()
    used = out["usage"]["completion_tokens"]
    assert out["choices"][0]["finish_reason"] == "length" and 40 <= used <= 40 + 8 + 1
    assert_error(post(server, "/v1/completions", OK, headers=meter), 429)


def test_the_request_id_names_the_response_and_its_errors(server):
    rid = {"x-request-id": "req-7f3a-client"}
    bad = post(server, "/v1/completions", {**OK, "temperature": -2}, headers={**A, **rid})
    assert_error(bad, 400)
    assert bad.json()["error"]["request_id"] == "req-7f3a-client"
    assert bad.headers["x-request-id"] == "req-7f3a-client"
    good = post(server, "/v1/completions", OK, headers={**A, **rid})
    assert good.json()["id"] == "cmpl-req-7f3a-client" and good.headers["x-request-id"] == "req-7f3a-client"
    made = post(server, "/v1/completions", OK)              # none given: Serve's own id names it
    assert made.json()["id"] == "cmpl-" + made.headers["x-request-id"]
