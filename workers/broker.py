"""Dramatiq broker + per-process resources for the worker processes.

`dramatiq workers.actors` imports this first: it reads `Settings` (this is an entry
point), sets the Redis broker and exposes lazily-built resources (DB engine, object
store) that actors share within one process.
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy.engine import Engine

from core import db
from core.logging import configure_logging
from core.queue import make_broker
from core.settings import Settings, get_settings
from core.storage import ObjectStore

settings: Settings = get_settings()
configure_logging(settings.log_level, settings.log_json)
broker = make_broker(settings.redis_url)


@lru_cache
def engine() -> Engine:
    eng = db.make_engine(settings.database_url)
    if settings.db_auto_migrate:
        db.migrate(eng)
    return eng


@lru_cache
def store() -> ObjectStore:
    st = ObjectStore.from_settings(settings)
    st.ensure_bucket()
    return st
