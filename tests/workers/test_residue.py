"""Residue after a candidate's erasure: real workers process an interview whose candidate
says a canary phrase (composite, thumbnails, live and final transcript exports, a
re-transcription, the search index); the erasure runs through the API and the workers;
then a scanner reads every byte the stack keeps — every object version in the bucket,
every text/JSON column of every table, the raw SQLite file and its WAL after VACUUM (the
FTS5 shadow tables included), every Redis key and value, and the data and temp dirs.

Allowed to remain, and only there, is the recording's id: in its tombstone (the recording
row with id/org/dates/status only, and `recordingtombstone`), in the deletion records
(`deletionreceipt`, `manifestitem`, `retentionmanifest`, `erasurerequest`) and in the
append-only audit log (`auditevent`, `_audit/` checkpoints). The canary may remain nowhere.
The same scan first runs before the erasure and must find the canary in each place, so it
can fail.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib
from minio.error import S3Error
from sqlalchemy import JSON, String, Text, inspect, text

from core import keys
from core.db import session_scope
from core.models import Chunk, Recording, Room, Track
from core.storage import ObjectStore
from tests.conftest import auth
from tests.workers.conftest import settings_env
from tests.workers.test_retention import END, _status, _steps_done, sqlite_file_bytes

REC, CANDIDATE = "rec_residue7q", "cand-residue7q"
CANARY = "I grew up in Lisbon as a backend engineer."
NEEDLES = [b"lisbon", b"backend", b"engineer", b"engin"]  # the words, and porter's stem "engin" as FTS5 stores it
TOMBSTONE_TABLES = {"recordingtombstone", "deletionreceipt", "manifestitem", "retentionmanifest", "erasurerequest",
                    "auditevent"}
TOMBSTONE_COLUMNS = {"id", "org", "client_key", "status"}  # the recording row: client_key is reset to the id


@dataclass
class Hits:
    canary: list[str] = field(default_factory=list)
    rec_id: list[str] = field(default_factory=list)

    def look(self, where: str, data: bytes, rec_allowed: bool = False) -> None:
        low = data.lower()
        found = [n.decode() for n in NEEDLES if n in low]
        if found:
            self.canary.append(f"{where}: {found}")
        if not rec_allowed and REC.encode() in low:
            self.rec_id.append(where)


def scan_bucket(store: ObjectStore, hits: Hits) -> None:
    for o in store.list_versions(""):
        data = b""
        if o.size:  # a delete marker (size 0) has no bytes; its key is still scanned
            try:
                resp = store.client.get_object(store.bucket, o.key, version_id=o.version_id)
            except S3Error as exc:
                if exc.code == "NoSuchKey":  # a worker's scratch object removed since the listing
                    continue
                raise
            data = resp.read()
            resp.close()
            resp.release_conn()
        hits.look(f"s3:{o.key}@{o.version_id}", o.key.encode() + b"\n" + data,
                  rec_allowed=o.key.startswith("_audit/"))


def scan_tables(engine, hits: Hits) -> None:
    insp = inspect(engine)
    with engine.connect() as conn:
        for table in insp.get_table_names():
            cols = [c["name"] for c in insp.get_columns(table)
                    if isinstance(c["type"], (String, Text, JSON)) or "CHAR" in str(c["type"]).upper()
                    or "TEXT" in str(c["type"]).upper() or "JSON" in str(c["type"]).upper()]
            if not cols:
                continue
            rows = conn.execute(text(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table}"'))
            for row in rows:
                for col, value in zip(cols, row):
                    if value is None:
                        continue
                    raw = (value if isinstance(value, str) else json.dumps(value)).encode()
                    allowed = table in TOMBSTONE_TABLES or (table == "recording" and col in TOMBSTONE_COLUMNS)
                    hits.look(f"db:{table}.{col}", raw, rec_allowed=allowed)


def scan_redis(client: redis_lib.Redis, hits: Hits) -> None:
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [json.dumps({k.decode(): v.decode(errors="replace") for k, v in f.items()}).encode()
                      for _, f in client.xrange(key)]
        else:
            values = []
        hits.look(f"redis:{key.decode(errors='replace')}", key + b"\n" + b"\n".join(values))


def scan_dirs(dirs: list[Path], skip: set[Path], hits: Hits) -> None:
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and p not in skip:
                hits.look(f"file:{p}", str(p).encode() + b"\n" + p.read_bytes())


def scan_sqlite_file(url: str, hits: Hits) -> None:
    """The raw file and WAL: FTS5 shadow tables, free pages, overflow pages."""
    raw = sqlite_file_bytes(url)
    low = raw.lower()
    found = [n.decode() for n in NEEDLES if n in low]
    if found:
        hits.canary.append(f"sqlite-file: {found}")


def scan(settings, engine, store, client, extra_dirs: list[Path]) -> Hits:
    hits = Hits()
    scan_bucket(store, hits)
    scan_tables(engine, hits)
    scan_redis(client, hits)
    db_file = Path(settings.database_url.removeprefix("sqlite:///"))
    skip = {db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm"), Path(f"{db_file}-journal")}
    scan_dirs([Path(settings.data_dir), *extra_dirs], skip, hits)
    scan_sqlite_file(settings.database_url, hits)
    return hits


def make_interview(engine, store, clips: dict[str, Path], workdir: Path) -> None:
    from tests.media import split_chunks

    with session_scope(engine) as s:
        s.add(Room(id="room_residue7q", org="acme", slot_id="slot-residue", created_by="iv-1",
                   title="Interview 7", candidate_id=CANDIDATE))
        s.flush()
        s.add(Recording(id=REC, org="acme", client_key=f"ck-{REC}", room_id="room_residue7q", status="recording",
                        title="Interview 7", created_by="iv-1", started_at_ms=END))
    for track, clip in clips.items():
        who = CANDIDATE if track == "cand" else "iv-1"
        with session_scope(engine) as s:
            s.add(Track(recording_id=REC, track_id=track, participant_id=who, kind="av",
                        role="candidate" if track == "cand" else "interviewer", display_name=track))
        for seq, (path, start, dur) in enumerate(split_chunks(clip, workdir / track, chunk_s=4)):
            data = Path(path).read_bytes()
            key = keys.chunk_key("acme", REC, track, seq, "webm")
            store.put_bytes(key, data, "video/webm")
            with session_scope(engine) as s:
                s.add(Chunk(recording_id=REC, track_id=track, seq=seq, status="stored", start_ms=END + start,
                            duration_ms=dur, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                            container="webm", object_key=key, stored_at=END))


def plant_ingest_keys(client: redis_lib.Redis) -> None:
    """What the ingest API leaves in Redis for an upload (chunks went straight to S3 here):
    a chunk rate-limit counter, a window lock and a dead-lettered message naming the recording."""
    client.set(f"rl:chunks:{REC}:28333333", 4)
    client.set(f"recorder:lock:window:{REC}:1", "token")
    dead = {"queue_name": "transcribe", "actor_name": "transcribe_chunk", "args": [REC, "cand", 1], "kwargs": {},
            "options": {}, "message_id": f"m-{REC}", "message_timestamp": 1}
    client.hset("dramatiq:transcribe.XQ.msgs", f"m-{REC}", json.dumps(dead))
    client.zadd("dramatiq:transcribe.XQ", {f"m-{REC}": 1})


def _versions_final(engine, n: int) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM transcriptversion WHERE recording_id = :r AND status = 'final'"),
                            {"r": REC}).scalar_one() >= n


@pytest.mark.slow
def test_an_erased_candidate_leaves_no_residue_anywhere(settings, engine, store, client, token_for,
                                                       tmp_path_factory) -> None:
    from dramatiq.brokers.redis import RedisBroker

    from core.queue import enqueue
    from tests.media import participant_clip
    from tests.workers.conftest import WorkerProcess, wait_for

    work = tmp_path_factory.mktemp("residue-inputs")  # clips and logs: outside the scanned dirs
    temp = Path(settings.data_dir) / "tmp"  # the worker's TMPDIR: scanned
    temp.mkdir(exist_ok=True)
    clips = {"cand": participant_clip(work / "cand.webm", 8, [(0.5, CANARY)])[0],
             "ivy": participant_clip(work / "ivy.webm", 8, [(4.5, "Tell me about Kubernetes.")])[0]}
    make_interview(engine, store, clips, work)
    broker = RedisBroker(url=settings.redis_url)
    client_redis = redis_lib.Redis.from_url(settings.redis_url)
    env = settings_env(settings, RECORDER_WINDOW_MS="4000", RECORDER_DATA_DIR=str(settings.data_dir), TMPDIR=str(temp))
    worker = WorkerProcess(env, ["media", "transcribe", "default"], work / "worker.log")
    try:
        for track in clips:
            for seq in range(2):
                enqueue(broker, "process_chunk", REC, track, seq)
                enqueue(broker, "transcribe_chunk", REC, track, seq)
        wait_for(lambda: _steps_done(engine, REC, 8), 240, "chunks processed", on_timeout=worker.log)
        live = [o.key for o in store.list_versions(keys.recording_prefix("acme", REC)) if "/live." in o.key]
        assert live, "live exports while the interview runs (finalize supersedes them)"
        with session_scope(engine) as s:
            rec = s.get(Recording, REC)
            rec.status, rec.finalized_at = "processing", END + 8000  # as ingest's finalize does
        enqueue(broker, "finalize_recording", REC)
        enqueue(broker, "finalize_transcript", REC)
        wait_for(lambda: _status(engine, REC) in ("ready", "failed"), 300, "ready", on_timeout=worker.log)
        assert _status(engine, REC) == "ready", worker.log()
        enqueue(broker, "retranscribe_recording", REC)
        wait_for(lambda: _versions_final(engine, 2), 240, "a second transcript version", on_timeout=worker.log)
        wait_for(lambda: not any(client_redis.hlen(f"dramatiq:{q}.msgs") for q in ("media", "transcribe", "default")),
                 60, "every message acknowledged", on_timeout=worker.log)
        with engine.connect() as conn:  # the FTS shadow tables hold only committed, checkpointed pages
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        plant_ingest_keys(client_redis)

        before = scan(settings, engine, store, client_redis, [])
        places = {h.split(":")[0] for h in before.canary}
        assert {"s3", "db", "sqlite-file"} <= places, before.canary  # the scanner sees the canary where it lives
        assert any("search_doc" in h for h in before.canary), before.canary
        assert any("engin" in h and "db:" not in h for h in before.canary), before.canary  # the stem in FTS pages
        assert any("/outputs/transcripts/" in h for h in before.canary), before.canary
        assert any(h.startswith("redis:") for h in before.rec_id), before.rec_id  # the Redis scan sees keys
        written = {h.split("@")[0] for h in before.rec_id if h.startswith("s3:")}
        assert any("/outputs/thumbs/" in k for k in written) and any("composite.mp4" in k for k in written), written

        headers = auth(token_for(role="compliance", sub="comp-1"))
        resp = client.post("/v1/erasure-requests", json={"candidate_id": CANDIDATE}, headers=headers)
        assert resp.status_code == 202, resp.text
        erasure = resp.json()
        assert erasure["recordings"] == [REC]

        def complete() -> dict | None:
            e = client.get(f"/v1/erasure-requests/{erasure['id']}", headers=headers).json()
            return e if e["status"] == "complete" else None

        done = wait_for(complete, 120, "erasure complete", interval_s=0.5, on_timeout=worker.log)
        assert client.get(f"/v1/receipts/{done['receipt_id']}", headers=headers).status_code == 200
    finally:
        worker.stop()
        broker.close()

    after = scan(settings, engine, store, client_redis, [temp])
    client_redis.close()
    assert after.canary == [], after.canary
    assert after.rec_id == [], after.rec_id
    with session_scope(engine) as s:
        tomb = s.get(Recording, REC)
        assert (tomb.status, tomb.title, tomb.client_key, tomb.outputs, tomb.created_by) == ("deleted", "", REC, None, "")
    assert CANDIDATE.encode() not in sqlite_file_bytes(settings.database_url)  # only its salted hash is left
