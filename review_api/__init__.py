"""review_api: transcripts (exports, versions, re-transcription), search, vocabulary.

`install(app)` mounts this package's routes. Reads only the DB and the object store;
heavy work (re-transcription, indexing) is enqueued by actor name.
"""
from __future__ import annotations

from fastapi import FastAPI

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Mount this package's routers on the API app."""
    from review_api import access, pages, playback, recordings, webhooks
    from review_api.audit import router as audit_router
    from review_api.search import router as search_router
    from review_api.transcripts import router as transcripts_router

    app.include_router(transcripts_router)
    app.include_router(search_router)
    app.include_router(playback.router)
    app.include_router(access.router)
    app.include_router(recordings.router)
    app.include_router(webhooks.router)
    app.include_router(audit_router)
    from review_api.retention import router as retention_router

    app.include_router(retention_router)
    app.include_router(pages.router)
