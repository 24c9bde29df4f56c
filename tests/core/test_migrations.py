"""Schema migrations (core.migrations) on SQLite and Postgres: a database made by the old
`create_all` is adopted with its data and search index, a fresh one matches the models
exactly, and upgrading is idempotent and safe for processes starting together."""
from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, column, insert, inspect, text
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, select
from typer.testing import CliRunner

from core import db, migrations, search
from core.errors import InvalidState
from core.models import Chunk, Recording, Track, TranscriptSegment, TranscriptVersion

START = 1_763_700_000_000
SENTENCE = "We moved the billing service to Kubernetes with a rolling update."


def _pre_migrations_database(engine: Engine) -> None:
    """What `create_all` made before migrations existed. Revision 0001 is exactly that schema (it
    was written from it, and this module's comparison test proved them equal while 0001 was
    head), frozen: later model changes must not leak into the "old" database."""
    migrations.upgrade(engine, migrations.BASELINE)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))


def _insert(conn: Connection, table: str, **row: object) -> None:
    """A row with exactly these columns (of revision 0001): independent of today's models."""
    columns = [column(name, JSON() if name in _JSON else None) for name in row]
    conn.execute(insert(sql_table(table, *columns)).values(**row))


_JSON = {"vocabulary", "outputs", "probe", "params", "words", "flags"}


def _insert_interview(engine: Engine, rec_id: str = "rec_1") -> str:
    """A recording with a track, a chunk and a current transcript version whose segment is indexed."""
    version_id = f"trv_{rec_id}"
    with engine.begin() as conn:
        _insert(conn, "recording", id=rec_id, org="acme", client_key="room1:client", source="client",
                layout="grid", title="Platform interview", status="ready", created_by="ivy", created_at=START,
                started_at_ms=START, vocabulary=["Kubernetes"], outputs={"mp4": "acme/x.mp4"})
        _insert(conn, "track", recording_id=rec_id, track_id="cand-audio", participant_id="cand",
                display_name="Ada", role="candidate", kind="audio", created_at=START)
        _insert(conn, "chunk", recording_id=rec_id, track_id="cand-audio", seq=0, status="stored", start_ms=START,
                duration_ms=30_000, size=5_000_000_000, sha256="a" * 64, content_type="audio/webm",
                container="webm", continuation=False, object_key="acme/c0.webm", probe={"codec": "opus"},
                enqueued=True, created_at=START)
        _insert(conn, "transcriptversion", id=version_id, recording_id=rec_id, version=1, model="tiny.en",
                params={"beam": 3}, status="final", is_current=True, audio_ms=4_500, time_taken_ms=900,
                segment_count=1, created_at=START)
        _insert(conn, "transcriptsegment", version_id=version_id, recording_id=rec_id, track_id="cand-audio",
                seq=0, idx=0, participant_id="cand", display_name="Ada", role="candidate", start_ms=12_300,
                end_ms=16_800, text=SENTENCE, words=[["We", 12_300, 12_500, 0.9]], avg_logprob=-0.2,
                no_speech_prob=0.01, compression_ratio=1.1, level_db=-20.0, voiced_ratio=0.9, flags=[],
                suppressed=False)
    # what the index actor did with the current version's segments
    search.index_recording(engine, "acme", rec_id, START, [search.SearchDoc(
        segment_key=f"{version_id}:cand-audio:0:0", recording_id=rec_id, version_id=version_id,
        participant_id="cand", speaker="Ada", role="candidate", start_ms=12_300, end_ms=16_800, text=SENTENCE)])
    return rec_id


def _revision(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_pre_migrations_database_is_adopted_with_its_data_and_search(db_url: str) -> None:
    engine = db.make_engine(db_url)
    _pre_migrations_database(engine)
    rec_id = _insert_interview(engine)

    assert db.migrate(engine) == migrations.head()

    assert _revision(engine) == [migrations.head()]
    with db.session_scope(engine) as s:
        rec = s.get(Recording, rec_id)
        assert (rec.title, rec.started_at_ms, rec.vocabulary, rec.outputs) == \
            ("Platform interview", START, ["Kubernetes"], {"mp4": "acme/x.mp4"})
        assert s.exec(select(Track)).one().participant_id == "cand"
        chunk = s.exec(select(Chunk)).one()
        assert (chunk.size, chunk.probe) == (5_000_000_000, {"codec": "opus"})
        assert s.exec(select(TranscriptVersion)).one().is_current
        assert s.exec(select(TranscriptSegment)).one().text == SENTENCE
    hits = search.search(engine, '"rolling update" kube*', search.Filters(org="acme"))
    assert [(h.recording_id, h.start_ms) for h in hits] == [(rec_id, 12_300)]
    assert "<mark>" in hits[0].snippet
    # the index keeps working after the upgrade (SQLite: the FTS triggers are still there)
    search.index_recording(engine, "acme", rec_id, START, [search.SearchDoc(
        segment_key="k2", recording_id=rec_id, version_id="v", participant_id="int", speaker="Bo",
        role="interviewer", start_ms=20_000, end_ms=21_000, text="Tell me about Terraform.")])
    assert [h.start_ms for h in search.search(engine, "terraform", search.Filters(org="acme"))] == [20_000]
    assert search.search(engine, "kubernetes", search.Filters(org="acme")) == []
    engine.dispose()


def test_fresh_database_upgraded_to_head_matches_the_models(db_url: str) -> None:
    engine = db.make_engine(db_url)
    assert db.migrate(engine) == migrations.head()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": migrations.include_name,
                                                         "compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
        tables = set(inspect(conn).get_table_names())
    # A model changed without a revision: `recorder db revision -m "…"` writes one (README).
    assert diff == [], f"models and migrations differ: {diff}"
    assert "search_doc" in tables and (engine.dialect.name != "sqlite" or "search_fts" in tables)
    rec_id = _insert_interview(engine)
    assert [h.recording_id for h in search.search(engine, "kubernetes", search.Filters(org="acme"))] == [rec_id]
    engine.dispose()


def test_upgrade_is_idempotent_and_safe_for_processes_starting_together(db_url: str) -> None:
    engines = [db.make_engine(db_url) for _ in range(4)]
    start, results, errors = threading.Barrier(len(engines)), [], []

    def start_process(engine: Engine) -> None:
        start.wait()
        try:
            results.append(db.migrate(engine))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start_process, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [migrations.head()] * len(engines)
    assert db.migrate(engines[0]) == migrations.head()  # and once more, on a migrated database
    assert _revision(engines[0]) == [migrations.head()]
    _insert_interview(engines[0])
    for e in engines:
        e.dispose()


def test_create_all_fast_path_is_stamped_so_migrate_is_a_no_op(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    db.create_all(engine)
    assert _revision(engine) == [migrations.head()]
    rec_id = _insert_interview(engine)
    db.migrate(engine)
    db.create_all(engine)
    with db.session_scope(engine) as s:
        assert s.get(Recording, rec_id) is not None
    engine.dispose()


def test_a_database_that_is_not_the_baseline_is_refused(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables["recording"]])
    with pytest.raises(InvalidState, match="cannot be adopted"):
        db.migrate(engine)
    assert "alembic_version" not in inspect(engine).get_table_names()  # nothing half-done
    engine.dispose()


def test_db_cli_upgrades_and_reports(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.cli import app

    monkeypatch.setenv("RECORDER_DATABASE_URL", sqlite_url)
    runner, head = CliRunner(), migrations.head()
    before = runner.invoke(app, ["db", "current"])
    assert before.exit_code == 1 and "no revision (empty)" in before.output
    up = runner.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 0 and f"revision {head}" in up.output
    after = runner.invoke(app, ["db", "current"])
    assert after.exit_code == 0 and f"{head}; head {head} (up to date)" in after.output
