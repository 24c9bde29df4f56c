"""HTTP boundary shared by every router: status codes per error class, auth dependency.

Status codes live here and only here; handlers are registered on base classes, so a
new subclass of e.g. `NotFound` answers 404 without touching this module.
"""
from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import errors
from core.auth import Principal, TokenVerifier
from core.logging import get_logger

STATUS: dict[type[errors.RecorderError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.UnsupportedMedia: 415,
    errors.InvalidMedia: 422,
    errors.InvalidState: 422,
    errors.RateLimited: 429,
    errors.DependencyDown: 503,
}

log = get_logger("recorder.http")


def status_for(exc: errors.RecorderError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(exc: errors.RecorderError) -> JSONResponse:
    headers = {}
    if isinstance(exc, (errors.RateLimited, errors.DependencyDown)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    body = exc.to_dict()
    if isinstance(exc, errors.DependencyDown):  # driver text (hosts, keys, SQL) stays in the logs
        body = {"code": exc.code, "message": (type(exc).__doc__ or "a service is unavailable").strip()}
    return JSONResponse(body, status_code=status_for(exc), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON `{code, message}` with the right status."""

    async def on_recorder_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.RecorderError)
        if isinstance(exc, errors.DependencyDown):
            log.warning("dependency_down", code=exc.code, error=exc.message)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"code": "bad_request", "message": detail}, status_code=400)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request.scope, exc)

    app.add_exception_handler(errors.RecorderError, on_recorder_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)  # errors of the outer middleware
    app.add_middleware(InternalErrors)  # errors of the routes (inside every other middleware)
    document_errors(app)


class ErrorBody(BaseModel):
    """What every error answer looks like."""

    code: str = Field(description="machine-readable, e.g. invalid_x_chunk_start")
    message: str = Field(description="for humans; never library or driver text")
    details: dict[str, Any] | None = None
    request_id: str | None = Field(None, description="on 500s: quote it to find the logged traceback")


def document_errors(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the boundary does: bad input is 400 `ErrorBody`
    (not FastAPI's 422 `HTTPValidationError`), and every 4xx/5xx answer is an `ErrorBody`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status, what in (("400", "bad input"), ("4XX", "refused"), ("5XX", "server or dependency")):
                    responses.setdefault(status, {"description": what, **body})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def internal_error(scope: Scope, exc: Exception) -> JSONResponse:
    """500 `{code, message, request_id}`; the traceback goes to the log, never to the client."""
    given = Headers(scope=scope).get("x-request-id", "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    log.error("unhandled_error", request_id=request_id, method=scope.get("method"), path=scope.get("path"),
              exc_info=exc)
    return JSONResponse({"code": "internal_error", "message": "internal error", "request_id": request_id},
                        status_code=500, headers={**SECURITY_HEADERS, "X-Request-ID": request_id})


class InternalErrors:
    """Pure ASGI middleware: a route's unexpected exception becomes `internal_error` (500).

    Unlike Starlette's outermost handler it does not re-raise, so the server keeps the
    connection (re-raised, uvicorn drops it, and with it often the 500 the client was sent).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:
                raise
            await internal_error(scope, exc)(scope, receive, send)


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY"}
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeaders:
    """Pure ASGI middleware: browser hardening headers on every HTTP response.

    A header a route set itself (e.g. the pages' stricter policies) is kept. HSTS goes on
    https requests, or on all when the public URL is https (TLS ends at a proxy).
    """

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app, self.hsts = app, hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = dict(SECURITY_HEADERS)
        if self.hsts or scope.get("scheme") == "https":
            extra["Strict-Transport-Security"] = HSTS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


QUERY_TOKEN_PARAMS = ("token", "access_token")


def request_token(conn: HTTPConnection, *, allow_query: bool = False) -> tuple[str, bool]:
    """The caller's token and whether it came from the query string.

    Tokens belong in `Authorization: Bearer …`. Only routes that a browser cannot give a
    header (media elements, `sendBeacon`, WebSocket) read `?token=`, and then only for
    short-lived narrow scopes (see `QueryTokenPrincipal`).
    """
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip(), False
    in_query = next((conn.query_params[k] for k in QUERY_TOKEN_PARAMS if conn.query_params.get(k)), "")
    if in_query and allow_query:
        return in_query, True
    if in_query:
        raise errors.Unauthorized("send the token in the Authorization header, not in the URL",
                                  code="token_in_query")
    raise errors.Unauthorized("missing bearer token", code="missing_token")


def bearer_token(request: HTTPConnection) -> str:
    """The token of the `Authorization: Bearer` header (never the query string)."""
    return request_token(request)[0]


def token_verifier(conn: HTTPConnection) -> TokenVerifier:
    return conn.app.state.token_verifier


def authenticate(conn: HTTPConnection, query_scopes: frozenset[str] = frozenset()) -> Principal:
    """Verify the caller's token (signature, claims, deny-list); a query-string token must
    have one of `query_scopes`."""
    token, in_query = request_token(conn, allow_query=bool(query_scopes))
    principal = token_verifier(conn).verify(token)
    if in_query and principal.scope not in query_scopes:
        raise errors.Unauthorized(f"a {principal.scope!r} token must be sent in the Authorization header",
                                  code="token_in_query")
    return principal


def current_principal(request: Request) -> Principal:
    """Dependency: the caller of the request's `Authorization: Bearer` token."""
    return authenticate(request)


class QueryTokenPrincipal:
    """Dependency for the few routes a browser calls without headers: the header token, or a
    `?token=` whose scope is one of `scopes` (e.g. "playback", "upload")."""

    def __init__(self, *scopes: str) -> None:
        self.scopes = frozenset(scopes)

    def __call__(self, request: Request) -> Principal:
        return authenticate(request, self.scopes)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
