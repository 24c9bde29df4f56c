"""Database engine, sessions and schema creation (SQLite locally, Postgres in production).

Schema is created with `create_all` (no migrations yet). Driver errors that mean
"the database is unreachable" become `DatabaseError` here, once.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Session, SQLModel, create_engine

from core.errors import DatabaseError


def make_engine(url: str) -> Engine:
    """An engine tuned for the URL: WAL + busy timeout on SQLite, pre-ping on Postgres."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         connect_args={"connect_timeout": 5})


def create_all(engine: Engine) -> None:
    """Create every table of every model module (idempotent, safe for racing processes)."""
    import core.models  # noqa: F401  (registers the tables)

    for attempt in range(5):
        try:
            SQLModel.metadata.create_all(engine)
            return
        except (ProgrammingError, IntegrityError, OperationalError) as exc:
            # Two processes starting on a fresh database race between "does it exist?" and
            # CREATE; the loser sees "already exists" and simply checks again.
            if "already exists" in str(exc) and attempt < 4:
                continue
            with translated():
                raise


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise DatabaseError(f"database unavailable: {exc.orig}") from exc
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
