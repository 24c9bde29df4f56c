"""ASGI composition root: one FastAPI app with signaling, ingest and review routers.

Resources (DB engine, object store, Redis, Dramatiq broker, rate limiter) are built
once from `Settings` and hung on `app.state`; routers reach them through
dependencies, never through globals.
"""
from __future__ import annotations

import gc
from contextlib import asynccontextmanager
from typing import AsyncIterator

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

import ingest
import review_api
import signaling
from core import db, errors
from core.auth import TokenVerifier
from core.http import SecurityHeaders, install_error_handlers
from core.limits import BodyLimit, RouteLimit
from core.logging import configure_logging, get_logger
from core.queue import make_broker
from core.ratelimit import RateLimiter
from core.revocation import DenyList
from core.settings import Settings
from core.storage import ObjectStore
from core.tasks import run_bounded

log = get_logger("recorder.api")
# Chunk uploads stream up to max_chunk_bytes into the spool; every other body is small JSON.
CHUNK_ROUTES = r"^/v1/recordings/[^/]+/tracks/[^/]+/chunks/[^/]+(/beacon)?/?$"
SHUTDOWN_HOOK_S = 15.0  # per shutdown hook (signaling drain ≤ 2 s, sweepers): past it, log and go on


def create_app(settings: Settings, *, init_schema: bool = True) -> FastAPI:
    """Build the API app for these settings (used by `recorder api` and the tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if init_schema:
            if settings.db_auto_migrate:
                revision = await run_in_threadpool(db.migrate, app.state.engine)
                log.info("schema_ready", revision=revision)
            try:
                await run_in_threadpool(app.state.store.ensure_bucket)
            except errors.StorageError as exc:
                log.warning("bucket_not_ready", error=exc.message)
        for start in app.state.on_startup:
            await start(app)
        # Long-lived start-up objects never die: keep them out of the cyclic GC, whose
        # gen-2 passes otherwise stall the event loop (and signaling relay) for 100s of ms.
        gc.freeze()
        yield
        for stop in app.state.on_shutdown:
            # A shutdown never hangs on a dependency: past its bound a hook is logged with
            # its stack, cancelled and left behind (not awaited: it may ignore the cancel).
            await run_bounded(stop(app), SHUTDOWN_HOOK_S, what=f"shutdown:{getattr(stop, '__qualname__', stop)}")
        app.state.redis.close()
        app.state.engine.dispose()

    app = FastAPI(title="interview-recorder", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = db.make_engine(settings.database_url)
    app.state.store = ObjectStore.from_settings(settings)
    app.state.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    app.state.broker = make_broker(settings.redis_url)
    app.state.limiter = RateLimiter(app.state.redis)
    app.state.token_verifier = TokenVerifier.from_settings(settings, DenyList(app.state.redis))
    app.state.on_startup = []
    app.state.on_shutdown = []
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       routes=[RouteLimit(CHUNK_ROUTES, settings.max_chunk_bytes, "chunk_too_large")])
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Retry-After"], max_age=600)
    app.add_middleware(SecurityHeaders, hsts=settings.public_url.startswith("https://"))
    app.include_router(_health_router())
    for package in (signaling, ingest, review_api):
        package.install(app)
    return app


def _health_router():
    from fastapi import APIRouter

    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        """DB, Redis and S3 reachable; 503 naming the failing dependency otherwise."""
        state = request.app.state
        checks = {"database": lambda: db.ping(state.engine), "redis": state.redis.ping,
                  "s3": state.store.ping}
        failed = []
        for name, check in checks.items():
            try:
                check()
            except Exception as exc:  # noqa: BLE001 -- whatever broke, it is not ready; details go to the log
                log.warning("not_ready", dependency=name, error=getattr(exc, "message", None) or repr(exc))
                failed.append(name)
        if failed:
            names = ", ".join(failed)
            return JSONResponse({"code": "dependency_down", "message": f"not ready: {names} unreachable",
                                 "failed": failed}, status_code=503, headers={"Retry-After": "5"})
        return JSONResponse({"status": "ready", "checks": {name: "ok" for name in checks}})

    @router.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def app_from_env() -> FastAPI:
    """Uvicorn factory: `uvicorn --factory recorder.app:app_from_env`."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
