import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core import db
from core.errors import DatabaseError
from core.models import Chunk, Recording


def test_create_all_and_roundtrip_on_both_databases(db_url: str) -> None:
    engine = db.make_engine(db_url)
    db.create_all(engine)
    db.create_all(engine)  # idempotent
    with db.session_scope(engine) as s:
        rec = Recording(org="acme", client_key="room1:client", vocabulary=["Kubernetes"])
        s.add(rec)
    with db.session_scope(engine) as s:
        s.add(Chunk(recording_id=rec.id, track_id="t1", seq=0, sha256="a" * 64,
                    start_ms=1_763_700_000_000, size=5_000_000_000))
    with db.session_scope(engine) as s:
        got = s.exec(select(Chunk)).one()
        assert got.start_ms == 1_763_700_000_000 and got.size == 5_000_000_000
        assert s.get(Recording, rec.id).vocabulary == ["Kubernetes"]
    with pytest.raises(IntegrityError), db.session_scope(engine) as s:
        s.add(Chunk(recording_id=rec.id, track_id="t1", seq=0, sha256="b" * 64))
    engine.dispose()


def test_unreachable_postgres_is_database_error() -> None:
    from recorder.services import free_port

    engine = db.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    with pytest.raises(DatabaseError):
        db.ping(engine)


def test_wal_switch_waits_for_a_lock_instead_of_failing(tmp_path) -> None:
    """SQLite answers "database is locked" at once (no busy wait) when a database not yet in
    WAL mode is switched while another connection writes: processes starting together on a
    fresh file hit it (CI, the migration race test). `set_wal` waits for the lock instead."""
    import sqlite3
    import threading

    from core.db import set_wal

    path = str(tmp_path / "fresh.db")
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE t (x)")
    other = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode=WAL")
        raised = False
    except sqlite3.OperationalError as exc:
        raised = "locked" in str(exc)
    assert raised  # what SQLite does without the wait
    threading.Timer(0.5, lambda: writer.execute("COMMIT")).start()
    set_wal(other, timeout_s=10)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer.close()
    other.close()
