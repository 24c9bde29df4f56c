"""ingest: chunk upload, validation, completeness ledger, finalize.

`install(app)` mounts the routes, the reference browser uploader under
`/static/ingest/` and the idle-finalize sweeper.
"""
from __future__ import annotations

import tempfile

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ingest.service import Ingest, IngestLimits

__all__ = ["Ingest", "IngestLimits", "install"]


def install(app: FastAPI) -> None:
    """Mount ingest on the API app (resources come from `app.state`)."""
    from ingest import client_upload, quality, tokens
    from ingest.idle import start_sweeper
    from ingest.routes import STATIC_DIR, router

    s = app.state.settings
    app.state.ingest = Ingest(engine=app.state.engine, store=app.state.store, broker=app.state.broker,
                              limiter=app.state.limiter,
                              limits=IngestLimits(s.max_chunk_bytes, s.chunk_rate_per_minute,
                                                  s.org_rate_per_minute, s.quarantine_budget_bytes))
    spool = s.data_dir / "spool"
    try:
        spool.mkdir(parents=True, exist_ok=True)
        app.state.spool_dir = str(spool)
    except OSError:
        app.state.spool_dir = tempfile.gettempdir()
    app.include_router(router)
    app.include_router(tokens.router)
    app.include_router(quality.router)
    app.include_router(client_upload.router)
    STATIC_DIR.mkdir(exist_ok=True)
    app.mount("/static/ingest", StaticFiles(directory=STATIC_DIR), name="ingest-static")
    start_sweeper(app)
