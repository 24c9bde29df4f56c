"""signaling: rooms, join tokens, leases and the WebSocket relay (see ARCHITECTURE.md).

`install(app)` mounts `/v1/rooms…` and `/v1/signal` and registers start/stop hooks that
build the per-process relay (Redis pub/sub) and the orphan closer. The wire protocol
lives in `signaling.protocol` (pure pydantic; the bot imports it, and importing it
does not pull FastAPI or Redis in).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Mount this package's routers (and startup hooks) on the API app."""
    from signaling.routes import router
    from signaling.runtime import Signaling

    app.include_router(router)

    async def start(app: FastAPI) -> None:
        app.state.signaling = Signaling(app)
        await app.state.signaling.start()

    async def stop(app: FastAPI) -> None:
        await app.state.signaling.stop()

    app.state.on_startup.append(start)
    app.state.on_shutdown.append(stop)
