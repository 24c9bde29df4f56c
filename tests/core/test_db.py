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
