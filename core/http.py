"""HTTP boundary shared by every router: status codes per error class, auth dependency.

Status codes live here and only here; handlers are registered on base classes, so a
new subclass of e.g. `NotFound` answers 404 without touching this module.
"""
from __future__ import annotations

from typing import Annotated, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors
from core.auth import Principal, verify_token
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
    return JSONResponse(exc.to_dict(), status_code=status_for(exc), headers=headers)


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

    app.add_exception_handler(errors.RecorderError, on_recorder_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = request.query_params.get("token") or request.query_params.get("access_token")
    if token:
        return token
    raise errors.Unauthorized("missing bearer token", code="missing_token")


def principal_dependency(secret_of: Callable[[Request], tuple[str, str]]) -> Callable[[Request], Principal]:
    """Build a dependency that verifies the caller's JWT with the app's secret + issuer."""

    def _principal(request: Request) -> Principal:
        secret, issuer = secret_of(request)
        return verify_token(secret, bearer_token(request), issuer=issuer)

    return _principal


def _app_secret(request: Request) -> tuple[str, str]:
    s = request.app.state.settings
    return s.jwt_secret, s.jwt_issuer


current_principal = principal_dependency(_app_secret)
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
