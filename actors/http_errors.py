"""The ingress's errors: OpenAI error JSON with the right status for every failure, named by
the request's id; the body cap (also for chunked bodies); scheduler errors mapped to statuses.

`install(app)` registers the handlers and the cap on a FastAPI app: bad input is a 4xx, an
unknown route a 404 in the same shape, and the last-resort handler a 500 without a traceback.
"""
from __future__ import annotations

import logging
import uuid

from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.directory import DirectoryError
from rwttt_ray.api.protocol import error_body
from rwttt_ray.core.tenancy import QuotaError, TenancyError, VersionConflictError

MAX_BODY_BYTES = 1 << 20
logger = logging.getLogger("ray.serve")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code=None, headers=None,
                 param=None):
        super().__init__(message)
        self.status, self.type, self.code, self.headers, self.param = status, type_, code, headers or {}, param


def error_response(status: int, message: str, type_: str, code=None, headers=None, param=None,
                   request_id=None) -> JSONResponse:
    body = error_body(message, type_, code, param)
    return JSONResponse(named(body, request_id) if request_id else body, status_code=status, headers=headers)


def request_id(request: HTTPRequest) -> str:
    """The request's id: the client's x-request-id, else the one Serve (or its HAProxy) made;
    it names the response, the error bodies and every log line about the request."""
    return request.headers.get("x-request-id") or uuid.uuid4().hex


async def _http_error(request: HTTPRequest, exc: HTTPError):
    return error_response(exc.status, str(exc), exc.type, exc.code, exc.headers, exc.param, request_id(request))


async def _validation_error(request: HTTPRequest, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = "this field is not supported"
    return error_response(400, f"{where or 'body'}: {msg}", "invalid_request_error", param=where or None,
                  request_id=request_id(request))


async def _route_error(request: HTTPRequest, exc: StarletteHTTPException):
    what = {404: f"no route {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return error_response(exc.status_code, what.get(exc.status_code, str(exc.detail)), kind,
                          request_id=request_id(request))


async def _unexpected(request: HTTPRequest, exc: Exception):   # last resort: never a traceback to the client
    rid = request_id(request)
    logger.exception("request %s: unexpected error in the ingress", rid)
    return error_response(500, f"internal error: {type(exc).__name__}", "internal_error", request_id=rid)


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413), by their content-length or, when chunked,
    as the bytes arrive: reading past the limit raises, and the app answers in the error shape."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = StarletteHTTPException(413, f"request body over {self.limit} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            response = error_response(413, str(too_big.detail), "invalid_request_error")
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if seen > self.limit:
                raise too_big
            return message
        await self.app(scope, limited, send)


def named(body: dict, rid: str) -> dict:
    """An OpenAI error body that names the request it answers."""
    body["error"]["request_id"] = rid
    return body


def map_scheduler_error(exc: Exception) -> HTTPError:
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, QuotaError):
        return HTTPError(429, str(cause), "rate_limit_error", headers={"Retry-After": str(cause.retry_after_s)})
    if isinstance(cause, VersionConflictError):
        return HTTPError(409, str(cause), "conflict_error", code=cause.current_version)
    if isinstance(cause, TenancyError):
        kind = {404: "not_found_error", 409: "conflict_error", 503: "service_unavailable"}.get(
            cause.status, "invalid_request_error")
        code = "context_length_exceeded" if cause.status == 413 else None
        return HTTPError(cause.status, str(cause), kind, code=code)
    if isinstance(cause, ValueError):
        return HTTPError(400, str(cause).splitlines()[0], "invalid_request_error")
    if isinstance(cause, DirectoryError):        # Redis: its message names it (never the password)
        return HTTPError(503, f"the state directory failed: {str(cause).splitlines()[0]}", "service_unavailable")
    return HTTPError(503, f"the cluster could not serve the request: {type(cause).__name__}", "service_unavailable")


def install(app) -> None:
    app.add_exception_handler(HTTPError, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _route_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
