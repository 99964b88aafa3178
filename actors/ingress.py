"""The HTTP ingress: a Ray Serve deployment with a FastAPI app, OpenAI-compatible.

Auth (Bearer key -> tenant), validation, tokenising and streaming happen here; every decision
about owners, versions and quotas is the scheduler's. Errors are OpenAI error JSON with the
right status; nothing here can raise a 500 for bad input.
"""

import asyncio
import codecs
import json
import logging

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from ray import serve

from actors.feed import TokenFeed
from rwttt_ray.api.keys import load_keys
from rwttt_ray.api.protocol import (ChatRequest, CompletionRequest, RollbackRequest, chat_prompt, completion_body,
                                    error_body, new_id, usage)
from rwttt_ray.config import RwtttConfig
from rwttt_ray.core.tenancy import QuotaError, TenancyError, VersionConflictError
from rwttt_ray.ttt.model import load_tokenizer_info
from rwttt_ray.ttt.tokenizer import ByteTokenizer

MAX_BODY_BYTES = 1 << 20
logger = logging.getLogger("ray.serve")
app = FastAPI(title="rwttt-ray", version="0.1.0")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code=None, headers=None):
        super().__init__(message)
        self.status, self.type, self.code, self.headers = status, type_, code, headers or {}


def _error(status: int, message: str, type_: str, code=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, code), status_code=status, headers=headers)


@app.exception_handler(HTTPError)
async def _http_error(_, exc: HTTPError):
    return _error(exc.status, str(exc), exc.type, exc.code, exc.headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(_, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
    return _error(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", "invalid_request_error")


@app.exception_handler(Exception)
async def _unexpected(_, exc: Exception):   # last resort: never a traceback to the client
    logger.exception("unexpected error in the ingress")
    return _error(500, f"internal error: {type(exc).__name__}", "internal_error")


@app.middleware("http")
async def _limit_body(request: HTTPRequest, call_next):
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return _error(413, f"request body over {MAX_BODY_BYTES} bytes", "invalid_request_error")
    return await call_next(request)


def _map_scheduler_error(exc: Exception) -> HTTPError:
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, QuotaError) or isinstance(exc, QuotaError):
        return HTTPError(429, str(cause), "rate_limit_error", headers={"Retry-After": str(getattr(cause, "retry_after_s", 1))})
    if isinstance(cause, VersionConflictError) or isinstance(exc, VersionConflictError):
        return HTTPError(409, str(cause), "conflict_error", code=getattr(cause, "current_version", None))
    if isinstance(cause, TenancyError) or isinstance(exc, TenancyError):
        status = getattr(cause, "status", 400)
        kind = {404: "not_found_error", 409: "conflict_error", 503: "service_unavailable"}.get(status,
                                                                                             "invalid_request_error")
        return HTTPError(status, str(cause), kind)
    if isinstance(cause, ValueError):
        return HTTPError(400, str(cause).splitlines()[0], "invalid_request_error")
    return HTTPError(503, f"the cluster could not serve the request: {type(cause).__name__}", "service_unavailable")


def _is_bytes(tokenizer) -> bool:
    return isinstance(tokenizer, ByteTokenizer)


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64})
@serve.ingress(app)
class Ingress:
    def __init__(self, args: dict) -> None:
        from actors.service import get_manager

        self.config = RwtttConfig(**args.get("config", {}))
        self.keys = load_keys(args.get("api_keys"))
        self.tokenizer, self.max_seq_len, self.model_name = load_tokenizer_info(self.config.model)
        self.model_name = args.get("served_model_name", self.model_name)
        manager = get_manager(args.get("service_name", "rwttt-service"), self.config, int(args.get("num_workers", 1)),
                              args.get("redis_url"), self.keys.limits, int(args.get("rounds_per_call", 64)))
        import ray

        self.scheduler = ray.get(manager.scheduler.remote())
        self.feed = TokenFeed(lambda wants, timeout_s: self.scheduler.next_tokens_many.remote(wants, timeout_s))

    # -- plumbing -------------------------------------------------------------------------
    def _tenant(self, request: HTTPRequest) -> str:
        tenant = self.keys.tenant_of(request.headers.get("authorization"))
        if tenant is None:
            raise HTTPError(401, "missing or invalid API key (Authorization: Bearer <key>)", "authentication_error")
        return tenant

    async def _call(self, method: str, *args, **kw):
        try:
            return await getattr(self.scheduler, method).remote(*args, **kw)
        except Exception as exc:
            raise _map_scheduler_error(exc) from None

    async def _next_tokens(self, tenant: str, owner: str, cursor: int) -> dict:
        try:
            return await self.feed.next(tenant, owner, cursor)
        except Exception as exc:
            raise _map_scheduler_error(exc) from None

    def _check_model(self, model: str) -> None:
        if model != self.model_name:
            raise HTTPError(404, f"model {model!r} does not exist; this server serves {self.model_name!r}",
                            "not_found_error", code="model_not_found")

    # -- OpenAI endpoints ---------------------------------------------------------------------
    @app.get("/health")
    async def health(self):
        state = await self._call("health")
        if state["status"] != "ok":
            raise HTTPError(503, f"the service is {state['status']}", "service_unavailable")
        return state

    @app.get("/metrics")
    async def metrics(self):
        return PlainTextResponse(await self._call("metrics"), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(self, request: HTTPRequest):
        self._tenant(request)
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0,
                                            "owned_by": "rwttt-ray", "max_model_len": self.max_seq_len}]}

    @app.post("/v1/completions")
    async def completions(self, body: CompletionRequest, request: HTTPRequest):
        prompt = body.prompt if isinstance(body.prompt, str) else "".join(body.prompt)
        return await self._generate(body, prompt, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(self, body: ChatRequest, request: HTTPRequest):
        return await self._generate(body, chat_prompt(body.messages), request, chat=True)

    async def _generate(self, body, prompt: str, request: HTTPRequest, chat: bool):
        tenant = self._tenant(request)
        self._check_model(body.model)
        session_id = body.session_id or request.headers.get("x-session-id")
        ids = self.tokenizer.encode(prompt)
        if not ids:
            raise HTTPError(400, "prompt is empty", "invalid_request_error", param="prompt")
        if len(ids) + body.max_tokens > self.max_seq_len:
            raise HTTPError(413, f"prompt ({len(ids)} tokens) + max_tokens ({body.max_tokens}) exceeds the context "
                                 f"limit {self.max_seq_len}", "invalid_request_error", code="context_length_exceeded")
        seed = body.seed if body.seed is not None else int.from_bytes(__import__("os").urandom(4), "little")
        owner = await self._call("complete", tenant, session_id, ids, body.max_tokens, temperature=body.temperature,
                                 top_p=body.top_p, seed=seed, expected_version=body.expected_version)
        rid, stops = new_id(chat), body.stops()
        if body.stream:
            ids_too = bool(getattr(body, "return_token_ids", False))
            usage_too = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(self._sse(tenant, owner, session_id, rid, chat, stops, len(ids), ids_too,
                                               usage_too),
                                     media_type="text/event-stream")
        text, reason, res, token_ids = "", None, None, []
        async for piece, reason, res in self._pieces(tenant, owner, session_id, stops):
            text += piece
            token_ids += res["ids"]
        session = await self._session_view(tenant, session_id)
        out = completion_body(self.model_name, text, reason, usage(len(ids), res["n"]), chat, rid, session)
        if getattr(body, "return_token_ids", False):
            out["choices"][0]["token_ids"] = token_ids
        return out

    async def _pieces(self, tenant: str, owner: str, session_id: str | None, stops: list[str]):
        """(text, finish_reason, info) as tokens arrive; stops on a stop string (and cancels)."""
        decoder, cursor, text, done, ended = codecs.getincrementaldecoder("utf-8")("replace"), 0, "", False, False
        try:
            while not done:
                res = await self._next_tokens(tenant, owner, cursor)
                cursor += len(res["tokens"])
                done = res["finished"]
                piece = decoder.decode(bytes(t - 3 for t in res["tokens"] if 3 <= t < 259), final=done) \
                    if _is_bytes(self.tokenizer) else self.tokenizer.decode(res["tokens"])
                hit = _first_stop(text + piece, stops)
                if hit is not None:
                    ended = True
                    await self._call("cancel", tenant, owner)
                    yield (text + piece)[len(text):hit], "stop", {"n": cursor, "ids": res["tokens"]}
                    return
                text += piece
                if res.get("error") and res["error"] != "cancelled":
                    raise HTTPError(503, f"generation failed: {res['error']}", "service_unavailable")
                ended = done
                yield piece, (res["finish_reason"] if done else None), {"n": cursor, "ids": res["tokens"]}
        finally:
            if not ended:   # the client went away mid-stream
                try:
                    await asyncio.shield(self.scheduler.cancel.remote(tenant, owner))
                except Exception:
                    pass

    async def _sse(self, tenant, owner, session_id, rid, chat, stops, prompt_tokens, ids_too=False,
                   usage_too=False):
        """Server-sent events: content chunks, the usage chunk (OpenAI: only when
        stream_options.include_usage), then [DONE]; an error mid-stream is one error event."""
        first = True
        try:
            async for piece, reason, res in self._pieces(tenant, owner, session_id, stops):
                if piece or reason or first or (ids_too and res["ids"]):   # NOTE: bytes of a split
                    # UTF-8 character decode to "" until it completes; their ids still go out now
                    body = completion_body(self.model_name, piece, reason, None, chat, rid, chunk=True, first=first)
                    if ids_too:
                        body["choices"][0]["token_ids"] = res["ids"]
                    first = False
                    yield f"data: {json.dumps(body)}\n\n"
                if reason and usage_too:
                    session = await self._session_view(tenant, session_id)
                    tail = completion_body(self.model_name, "", None, usage(prompt_tokens, res["n"]), chat, rid,
                                           session, chunk=True)
                    tail["choices"] = []
                    yield f"data: {json.dumps(tail)}\n\n"
        except HTTPError as exc:
            yield f"data: {json.dumps(error_body(str(exc), exc.type, exc.code))}\n\n"
        yield "data: [DONE]\n\n"

    async def _session_view(self, tenant: str, session_id: str | None) -> dict | None:
        return None if session_id is None else await self._call("session_info", tenant, session_id)

    # -- sessions -----------------------------------------------------------------------------
    @app.post("/v1/sessions")
    async def create_session(self, request: HTTPRequest):
        tenant = self._tenant(request)
        return await self._call("session_info", tenant, await self._call("open_session", tenant))

    @app.get("/v1/sessions/{session_id}")
    async def get_session(self, session_id: str, request: HTTPRequest):
        return await self._call("session_info", self._tenant(request), session_id)

    @app.post("/v1/sessions/{session_id}/fork")
    async def fork_session(self, session_id: str, request: HTTPRequest):
        tenant = self._tenant(request)
        return await self._call("session_info", tenant, await self._call("fork_session", tenant, session_id))

    @app.post("/v1/sessions/{session_id}/rollback")
    async def rollback_session(self, session_id: str, body: RollbackRequest, request: HTTPRequest):
        return await self._call("rollback_session", self._tenant(request), session_id, body.version)

    @app.delete("/v1/sessions/{session_id}")
    async def delete_session(self, session_id: str, request: HTTPRequest):
        await self._call("delete_session", self._tenant(request), session_id)
        return {"id": session_id, "object": "session.deleted", "deleted": True}
