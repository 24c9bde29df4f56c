"""The retention engine (`workers.retention`) on real S3 + Redis + SQLite/Postgres, with the
clock passed in: runs delete everything due (objects of every version, rows, the search
index, Redis keys), holds keep recordings byte-identical, killed runs are finished by a
re-run, erasures end in a signed receipt. The last test runs the real pipeline first."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import redis as redis_lib
from sqlalchemy import text
from sqlmodel import select

from core import keys, search
from core.artifacts import KINDS, kind_of_key, plan, request_erasure
from core.db import create_all, make_engine, session_scope
from core.errors import Conflict, StorageError
from core.models import (CallSession, CandidateEvent, Chunk, DeletionReceipt, ErasureRequest, LegalHold, ManifestItem, OrgSettings,
                         ProcessingStep, QualitySample, Recording, RecordingGrant, RecordingMatter,
                         RecordingTombstone, RejectedChunk, RetentionManifest, RetentionPolicy, Room, Track,
                         TranscriptSegment, TranscriptTrackState, TranscriptVersion, WebhookDelivery,
                         WebhookEndpoint)
from core.retention import DAY_MS, check_receipt, salted_hash
from core.signing import Signer
from core.storage import ObjectStore
from tests.conftest import S3_ACCESS, S3_SECRET, drop_bucket
from tests.workers.conftest import ROOT, settings_env

END = 1_700_000_000_000  # every test recording ended here
ALL_30_DAYS = {k: [{"days": 30, "after": "end"}] for k in KINDS}
WORD = {"rec_a": "quokka", "rec_b": "narwhal", "rec_c": "axolotl", "rec_d": "pangolin"}  # one canary per recording


@dataclass
class World:
    tools: object  # workers.retention.Tools
    url: str

    @property
    def engine(self):
        return self.tools.engine

    @property
    def store(self) -> ObjectStore:
        return self.tools.store


def _tools(url: str, store: ObjectStore, redis_url: str):
    from workers.retention import Tools

    engine = make_engine(url)
    create_all(engine)
    return Tools(engine, store, redis_lib.Redis.from_url(redis_url), Signer.generate(),
                 enforced=store.legal_hold_enforced())


@pytest.fixture
def world(db_url: str, redis_url: str, s3_server, bucket: str) -> Iterator[World]:
    """SQLite and Postgres (tests using it run twice)."""
    store = s3_server.store(bucket)
    store.ensure_bucket()
    t = _tools(db_url, store, redis_url)
    yield World(t, db_url)
    t.redis.close()
    t.engine.dispose()


@pytest.fixture
def lite(sqlite_url: str, redis_url: str, s3_server, bucket: str) -> Iterator[World]:
    store = s3_server.store(bucket)
    store.ensure_bucket()
    t = _tools(sqlite_url, store, redis_url)
    yield World(t, sqlite_url)
    t.redis.close()
    t.engine.dispose()


# ---------------------------------------------------------------- a recording holding every kind

def add_interview(engine, store: ObjectStore, client, rec: str, candidate: str = "cand-1", room: str | None = None,
                  org: str = "acme", end: int = END, candidate_track_only: bool = False) -> None:
    """Rows, objects, index entries and Redis keys of every artifact kind, as the pipeline leaves them."""
    room = room or f"room_{rec}"
    word = WORD.get(rec, "wombat")
    base = keys.recording_prefix(org, rec)
    with session_scope(engine) as s:
        if s.get(Room, room) is None:
            owner = "someone-else" if candidate_track_only else candidate
            s.add(Room(id=room, org=org, slot_id=f"slot-{rec}", created_by="iv-1", title=f"Interview of {owner}",
                       candidate_id=owner))
            s.flush()
            s.add(CallSession(room_id=room, participant_id=candidate, instance_id="i1", display_name="Ada Lovelace"))
        s.flush()
        s.add(Recording(id=rec, org=org, client_key=f"client-{rec}-{candidate}", room_id=room, status="ready",
                        title=f"Interview of {candidate}", created_by="iv-1", created_at=end - 3_600_000,
                        started_at_ms=end - 600_000, finalized_at=end, vocabulary=["Kubernetes"],
                        outputs={"composite": f"{base}outputs/composite.mp4", "hls": f"{base}outputs/hls/index.m3u8",
                                 "duration_ms": 600_000, "transcript": {"key": f"{base}outputs/transcript.json"}}))
        s.flush()
        for track, who, role in (("cam-c", candidate, "candidate"), ("cam-i", "iv-1", "interviewer")):
            s.add(Track(recording_id=rec, track_id=track, participant_id=who, display_name="Ada Lovelace", role=role))
            for seq in range(3):
                key = keys.chunk_key(org, rec, track, seq, "webm")
                store.put_bytes(key, hashlib.sha256(key.encode()).digest() * 40)
                s.add(Chunk(recording_id=rec, track_id=track, seq=seq, status="stored", start_ms=end - 600_000,
                            size=1280, sha256="0" * 64, object_key=key))
        qkey = keys.quarantine_key(org, rec, "cam-c", 9, "ab" * 32)
        store.put_bytes(qkey, b"not media")
        s.add(RejectedChunk(recording_id=rec, track_id="cam-c", seq=9, sha256="ab" * 32, reason="undecodable",
                            object_key=qkey))
        s.add(RecordingGrant(recording_id=rec, org=org, kind="user", subject="assessor-1"))
        s.add(ProcessingStep(recording_id=rec, step="media.final", status="done"))
        s.add(RecordingMatter(recording_id=rec, org=org, matter="M-1"))
        s.add(QualitySample(recording_id=rec, participant_id=candidate, track_id="cam-c", at_ms=end - 5000))
        version = TranscriptVersion(id=f"trv_{rec}", recording_id=rec, status="final", is_current=True)
        s.add(version)
        s.flush()
        s.add(TranscriptSegment(version_id=version.id, recording_id=rec, track_id="cam-c", participant_id=candidate,
                                display_name="Ada Lovelace", role="candidate", start_ms=1000, end_ms=3000,
                                text=f"I once met a {word} in Lisbon", words=[[word, 1500, 1900, 0.9]]))
        s.add(TranscriptTrackState(version_id=version.id, recording_id=rec, track_id="cam-c",
                                   carry_key=f"{base}work/transcript/{version.id}/cam-c/000002.pcm"))
    for name in ("windows/000000.mp4", "windows/000000.jpg", "windows/000000.json", "outputs/composite.mp4",
                 "outputs/hls/index.m3u8", "outputs/hls/w000000-000.ts", "outputs/poster.jpg",
                 "outputs/thumbs/strip.jpg", f"work/transcript/trv_{rec}/cam-c/000002.pcm"):
        store.put_bytes(base + name, f"{rec} {name}".encode() * 20)
    for name in ("outputs/transcript.json", "outputs/transcripts/v001/transcript.vtt",
                 "outputs/transcripts/v001/live.txt"):
        store.put_bytes(base + name, f"Ada Lovelace: I once met a {word} in Lisbon".encode())
    search.index_recording(engine, org, rec, end - 600_000, [search.SearchDoc(
        f"trv_{rec}:cam-c:0:0", rec, f"trv_{rec}", candidate, "Ada Lovelace", "candidate", 1000, 3000,
        f"I once met a {word} in Lisbon")])
    if client is not None:
        client.set(f"rl:chunks:{rec}:28333333", 4)
        client.set(f"recorder:lock:window:{rec}:3", "token")
        dead = {"queue_name": "media", "actor_name": "process_chunk", "args": [rec, "cam-c", 2], "kwargs": {},
                "options": {}, "message_id": f"m-{rec}", "message_timestamp": 1}
        client.hset("dramatiq:media.XQ.msgs", f"m-{rec}", json.dumps(dead))
        client.zadd("dramatiq:media.XQ", {f"m-{rec}": 1})


def set_policy(engine, org: str = "acme", rules: dict | None = None, approval: bool = False) -> None:
    with session_scope(engine) as s:
        s.add(RetentionPolicy(org=org, rules=rules if rules is not None else ALL_30_DAYS, salt="ab" * 32))
        s.add(OrgSettings(org=org, retention_approval=approval))


def hold(engine, scope: str, target: str, org: str = "acme") -> str:
    with session_scope(engine) as s:
        h = LegalHold(org=org, scope=scope, target=target, reason="litigation")
        s.add(h)
    return h.id


def digests(store: ObjectStore, org: str, rec: str) -> dict[str, str]:
    """SHA-256 of every object version under the recording's prefix."""
    out = {}
    for o in store.list_versions(keys.recording_prefix(org, rec)):
        with store.open(o.key) as resp:
            out[f"{o.key}@{o.version_id}"] = hashlib.sha256(resp.read()).hexdigest()
    return out


def rows_of(engine, rec: str) -> dict[str, int]:
    tables = ("chunk", "rejectedchunk", "track", "processingstep", "recordinggrant", "recordingmatter",
              "transcriptversion", "transcriptsegment", "transcripttrackstate", "search_doc", "qualitysample")
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t} WHERE recording_id = :r"), {"r": rec}).scalar_one()
                for t in tables}


def finds(engine, word: str) -> list[str]:
    return [h.recording_id for h in search.search(engine, word, search.Filters(org="acme"))]


def redis_keys(client, rec: str) -> list:
    return sorted(k for k in client.scan_iter(count=1000) if rec.encode() in k) + \
        [m for m, raw in client.hscan_iter("dramatiq:media.XQ.msgs") if rec.encode() in raw]


def items(engine, manifest_id: str) -> list[ManifestItem]:
    with session_scope(engine) as s:
        return list(s.exec(select(ManifestItem).where(ManifestItem.manifest_id == manifest_id)
                           .order_by(ManifestItem.id)).all())


def sqlite_file_bytes(url: str) -> bytes:
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


# ---------------------------------------------------------------- runs

def test_a_run_deletes_everything_due_and_leaves_held_recordings_byte_identical(world: World) -> None:
    from workers.retention import run_manifest

    t, engine, store = world.tools, world.engine, world.store
    for rec in ("rec_a", "rec_b", "rec_c"):
        later = 20 * DAY_MS if rec == "rec_c" else 0
        add_interview(engine, store, t.redis, rec, candidate=f"cand-{rec}", end=END + later)
    set_policy(engine)
    held = hold(engine, "recording", "rec_b")
    kept = digests(store, "acme", "rec_b")
    assert {kind_of_key(k.split("@")[0]) for k in kept} == set(KINDS) - {"quality"}

    m = plan(engine, store, "acme", END + 31 * DAY_MS, created_by="comp-1")
    listed = items(engine, m.id)
    assert {(i.recording_id, i.kind, i.status) for i in listed} == {
        *(("rec_a", k, "due") for k in (*KINDS, "record")), *(("rec_b", k, "held") for k in (*KINDS, "record"))}
    assert all(i.held_by == [held] for i in listed if i.recording_id == "rec_b")  # rec_c: due in 20 more days
    due = m.summary["due"]
    assert due["raw_chunks"]["objects"] == 6 and due["quarantine"]["objects"] == 1
    assert due["transcripts"]["rows"] == 1 + 1 + 1 + 1 + 1  # search_doc, segment, track state, version, outputs

    done = run_manifest(t, m.id, actor="comp-1", now=END + 31 * DAY_MS)
    assert done.status == "done" and done.receipt_id
    run = done.summary["run"]
    assert run["items"] == {"deleted": 6, "held": 6}
    for kind, counts in due.items():  # preview count = executed count (nothing changed in between)
        assert {k: run["deleted"][kind][k] for k in ("objects", "bytes")} == \
            {k: counts[k] for k in ("objects", "bytes")}, kind
    assert store.list_versions(keys.recording_prefix("acme", "rec_a")) == []
    assert set(rows_of(engine, "rec_a").values()) == {0}
    assert finds(engine, WORD["rec_a"]) == [] and finds(engine, WORD["rec_b"]) == ["rec_b"]
    assert redis_keys(t.redis, "rec_a") == [] and redis_keys(t.redis, "rec_b") != []
    with session_scope(engine) as s:
        tomb, rec = s.get(RecordingTombstone, "rec_a"), s.get(Recording, "rec_a")
        assert tomb.receipt_id == done.receipt_id and tomb.manifest_id == m.id
        assert (rec.status, rec.title, rec.client_key, rec.outputs, rec.vocabulary, rec.created_by) == \
            ("deleted", "", "rec_a", None, None, "")
        assert rec.finalized_at == END and s.get(Recording, "rec_b").status == "ready"
    assert digests(store, "acme", "rec_b") == kept  # byte-identical
    assert all(v > 0 for t_, v in rows_of(engine, "rec_b").items()), rows_of(engine, "rec_b")
    assert digests(store, "acme", "rec_c") and finds(engine, WORD["rec_c"]) == ["rec_c"]  # not due yet
    if world.url.startswith("sqlite"):  # the words are gone from the database files, not only from queries
        raw = sqlite_file_bytes(world.url)
        assert WORD["rec_a"].encode() not in raw and WORD["rec_b"].encode() in raw
    again = run_manifest(t, m.id, actor="comp-1", now=END + 32 * DAY_MS)  # idempotent
    assert again.receipt_id == done.receipt_id and again.finished_at == done.finished_at


def test_an_item_held_after_the_preview_survives_and_nothing_is_deleted_early(lite: World) -> None:
    from workers.retention import run_manifest

    t, engine, store = lite.tools, lite.engine, lite.store
    add_interview(engine, store, t.redis, "rec_a")
    add_interview(engine, store, t.redis, "rec_b", candidate="cand-2")
    set_policy(engine)
    early = plan(engine, store, "acme", END + 31 * DAY_MS, created_by="comp-1")  # a look ahead, run today
    run_manifest(t, early.id, now=END + DAY_MS)
    assert {i.status for i in items(engine, early.id)} == {"skipped"}
    assert {i.note for i in items(engine, early.id)} == {"not_due"}
    assert len(digests(store, "acme", "rec_a")) == 19

    m = plan(engine, store, "acme", END + 31 * DAY_MS, created_by="comp-1")
    before = digests(store, "acme", "rec_b")
    late = hold(engine, "candidate", "cand-2")  # placed after the preview, before the run
    run_manifest(t, m.id, now=END + 31 * DAY_MS)
    by = {(i.recording_id, i.kind): i for i in items(engine, m.id)}
    assert all(by[("rec_b", k)].status == "skipped" and by[("rec_b", k)].held_by == [late] for k in KINDS)
    assert all(by[("rec_a", k)].status == "deleted" for k in KINDS)
    assert digests(store, "acme", "rec_b") == before and finds(engine, WORD["rec_b"]) == ["rec_b"]
    with session_scope(engine) as s:
        receipt = s.get(RetentionManifest, m.id).receipt_id
        body = s.get(DeletionReceipt, receipt).body
    assert {k["recording_id"] for k in body["kept"]} == {"rec_b"} and body["tombstones"] == ["rec_a"]


KILL_AFTER = r"""
import os, signal, sys
from core.db import make_engine
from core.signing import Signer
from core.storage import ObjectStore
from workers import retention

url, endpoint, access, secret, bucket, manifest, after, now = sys.argv[1:9]
purged = []
real = ObjectStore.purge

def purge(self, key, versions=None):
    real(self, key, versions)
    purged.append(key)
    if len(purged) == int(after):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup: as an OOM kill or a pulled plug

ObjectStore.purge = purge
retention.PURGE_THREADS = 1
store = ObjectStore(endpoint, access, secret, bucket)
retention.run_manifest(retention.Tools(make_engine(url), store, None, Signer.generate()), manifest, now=int(now))
"""


def test_a_run_sigkilled_half_way_is_finished_by_the_next_tick(lite: World, settings, s3_server,
                                                                bucket: str) -> None:
    from workers.retention import tick

    t, engine, store = lite.tools, lite.engine, lite.store
    add_interview(engine, store, t.redis, "rec_a")
    set_policy(engine)
    m = plan(engine, store, "acme", END + 31 * DAY_MS, created_by="comp-1")
    out = subprocess.run([sys.executable, "-c", KILL_AFTER, lite.url, s3_server.endpoint, S3_ACCESS, S3_SECRET,
                          bucket, m.id, "4", str(END + 31 * DAY_MS)], cwd=ROOT, env=settings_env(settings),
                         capture_output=True, timeout=120)
    assert out.returncode == -9, out.stderr.decode()[-2000:]
    states = {i.kind: i.status for i in items(engine, m.id)}
    assert states["raw_chunks"] == "deleting" and states["transcripts"] == "due", states
    assert 0 < len(store.list(keys.recording_prefix("acme", "rec_a") + "chunks/")) < 6  # half done
    assert tick(t, END + 31 * DAY_MS) == [m.id]  # the interrupted run is finished; nothing else is due
    with session_scope(engine) as s:
        done = s.get(RetentionManifest, m.id)
    assert done.status == "done" and {i.status for i in items(engine, m.id)} == {"deleted"}
    assert store.list_versions(keys.recording_prefix("acme", "rec_a")) == []
    for kind, counts in m.summary["due"].items():  # what the killed run deleted is on the receipt too
        assert done.summary["run"]["deleted"][kind]["objects"] == counts["objects"], kind


def test_a_run_failing_half_way_is_finished_by_the_rerun(world: World, monkeypatch) -> None:
    from workers.retention import run_manifest

    t, engine, store = world.tools, world.engine, world.store
    add_interview(engine, store, t.redis, "rec_a")
    set_policy(engine)
    m = plan(engine, store, "acme", END + 31 * DAY_MS, created_by="comp-1")
    real, calls = ObjectStore.purge, []

    def flaky(self, key, versions=None):
        calls.append(key)
        if len(calls) == 9:
            raise StorageError("S3 went away")
        real(self, key, versions)

    monkeypatch.setattr(ObjectStore, "purge", flaky)
    with pytest.raises(StorageError):
        run_manifest(t, m.id, now=END + 31 * DAY_MS)
    assert "deleting" in {i.status for i in items(engine, m.id)}
    assert finds(engine, WORD["rec_a"]) == ["rec_a"]  # the transcripts item was not reached
    monkeypatch.setattr(ObjectStore, "purge", real)
    done = run_manifest(t, m.id, now=END + 31 * DAY_MS)
    assert {i.status for i in items(engine, m.id)} == {"deleted"} and done.status == "done"
    assert store.list_versions(keys.recording_prefix("acme", "rec_a")) == [] and finds(engine, WORD["rec_a"]) == []


def test_an_approval_mode_manifest_does_nothing_until_approved(lite: World) -> None:
    from workers.retention import run_manifest, tick

    t, engine, store = lite.tools, lite.engine, lite.store
    add_interview(engine, store, t.redis, "rec_a")
    set_policy(engine, approval=True)
    assert tick(t, END + 31 * DAY_MS) == []  # previews only
    assert tick(t, END + 32 * DAY_MS) == []  # one manifest waits for review at a time
    with session_scope(engine) as s:
        (m,) = s.exec(select(RetentionManifest)).all()
    assert m.needs_approval and m.created_by == "system:retention"
    with pytest.raises(Conflict) as refused:
        run_manifest(t, m.id, now=END + 31 * DAY_MS)
    assert refused.value.code == "not_approved"
    assert {i.status for i in items(engine, m.id)} == {"due"} and len(digests(store, "acme", "rec_a")) == 19
    with session_scope(engine) as s:
        row = s.get(RetentionManifest, m.id)
        row.approved_by = "comp-2"
        s.add(row)
    assert tick(t, END + 33 * DAY_MS) == [m.id]  # the approved manifest runs at the next tick
    assert store.list_versions(keys.recording_prefix("acme", "rec_a")) == []


def test_the_tick_runs_automatic_policies_and_sweeps_the_spool(lite: World, tmp_path: Path) -> None:
    from workers.retention import tick

    t, engine, store = lite.tools, lite.engine, lite.store
    add_interview(engine, store, t.redis, "rec_a")
    add_interview(engine, store, t.redis, "rec_x", org="globex", candidate="cand-x")
    set_policy(engine)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "chunk-old.part").write_bytes(b"half an upload")
    (spool / "chunk-new.part").write_bytes(b"an upload in flight")
    os.utime(spool / "chunk-old.part", (0, 0))
    assert tick(t, END + DAY_MS, spool, 3600) == []  # nothing due yet: no manifest kept
    (ran,) = tick(t, END + 31 * DAY_MS, spool, 3600)
    assert store.list_versions(keys.recording_prefix("acme", "rec_a")) == []
    assert len(digests(store, "globex", "rec_x")) == 19  # no policy in globex: kept
    assert sorted(p.name for p in spool.iterdir()) == ["chunk-new.part"]
    assert tick(t, END + 32 * DAY_MS, spool, 3600) == []


def test_the_cli_previews_then_runs_a_manifest(lite: World, settings, tmp_path: Path) -> None:
    engine, store = lite.engine, lite.store
    add_interview(engine, store, None, "rec_a")
    add_interview(engine, store, None, "rec_b", candidate="cand-2")
    set_policy(engine)
    hold(engine, "room", "room_rec_b")
    env = settings_env(settings, RECORDER_DATA_DIR=str(tmp_path))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "recorder", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    out = cli("retention", "preview", "--at", "2023-12-15", "--json")
    assert out.returncode == 0, out.stderr
    (m,) = json.loads(out.stdout)
    assert m["summary"]["due"]["raw_chunks"]["objects"] == 6 and m["summary"]["held"]["raw_chunks"]["items"] == 1
    text_out = cli("retention", "preview", "--at", "2023-12-15")
    assert "held rec_b raw_chunks by hold_" in text_out.stdout and "due  raw_chunks" in text_out.stdout
    assert cli("retention", "preview", "--at", "yesterday").returncode == 2
    assert cli("retention", "run", "rman_nope").returncode == 2
    ran = cli("retention", "run", m["id"])
    assert ran.returncode == 0 and f"manifest {m['id']} done" in ran.stdout, ran.stdout + ran.stderr
    assert store.list_versions(keys.recording_prefix("acme", "rec_a")) == []
    assert len(digests(store, "acme", "rec_b")) == 19


def test_retention_actors_keep_the_queue_contract_and_one_tick_chain(redis_url: str) -> None:
    from dramatiq.brokers.redis import RedisBroker

    from core.queue import ACTOR_QUEUES
    from workers import retention

    actors = (retention.apply_retention, retention.retention_tick, retention.sync_legal_holds)
    assert {a.actor_name: a.queue_name for a in actors} == {a.actor_name: ACTOR_QUEUES[a.actor_name] for a in actors}
    broker = RedisBroker(url=redis_url)
    client = redis_lib.Redis.from_url(redis_url)
    try:
        first = retention.schedule_next(broker, client, "", 60)  # a kick with no chain alive starts one
        assert first and client.get(retention.CHAIN_KEY).decode() == first
        assert retention.schedule_next(broker, client, "", 60) is None  # a second kick: the chain is alive
        assert retention.schedule_next(broker, client, "stale", 60) is None
        second = retention.schedule_next(broker, client, first, 60)  # the chain's own message goes on
        assert second and second != first and client.pttl(retention.CHAIN_KEY) > 60_000
        assert client.hlen("dramatiq:default.DQ.msgs") == 2  # two delayed ticks: the kick and its successor
    finally:
        client.close()
        broker.close()


# ---------------------------------------------------------------- erasure

def test_a_candidate_erasure_waits_for_holds_then_leaves_only_a_salted_hash(world: World, settings,
                                                                            tmp_path: Path) -> None:
    from workers.retention import run_manifest, tick

    from dramatiq.brokers.redis import RedisBroker

    t, engine, store = world.tools, world.engine, world.store
    t.broker = RedisBroker(url=settings.redis_url)
    with session_scope(engine) as s:
        s.add(WebhookEndpoint(org="acme", url="http://127.0.0.1:9/hook", secret="whsec_x"))
    add_interview(engine, store, t.redis, "rec_a", candidate="cand-9")  # their room
    add_interview(engine, store, t.redis, "rec_b", candidate="cand-9", candidate_track_only=True)  # a track of theirs
    add_interview(engine, store, t.redis, "rec_c", candidate="cand-7")  # someone else
    with session_scope(engine) as s:
        s.add(CandidateEvent(org="acme", candidate_id="cand-9", type="rejected", at=END))
    held = hold(engine, "matter", "M-1")  # every recording carries matter M-1
    e = request_erasure(engine, store, "acme", "cand-9", "comp-1", END)
    assert e.status == "deferred" and e.held_by == [held] and e.manifest_id is None
    assert sorted(e.recordings) == ["rec_a", "rec_b"]
    with session_scope(engine) as s:
        s.get(LegalHold, held).released_at = END + 1
    kept = digests(store, "acme", "rec_c")
    tick(t, END + DAY_MS)  # the deferred erasure is planned and run once nothing holds it
    with session_scope(engine) as s:
        e = s.get(ErasureRequest, e.id)
        salt = s.get(RetentionPolicy, "acme").salt
        assert e.status == "complete" and e.candidate_id is None and e.receipt_id
        assert e.candidate_hash == salted_hash(salt, "cand-9")
        room = s.get(Room, "room_rec_a")
        assert (room.candidate_id, room.title) == (e.candidate_hash, "")
        assert {c.participant_id for c in s.exec(select(CallSession)).all()} >= {e.candidate_hash}
        assert [ev.candidate_id for ev in s.exec(select(CandidateEvent)).all()] == [e.candidate_hash]
        assert {r.id for r in s.exec(select(Recording).where(Recording.status == "deleted")).all()} == \
            {"rec_a", "rec_b"}
        receipt = s.get(DeletionReceipt, e.receipt_id)
        doc = {"receipt": receipt.body, "signature": receipt.signature, "public_key": receipt.public_key}
    for rec in ("rec_a", "rec_b"):
        assert store.list_versions(keys.recording_prefix("acme", rec)) == [] and finds(engine, WORD[rec]) == []
    assert digests(store, "acme", "rec_c") == kept and finds(engine, WORD["rec_c"]) == ["rec_c"]
    assert doc["receipt"]["subject"] == {"candidate_hash": e.candidate_hash}
    assert "cand-9" not in json.dumps(doc)
    assert doc["receipt"]["totals"]["raw_chunks"]["objects"] == 12
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(doc, indent=2))
    pub = tmp_path / "service.pub.pem"
    pub.write_text(t.signer.public_key_pem())
    ok = subprocess.run([sys.executable, "-m", "recorder", "receipt", "verify", str(path), "--public-key", str(pub)],
                        cwd=ROOT, env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("ok"), ok.stdout + ok.stderr
    raw = path.read_bytes()
    at = raw.index(b'"bytes"') + len(b'"bytes": ') + 1
    path.write_bytes(raw[:at] + (b"7" if raw[at:at + 1] != b"7" else b"8") + raw[at + 1:])  # one changed byte
    bad = subprocess.run([sys.executable, "-m", "recorder", "receipt", "verify", str(path), "--public-key", str(pub)],
                         cwd=ROOT, env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stdout.startswith("invalid"), bad.stdout + bad.stderr
    with session_scope(engine) as s:
        sent = {(d.event_type, d.payload.get("recording_id") or d.payload.get("candidate_hash"))
                for d in s.exec(select(WebhookDelivery)).all()}
    assert sent == {("recording.deleted", "rec_a"), ("recording.deleted", "rec_b"),
                    ("erasure.completed", e.candidate_hash)}
    t.broker.close()
    if world.url.startswith("sqlite"):
        assert b"cand-9" not in sqlite_file_bytes(world.url)  # the id survives only as its salted hash
    assert check_receipt(doc, t.signer.public_key_pem())[0]
    again = run_manifest(t, e.manifest_id, now=END + 2 * DAY_MS)
    assert again.receipt_id == e.receipt_id


def test_storage_enforced_legal_holds_on_an_object_lock_bucket(redis_url: str, s3_server, sqlite_url: str) -> None:
    """SeaweedFS enforces legal holds in a bucket made with object lock (RECORDER_S3_OBJECT_LOCK)."""
    from workers.retention import run_manifest, sync_holds

    name = "lock-" + hashlib.sha256(sqlite_url.encode()).hexdigest()[:12]
    store = ObjectStore(s3_server.endpoint, S3_ACCESS, S3_SECRET, name, object_lock=True)
    store.ensure_bucket()
    plain = s3_server.store(name + "-plain")
    plain.ensure_bucket()
    try:
        assert plain.legal_hold_enforced() is False
        t = _tools(sqlite_url, store, redis_url)
        assert t.enforced is True
        add_interview(t.engine, store, None, "rec_a")
        store.put_bytes(keys.chunk_key("acme", "rec_a", "cam-c", 0, "webm"), b"overwritten: an old version stays")
        set_policy(t.engine)
        h = hold(t.engine, "recording", "rec_a")
        assert sync_holds(t, "acme") >= 16
        key = keys.output_key("acme", "rec_a", "composite.mp4")
        with pytest.raises(StorageError):
            store.purge(key)  # the store itself refuses
        with session_scope(t.engine) as s:
            s.get(LegalHold, h).released_at = END
        m = plan(t.engine, store, "acme", END + 31 * DAY_MS, created_by="comp-1")
        run_manifest(t, m.id, now=END + 31 * DAY_MS)  # lifts the stale S3 holds, deletes every version
        assert store.list_versions(keys.recording_prefix("acme", "rec_a")) == []
        t.engine.dispose()
    finally:
        for st in (store, plain):
            for o in st.list_versions(""):
                try:
                    st.set_legal_hold(o.key, False, o.version_id)
                except StorageError:
                    pass
                st.purge(o.key, [o.version_id])
            drop_bucket(s3_server, st.bucket)


# ---------------------------------------------------------------- the real pipeline, then retention

@pytest.mark.slow
def test_every_key_the_workers_write_maps_to_a_kind_and_a_run_leaves_nothing(settings, engine, store, tmp_path):
    """Real `dramatiq` workers record, composite and transcribe an interview; every object key
    they wrote has a kind; then a policy run leaves nothing of it anywhere."""
    from dramatiq.brokers.redis import RedisBroker

    from core.queue import enqueue
    from tests.media import participant_clip, split_chunks
    from tests.workers.conftest import WorkerProcess, wait_for
    from workers.retention import Tools, run_manifest

    clips = {"cand": participant_clip(tmp_path / "cand.webm", 8, [(0.5, "I am a backend engineer from Lisbon.")])[0],
             "ivy": participant_clip(tmp_path / "ivy.webm", 8, [(4.5, "Tell me about Kubernetes.")])[0]}
    with session_scope(engine) as s:
        s.add(Recording(id="rec_e", org="acme", client_key="rec_e", status="recording", started_at_ms=END))
    for track, clip in clips.items():
        with session_scope(engine) as s:
            s.add(Track(recording_id="rec_e", track_id=track, participant_id=f"p-{track}", kind="av",
                        role="candidate" if track == "cand" else "interviewer", display_name=track))
        for seq, (path, start, dur) in enumerate(split_chunks(clip, tmp_path / track, chunk_s=4)):
            data = Path(path).read_bytes()
            key = keys.chunk_key("acme", "rec_e", track, seq, "webm")
            store.put_bytes(key, data, "video/webm")
            with session_scope(engine) as s:
                s.add(Chunk(recording_id="rec_e", track_id=track, seq=seq, status="stored", start_ms=END + start,
                            duration_ms=dur, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                            container="webm", object_key=key, stored_at=END))
    broker = RedisBroker(url=settings.redis_url)
    worker = WorkerProcess(settings_env(settings, RECORDER_WINDOW_MS="4000"), ["media", "transcribe", "default"],
                           tmp_path / "worker.log")
    try:
        for track in clips:
            for seq in range(2):
                enqueue(broker, "process_chunk", "rec_e", track, seq)
                enqueue(broker, "transcribe_chunk", "rec_e", track, seq)
        wait_for(lambda: _steps_done(engine, "rec_e", 8), 240, "chunks processed", on_timeout=worker.log)
        with session_scope(engine) as s:
            rec = s.get(Recording, "rec_e")
            rec.status, rec.finalized_at = "processing", END + 8000  # as ingest's finalize does
        enqueue(broker, "finalize_recording", "rec_e")
        enqueue(broker, "finalize_transcript", "rec_e")
        wait_for(lambda: _status(engine, "rec_e") in ("ready", "failed"), 300, "ready", on_timeout=worker.log)
        assert _status(engine, "rec_e") == "ready", worker.log()
    finally:
        worker.stop()
        broker.close()
    written = store.list_versions(keys.recording_prefix("acme", "rec_e"))
    kinds = {o.key: kind_of_key(o.key) for o in written}  # raises for a key no kind claims
    assert set(kinds.values()) == {"raw_chunks", "media_outputs", "transcripts"}, kinds
    assert finds(engine, "Lisbon") == ["rec_e"]
    set_policy(engine, rules={k: [{"days": 0, "after": "end"}] for k in KINDS})
    t = Tools(engine, store, redis_lib.Redis.from_url(settings.redis_url), Signer.generate())
    m = plan(engine, store, "acme", END + DAY_MS, created_by="comp-1")
    run_manifest(t, m.id, now=END + DAY_MS)
    assert store.list_versions(keys.recording_prefix("acme", "rec_e")) == []
    assert finds(engine, "Lisbon") == [] and set(rows_of(engine, "rec_e").values()) == {0}
    assert b"lisbon" not in sqlite_file_bytes(settings.database_url).lower()
    assert redis_keys(t.redis, "rec_e") == []
    t.redis.close()


def _steps_done(engine, rec: str, n: int) -> bool:
    with session_scope(engine) as s:
        steps = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == rec)).all()
    finished = [st for st in steps if st.status in ("done", "failed")]
    return sum(1 for st in finished if st.step.startswith(("chunk.", "transcript."))) >= n


def _status(engine, rec: str) -> str:
    with session_scope(engine) as s:
        return s.get(Recording, rec).status
