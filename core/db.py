"""Database engine, sessions and schema migrations (SQLite locally, Postgres in production).

The schema is made and changed by Alembic revisions in `core.migrations`: `migrate(engine)`
upgrades to the newest one (entry points call it when `RECORDER_DB_AUTO_MIGRATE` is true;
`recorder db upgrade` does it by hand). Every model change needs a revision; a test compares
the migrated schema with the models. `create_all` remains for tests and benchmarks only.
Driver errors that mean "the database is unreachable" become `DatabaseError` here, once.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlmodel import Session, create_engine

from core.errors import DatabaseError, InvalidInput


def set_wal(dbapi_conn: Any, timeout_s: float) -> None:
    """Put a SQLite database in WAL mode. Switching a database that is not in WAL yet needs
    it unlocked, and SQLite answers "database is locked" at once there, without its busy
    wait (processes starting together on a fresh file): so wait here, within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    """An engine tuned for the URL: WAL + busy timeout on SQLite, pre-ping on Postgres."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            set_wal(dbapi_conn, 30.0)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         connect_args={"connect_timeout": 5})


def migrate(engine: Engine) -> str | None:
    """Upgrade the schema to the newest revision; returns it. Adopts a `create_all` database
    (stamped as revision 0001, data kept); safe when several processes start together."""
    from core import migrations

    with translated():
        return migrations.upgrade(engine)


def create_all(engine: Engine) -> None:
    """The current models' tables made directly and stamped at the newest revision: a fast path
    for tests and benchmarks (entry points call `migrate`). A database with tables is migrated
    instead. Safe for racing processes (the migration lock)."""
    from core import migrations

    with translated():
        migrations.create_all(engine)


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise DatabaseError(f"database unavailable: {exc.orig}") from exc
    except (DataError, OverflowError) as exc:  # a NUL in text, a number past BIGINT: the request's values
        raise InvalidInput("a value in the request cannot be stored (NUL character or number out of range)",
                           code="unstorable_value") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseError(f"database connection lost: {exc.orig}") from exc
        raise


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success, rolls back on error, translates outages."""
    with translated(), Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    with translated(), engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
