"""The HTTP ingress: a Ray Serve deployment with a FastAPI app, OpenAI-compatible.

Auth (Bearer key -> tenant), validation, tokenising (the model's tokenizer and chat template)
and the text of every choice happen here; every decision about owners, versions, quotas and
stops is the scheduler's or the worker's. Errors are OpenAI error JSON with the right status
(actors/http_errors.py). A scheduler that died is followed to its replacement; the turns a
replica streams are leased to it (renewed while it reads them), so a dead replica's turns end.
"""

import asyncio
import hmac
import json
import logging
import os
import random
import time

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.responses import PlainTextResponse, StreamingResponse
from ray import serve
from ray.exceptions import RayActorError

from actors.choices import Choice, GenerationFailed, make_choice, merged
from actors.feed import TokenFeed
from actors.http_errors import HTTPError, install, map_scheduler_error, named, request_id
from rwttt_ray.api import render
from rwttt_ray.api.keys import load_keys
from rwttt_ray.api.params import (BadRequest, Prompt, chat_prompt, completion_prompts, logprobs_asked,
                                  max_new_tokens, sampling_fields)
from rwttt_ray.api.protocol import ChatRequest, CompletionRequest, RollbackRequest, SessionCreate, error_body
from rwttt_ray.api.served import served_model
from rwttt_ray.config import RwtttConfig

REATTACH_S = 30.0      # how long a call waits for a replaced scheduler
METRICS_KEY_ENV = "RWTTT_METRICS_KEY"
LEASE_S = 6.0          # a turn whose replica stops renewing its lease this long is cancelled
logger = logging.getLogger("ray.serve")
app = FastAPI(title="rwttt-ray", version="0.1.0", openapi_url=None)   # /openapi.json: Ingress.openapi
install(app)                     # errors in the OpenAI shape, bodies capped (actors/http_errors.py)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64})
@serve.ingress(app)
class Ingress:
    def __init__(self, *, config: RwtttConfig | dict | None = None, api_keys=None,
                 served_model_name: str | list[str] | None = None, service_name: str = "rwttt-service",
                 metrics_key: str | None = None) -> None:
        from actors.service import get_manager

        config = config if isinstance(config, RwtttConfig) else RwtttConfig.from_dict(config)
        config.check_environment()
        self.keys = load_keys(api_keys)
        if self.keys.limits:             # the API keys' tenants and quotas join the config's
            config = config.replace(tenant_limits={**config.service.tenant_limits, **self.keys.limits})
        self.config = config
        self.metrics_key = metrics_key or os.environ.get(METRICS_KEY_ENV) or None
        self.model = served_model(config.model, served_model_name)
        seed = config.model.seed
        self.seeds = random.Random(seed) if seed is not None else random.SystemRandom()
        manager = get_manager(service_name, config)
        import ray

        self.manager = manager
        self.scheduler = ray.get(manager.scheduler.remote())
        self.feed = TokenFeed(lambda wants, timeout_s: self._scheduler("next_tokens_many", wants, timeout_s))
        self.reading: dict[str, int] = {}      # owners this replica streams -> readers (their leases)
        self._renewer: asyncio.Task | None = None

    # -- plumbing -------------------------------------------------------------------------
    def _tenant(self, request: HTTPRequest) -> str:
        tenant = self.keys.tenant_of(request.headers.get("authorization"))
        if tenant is None:
            raise HTTPError(401, "missing or invalid API key (Authorization: Bearer <key>)", "authentication_error")
        return tenant

    async def _call(self, method: str, *args, **kw):
        try:
            return await self._scheduler(method, *args, **kw)
        except Exception as exc:
            raise map_scheduler_error(exc) from None

    async def _scheduler(self, method: str, *args, **kw):
        """Call the scheduler; if it died, ask the service manager for its replacement (which
        rebuilds from Redis) for up to REATTACH_S, and call that one: the client sees a pause."""
        deadline = time.monotonic() + REATTACH_S
        while True:
            handle = self.scheduler
            try:
                return await getattr(handle, method).remote(*args, **kw)
            except RayActorError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
                new = await self.manager.scheduler.remote()
                if new._actor_id != handle._actor_id:
                    logger.info("rwttt-ray: the ingress follows the new scheduler")
                    self.scheduler = new

    def _hold(self, choices: list[Choice], held: bool) -> None:
        """Count this replica's readers of each owner; their leases are renewed while any reads."""
        for c in choices:
            self.reading[c.owner_id] = self.reading.get(c.owner_id, 0) + (1 if held else -1)
            if self.reading[c.owner_id] <= 0:
                del self.reading[c.owner_id]
        if held and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        """Renew the leases of the turns this replica reads, every LEASE_S / 3 (one call)."""
        while self.reading:
            try:
                await self._scheduler("renew", list(self.reading), LEASE_S)
            except Exception:
                logger.warning("rwttt-ray: lease renewal failed", exc_info=True)
            await asyncio.sleep(LEASE_S / 3)

    def _check_model(self, model: str) -> None:
        if model not in self.model.names:
            raise HTTPError(404, f"model {model!r} does not exist; this server serves {self.model.name!r}",
                            "not_found_error", code="model_not_found", param="model")

    # -- OpenAI endpoints ---------------------------------------------------------------------
    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(self):
        """The OpenAPI schema, whose `model` is one of the served names (clients and fuzzers see them)."""
        schema = self.app.openapi()          # the replica's own copy of the FastAPI app
        for shape in ("CompletionRequest", "ChatRequest"):
            schema["components"]["schemas"][shape]["properties"]["model"] = {
                "title": "Model", "type": "string", "enum": list(self.model.names)}
        return schema

    @app.get("/health")
    async def health(self):
        """Readiness: 200 only if the scheduler answers, the directory is reachable and a worker is live."""
        state = await self._call("health")
        if state["status"] != "ok":
            why = f": {state['reason']}" if state.get("reason") else ""
            raise HTTPError(503, f"the service is {state['status']}{why}", "service_unavailable")
        return state

    @app.get("/ping")
    async def ping(self):
        """Liveness: this ingress replica answers (whatever the cluster behind it)."""
        return {"status": "alive"}

    @app.get("/metrics")
    async def metrics(self, request: HTTPRequest):
        """Prometheus text, per tenant too: an operator's, behind the metrics key (a tenant's API
        key does not open it); an open server (no API keys) without a metrics key shows it to all."""
        self._operator(request.headers.get("authorization") or "")
        return PlainTextResponse(await self._call("metrics"), media_type="text/plain; version=0.0.4")

    def _operator(self, authorization: str) -> None:
        if self.metrics_key is None:
            if not self.keys.open:
                raise HTTPError(403, f"/metrics needs the operator's metrics key (--metrics-key or {METRICS_KEY_ENV})",
                                "permission_error")
            return
        if not hmac.compare_digest(authorization.encode(), f"Bearer {self.metrics_key}".encode()):
            if self.keys.tenant_of(authorization) is not None and not self.keys.open:
                raise HTTPError(403, "an API key does not open /metrics: use the metrics key", "permission_error")
            raise HTTPError(401, "missing or invalid metrics key (Authorization: Bearer <key>)", "authentication_error")

    @app.get("/v1/models")
    async def models(self, request: HTTPRequest):
        self._tenant(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "rwttt-ray",
                                            "root": self.model.name, "max_model_len": self.model.max_len}
                                           for name in self.model.names]}

    @app.post("/v1/completions")
    async def completions(self, body: CompletionRequest, request: HTTPRequest):
        tenant = self._tenant(request)
        self._check_model(body.model)
        prompts = self._prompts(lambda: completion_prompts(body, self.model))
        return await self._generate(tenant, body, prompts, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(self, body: ChatRequest, request: HTTPRequest):
        tenant = self._tenant(request)
        self._check_model(body.model)
        prompts = self._prompts(lambda: [chat_prompt(body, self.model)])
        return await self._generate(tenant, body, prompts, request, chat=True)

    @staticmethod
    def _prompts(make) -> list[Prompt]:
        try:
            return make()
        except BadRequest as exc:
            raise HTTPError(exc.status, str(exc), code=exc.code, param=exc.param) from None

    async def _generate(self, tenant: str, body, prompts: list[Prompt], request: HTTPRequest, chat: bool):
        session_id = body.session_id or request.headers.get("x-session-id")
        if session_id is not None and len(prompts) * body.n > 1:
            raise HTTPError(400, "a session takes one prompt and n=1 per turn", param="n")
        if len(prompts) * body.n > 64:
            raise HTTPError(400, f"{len(prompts) * body.n} choices (prompts x n); at most 64", param="n")
        try:
            fields = sampling_fields(body, self.model, logprobs_asked(body))
            lengths = [max_new_tokens(body, self.model, len(p.ids), session_id is not None) for p in prompts]
        except BadRequest as exc:
            raise HTTPError(exc.status, str(exc), code=exc.code, param=exc.param) from None
        base_id = request_id(request)
        logger.debug("request %s: tenant=%s user=%s choices=%d", base_id, tenant, body.user, len(prompts) * body.n)
        choices = await self._start(tenant, session_id, body, prompts, lengths, dict(fields, request_id=base_id), chat)
        rid = render.new_id(chat, base_id)
        if body.stream:
            return StreamingResponse(self._sse(tenant, session_id, rid, body, choices, chat),
                                     media_type="text/event-stream")
        self._hold(choices, True)
        try:
            async for _ in merged(choices, self._news(tenant), self._cancel(tenant)):
                pass
        except GenerationFailed as exc:
            logger.warning("request %s: generation failed: %s", base_id, exc)
            raise HTTPError(503, f"generation failed: {exc}", "service_unavailable") from None
        finally:
            self._hold(choices, False)
        out = [self._choice(c, body, chat) for c in choices]
        use = render.usage(sum(len(p.ids) for p in prompts), sum(len(c.ids) for c in choices))
        return render.body(rid, chat, self.model.name, out, use, await self._session_view(tenant, session_id))

    async def _start(self, tenant, session_id, body, prompts, lengths, fields, chat) -> list[Choice]:
        choices: list[Choice] = []
        try:
            for i, (prompt, length) in enumerate(zip(prompts, lengths)):
                for j in range(body.n):
                    index = i * body.n + j
                    seed = body.seed + index if body.seed is not None else self.seeds.getrandbits(32)
                    started = await self._call("complete", tenant, session_id, list(prompt.ids), length, seed=seed,
                                               expected_version=body.expected_version, lease_s=LEASE_S, **fields)
                    choices.append(make_choice(index, started, prompt, self.model.codec, fields["stop"],
                                               fields["skip_special_tokens"], not chat and body.echo))
        except HTTPError:
            for c in choices:
                await self._cancel(tenant)(c.owner_id)
            raise
        return choices

    def _news(self, tenant: str):
        async def news(owner_id: str, cursor: int) -> dict:
            try:
                return await self.feed.next(tenant, owner_id, cursor)
            except Exception as exc:
                raise map_scheduler_error(exc) from None
        return news

    def _cancel(self, tenant: str):
        return lambda owner_id: self._scheduler("cancel", tenant, owner_id)

    def _logprobs(self, c: Choice, ids: list[int], entries: list, chat: bool, offset: int) -> dict | None:
        if not entries:
            return None
        if chat:
            return render.chat_logprobs(self.model.codec, ids, entries)
        return render.completion_logprobs(self.model.codec, ids, entries, offset)

    def _choice(self, c: Choice, body, chat: bool) -> dict:
        return render.choice(chat, c.index, c.echo + c.text, c.finish_reason, c.stop_reason,
                             self._logprobs(c, c.ids, c.logprobs, chat, len(c.echo)),
                             c.ids if body.return_token_ids else None)

    async def _sse(self, tenant, session_id, rid, body, choices: list[Choice], chat: bool):
        """Server-sent events: content chunks, the usage chunk (OpenAI: only when
        stream_options.include_usage), then [DONE]; an error mid-stream is one error event."""
        first = {c.index: True for c in choices}
        sent = {c.index: len(c.echo) for c in choices}

        def chunk(choice) -> str:   # one choice of the chunk body
            return f"data: {json.dumps(render.body(rid, chat, self.model.name, [choice], chunk=True))}\n\n"
        self._hold(choices, True)
        try:
            for c in choices:
                if c.echo:
                    yield chunk(render.choice(chat, c.index, c.echo, None, chunk=True))
            async for c, d in merged(choices, self._news(tenant), self._cancel(tenant)):
                if d.text or d.finish_reason or first[c.index] or (body.return_token_ids and d.ids):
                    lp = self._logprobs(c, d.ids, d.logprobs, chat, sent[c.index])
                    yield chunk(render.choice(chat, c.index, d.text, d.finish_reason, d.stop_reason, lp,
                                              d.ids if body.return_token_ids else None, chunk=True,
                                              first=first[c.index]))
                    first[c.index] = False
                    sent[c.index] += len(d.text)
            if (body.stream_options or {}).get("include_usage"):
                use = render.usage(sum(len(c.prompt.ids) for c in choices[::body.n]), sum(len(c.ids) for c in choices))
                tail = render.body(rid, chat, self.model.name, [], use, await self._session_view(tenant, session_id),
                                   chunk=True)
                yield f"data: {json.dumps(tail)}\n\n"
        except GenerationFailed as exc:
            logger.warning("request %s: generation failed mid-stream: %s", rid, exc)
            yield f"data: {json.dumps(named(error_body(f'generation failed: {exc}', 'service_unavailable'), rid))}\n\n"
        except HTTPError as exc:
            yield f"data: {json.dumps(named(error_body(str(exc), exc.type, exc.code), rid))}\n\n"
        finally:
            self._hold(choices, False)
        yield "data: [DONE]\n\n"

    async def _session_view(self, tenant: str, session_id: str | None) -> dict | None:
        return None if session_id is None else await self._call("session_info", tenant, session_id)

    # -- sessions -----------------------------------------------------------------------------
    @app.post("/v1/sessions")
    async def create_session(self, request: HTTPRequest, body: SessionCreate | None = None):
        tenant = self._tenant(request)
        ttl = body.ttl_s if body is not None else None
        return await self._call("session_info", tenant, await self._call("open_session", tenant, ttl))

    @app.get("/v1/sessions")
    async def list_sessions(self, request: HTTPRequest):
        return {"object": "list", "data": await self._call("list_sessions", self._tenant(request))}

    @app.get("/v1/sessions/{session_id}")
    async def get_session(self, session_id: str, request: HTTPRequest, include: str | None = None):
        if include not in (None, "tokens"):
            raise HTTPError(400, f"include={include!r}: only 'tokens' is supported", param="include")
        info = await self._call("session_info", self._tenant(request), session_id, include == "tokens")
        if include == "tokens":
            info["text"] = self.model.codec.decode(info["token_ids"])
        return info

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
