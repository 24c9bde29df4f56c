"""Retention actors: run frozen manifests (policy runs, erasures) and the periodic tick.

    apply_retention(manifest_id, actor)   run a manifest (`run_manifest`)
    retention_tick(chain)                 every `retention_tick_s` (a self-rescheduling chain,
                                          kicked by every worker at boot, as `audit_checkpoint`):
                                          finish interrupted runs, retry deferred erasures, preview
                                          each org's policy and run it where runs are automatic,
                                          re-apply S3 legal holds, sweep stale upload spool files
    sync_legal_holds(org, recording_ids)  where the store enforces legal holds: S3 legal hold on
                                          every object version of held recordings, off elsewhere

One item (recording × kind) at a time, so a SIGKILL anywhere leaves a state the re-run finishes:

    1. claim (one transaction; the recording row locked, as hold creation locks it): still due
       and no hold now → `deleting`; else `skipped` (held / not_due / artifacts_remain)
    2. objects: every version of every key of the kind under the recording's prefix, with
       what the preview listed (a missing key is fine: a killed run got there first)
    3. rows (one transaction): the kind's rows (record: tracks, steps, grants, matters; the
       recording scrubbed to a tombstone) → `deleted`
Then the run's receipt (signed), tombstones pointing at it, the erasure closed, `done`.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select

from core import audit, keys, webhooks
from core.artifacts import (ITEM_KINDS, KINDS, RECORD, active_holds, delete_rows, facts, kind_has_rows,
                            kind_of_key, plan, plan_erasure, rules_of, run_summary, take_stock)
from core.db import session_scope
from core.errors import Conflict, NotFound, QueueError, StorageError
from core.logging import bound, get_logger
from core.models import (DeletionReceipt, ErasureRequest, ManifestItem, OrgSettings, Recording,
                         RecordingTombstone, RetentionManifest, RetentionPolicy)
from core.models._types import now_ms
from core.queue import ACTOR_QUEUES
from core.retention import canonical, due_dates, holding, receipt_body, record_due
from core.signing import Signer
from core.storage import ObjectStore
from workers import broker as res
from workers import periodic
from workers.periodic import Chain, KickChain
from workers.policy import actor

log = get_logger("workers.retention")
SYSTEM = "system:retention"  # the actor of tick-made manifests and runs
PURGE_THREADS = 8
CHAIN = Chain("retention_tick", "retention:tick:chain")
CHAIN_KEY = CHAIN.key


@dataclass
class Tools:
    """What a run touches: the database, the bucket, Redis (pipeline keys), the signing key."""

    engine: Engine
    store: ObjectStore
    redis: Optional[redis.Redis]
    signer: Any  # a `core.signing.Signer` (or anything with sign, public_key_pem, key_id)
    enforced: Optional[bool] = None  # the store refuses to delete objects under legal hold; None: probe
    broker: Any = None  # for webhooks (recording.deleted, erasure.completed); None: none sent

    def holds_enforced(self) -> bool:
        if self.enforced is None:
            self.enforced = self.store.legal_hold_enforced()
        return self.enforced


class _KeyOnFirstUse:
    """The service's signing key, loaded (or, locally, made) only when a receipt is signed."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings

    @property
    def _signer(self) -> Signer:
        if not hasattr(self, "_loaded"):
            self._loaded = Signer.from_settings(self._settings)
        return self._loaded

    def sign(self, data: bytes) -> str:
        return self._signer.sign(data)

    def public_key_pem(self) -> str:
        return self._signer.public_key_pem()

    @property
    def key_id(self) -> str:
        return self._signer.key_id


# ---------------------------------------------------------------- one manifest

def run_manifest(t: Tools, manifest_id: str, *, actor: Any = SYSTEM, now: Optional[int] = None) -> RetentionManifest:
    """Delete what the manifest lists and is still due (idempotent; resumes a killed run).
    409 `not_approved` for a manifest waiting for approval."""
    now = now_ms() if now is None else now
    with session_scope(t.engine) as s:
        m = s.get(RetentionManifest, manifest_id)
        if m is None:
            raise NotFound(f"manifest {manifest_id} not found", code="unknown_manifest")
        runnable(m)
        if m.status == "done":
            return m
        if m.status == "pending":
            m.status, m.started_at = "running", now
            s.add(m)
        ids = [i.id for i in sorted(s.exec(select(ManifestItem).where(ManifestItem.manifest_id == m.id)).all(),
                                    key=lambda i: (i.recording_id, ITEM_KINDS.index(i.kind)))]
    with bound(manifest_id=manifest_id, phase="retention.run"):
        for item_id in ids:
            _run_item(t, m, item_id, now)
        return _finish(t, manifest_id, actor, now)


def runnable(m: RetentionManifest) -> None:
    """409 unless the manifest may run: approved where the org wants approval."""
    if m.needs_approval and not m.approved_by:
        raise Conflict("this manifest waits for a compliance user's approval (not its creator's)",
                       code="not_approved")


def _run_item(t: Tools, m: RetentionManifest, item_id: int, now: int) -> None:
    item = _claim(t, m, item_id, now)
    if item is None:
        return
    if item.kind == RECORD and _leftovers(t, m.org, item.recording_id):
        _skip(t, item_id, "artifacts_remain")
        return
    gone = _purge_objects(t, m.org, item)
    if item.kind == RECORD:
        _forget_redis(t.redis, item.recording_id)
    _delete_rows(t, m, item_id, gone, now)


def _claim(t: Tools, m: RetentionManifest, item_id: int, now: int) -> Optional[ManifestItem]:
    """`due` → `deleting` if still due and unheld (re-checked under the recording's lock);
    a `deleting` item is a killed run's: resume it."""
    with session_scope(t.engine) as s:
        took = s.connection().execute(text("UPDATE manifestitem SET status = 'deleting' WHERE id = :id "
                                           "AND status = 'due'"), {"id": item_id}).rowcount
        item = s.get(ManifestItem, item_id)
        if not took:
            return item if item is not None and item.status == "deleting" else None
        s.exec(select(Recording).where(Recording.id == item.recording_id).with_for_update()).first()
        reason, held = _not_due(s, m, item, now)
        if reason:
            item.status, item.note, item.held_by, item.done_at = "skipped", reason, held or None, now
            s.add(item)
            return None
        return item


def _not_due(s: Session, m: RetentionManifest, item: ManifestItem, now: int) -> tuple[str, list[str]]:
    """Why the item must not be deleted now ("" = it may): a hold, or no longer due."""
    found = facts(s, m.org, [item.recording_id])
    if not found:
        return "recording_gone", []
    f = found[0]
    held = holding(active_holds(s, m.org), f.subject)
    if held:
        return "held", held
    if m.purpose == "erasure":
        return "", []
    due = due_dates(rules_of(s, m.org), KINDS, f.end_ms, f.outcome)
    if item.kind == RECORD:
        when = record_due(due, {k for k in KINDS if kind_has_rows(s, item.recording_id, k)})
    else:
        when = due[item.kind]
    return ("not_due", []) if when is None or when > now else ("", [])


def _skip(t: Tools, item_id: int, reason: str) -> None:
    with session_scope(t.engine) as s:
        item = s.get(ManifestItem, item_id)
        item.status, item.note, item.done_at = "skipped", reason, now_ms()
        s.add(item)


def _leftovers(t: Tools, org: str, recording_id: str) -> bool:
    with session_scope(t.engine) as s:
        return bool(take_stock(s, t.store, org, recording_id).present())


def _purge_objects(t: Tools, org: str, item: ManifestItem) -> list[list[Any]]:
    """Delete every version of every key of the item's kind; returns what was deleted (the
    preview's listing plus anything found now), as [[key, bytes], …]."""
    found: dict[str, tuple[int, list[Optional[str]]]] = {}
    for o in t.store.list_versions(keys.recording_prefix(org, item.recording_id)):
        if _kind(o.key) == item.kind:
            size, versions = found.get(o.key, (0, []))
            found[o.key] = (size + o.size, versions + [o.version_id])

    def purge(key: str) -> None:
        versions = found[key][1]
        if t.holds_enforced():  # the database found no hold: lift a stale S3 hold (its sync may lag)
            for version in versions:
                try:
                    t.store.set_legal_hold(key, False, version)
                except StorageError:
                    pass  # a delete marker has no hold
        t.store.purge(key, versions)

    with ThreadPoolExecutor(PURGE_THREADS) as pool:
        list(pool.map(purge, sorted(found)))
    listed = {key: size for key, size in (item.objects or [])}
    listed.update({key: size for key, (size, _) in found.items()})
    return [[key, size] for key, size in sorted(listed.items())]


def _kind(key: str) -> str:
    try:
        return kind_of_key(key)
    except ValueError:
        return RECORD  # unclaimed keys under the prefix go with the recording itself


def _delete_rows(t: Tools, m: RetentionManifest, item_id: int, gone: list[list[Any]], now: int) -> None:
    with session_scope(t.engine) as s:
        item = s.get(ManifestItem, item_id)
        if item is None or item.status != "deleting":
            return
        _secure(s)
        if item.kind == RECORD:
            rows = _tombstone(s, m, item.recording_id, now)
        else:
            rows = delete_rows(s, item.recording_id, item.kind)
        item.status, item.deleted_objects, item.deleted_rows, item.done_at = "deleted", gone, rows, now
        s.add(item)
        if item.kind == RECORD:
            audit.record(t.engine, session=s, org=m.org, action=audit.RECORDING_DELETE, actor=SYSTEM,
                         object_type="recording", object_id=item.recording_id,
                         detail={"manifest_id": m.id, "purpose": m.purpose})


def _secure(s: Session) -> None:
    """On SQLite, deleted and overwritten content is zeroed in the file (not left in free space)."""
    if s.get_bind().dialect.name == "sqlite":
        s.connection().exec_driver_sql("PRAGMA secure_delete = ON")


def _tombstone(s: Session, m: RetentionManifest, recording_id: str, now: int) -> dict[str, int]:
    """The recording keeps only id, org, dates and its tombstone row (→ receipt)."""
    rows = delete_rows(s, recording_id, RECORD)
    rec = s.get(Recording, recording_id)
    if rec is not None:
        rec.title, rec.client_key, rec.created_by = "", rec.id, ""
        rec.vocabulary = rec.outputs = rec.error = None
        rec.status = "deleted"
        s.add(rec)
        rows["recording"] = 1
    if s.get(RecordingTombstone, recording_id) is None:
        s.add(RecordingTombstone(recording_id=recording_id, org=m.org, deleted_at=now, manifest_id=m.id))
    return rows


# ---------------------------------------------------------------- Redis: what the pipeline keeps per recording

def _forget_redis(client: Optional[redis.Redis], recording_id: str) -> int:
    """Chunk rate-limit counters, window render locks, dead-lettered messages naming it."""
    if client is None:
        return 0
    gone = 0
    for pattern in (f"rl:chunks:{recording_id}:*", f"recorder:lock:window:{recording_id}:*"):
        for key in client.scan_iter(match=pattern, count=500):
            gone += client.delete(key)
    needle = recording_id.encode()
    for queue in set(ACTOR_QUEUES.values()):
        xq = f"dramatiq:{queue}.XQ"
        for message_id, raw in client.hscan_iter(f"{xq}.msgs", count=500):
            if needle in raw:
                client.hdel(f"{xq}.msgs", message_id)
                client.zrem(xq, message_id)
                gone += 1
    return gone


# ---------------------------------------------------------------- the end of a run

def _finish(t: Tools, manifest_id: str, actor: Any, now: int) -> RetentionManifest:
    with session_scope(t.engine) as s:
        m = s.get(RetentionManifest, manifest_id)
        items = list(s.exec(select(ManifestItem).where(ManifestItem.manifest_id == manifest_id)).all())
        if m.status == "done" or any(i.status in ("due", "deleting") for i in items):
            return m
        salt = s.get(RetentionPolicy, m.org).salt  # type: ignore[union-attr]
        erasure = s.get(ErasureRequest, m.erasure_id) if m.erasure_id else None
    deleted = any(i.status == "deleted" for i in items)
    receipt_id = m.receipt_id or (_receipt(t, m, items, erasure, salt, actor, now)
                                  if deleted or erasure is not None else None)
    with session_scope(t.engine) as s:
        _secure(s)
        took = s.connection().execute(text("UPDATE retentionmanifest SET status = 'done' WHERE id = :id "
                                           "AND status != 'done'"), {"id": manifest_id}).rowcount
        m = s.get(RetentionManifest, manifest_id)
        if not took:
            return m  # another run of it finished first
        m.finished_at, m.receipt_id = now, receipt_id
        m.summary = {**(m.summary or {}), "run": run_summary(items)}
        s.add(m)
        for i in items:
            if i.kind == RECORD and i.status == "deleted":
                s.connection().execute(text("UPDATE recordingtombstone SET receipt_id = :r WHERE recording_id = :rid"),
                                       {"r": receipt_id, "rid": i.recording_id})
        if erasure is not None:
            _close_erasure(s, t, m, items, receipt_id, now)
        audit.record(t.engine, session=s, org=m.org, action=audit.RETENTION_RUN, actor=actor,
                     object_type="manifest", object_id=m.id,
                     detail={"receipt_id": receipt_id, "purpose": m.purpose, **m.summary["run"]})
    # personal text (transcripts, names, titles) may sit in free pages: rebuild the file then
    _vacuum(t.engine, rebuild=m.purpose == "erasure" or any(
        i.status == "deleted" and i.kind in ("transcripts", "quality", RECORD) for i in items))
    _notify(t, m, items)
    log.info("retention_run_done", manifest_id=manifest_id, receipt_id=receipt_id, **m.summary["run"])
    return m


def _notify(t: Tools, m: RetentionManifest, items: list[ManifestItem]) -> None:
    """Webhooks `recording.deleted` (per tombstone) and `erasure.completed` (ids and hashes only)."""
    if t.broker is None:
        return
    events = [("recording.deleted", {"recording_id": i.recording_id, "manifest_id": m.id, "receipt_id": m.receipt_id})
              for i in items if i.kind == RECORD and i.status == "deleted"]
    if m.erasure_id:
        with session_scope(t.engine) as s:
            e = s.get(ErasureRequest, m.erasure_id)
        if e is not None and e.status == "complete":
            events.append(("erasure.completed", {"erasure_request_id": e.id, "candidate_hash": e.candidate_hash,
                                                 "receipt_id": e.receipt_id}))
    try:
        for event_type, data in events:
            webhooks.emit(t.engine, t.broker, m.org, event_type, data)
    except QueueError as exc:  # the deletion stands; a lost notification is logged
        log.warning("retention_webhook_not_queued", error=exc.message)


def _close_erasure(s: Session, t: Tools, m: RetentionManifest, items: list[ManifestItem], receipt_id: Optional[str],
                   now: int) -> None:
    """All deleted: the candidate's id is replaced by its salted hash everywhere it is left.
    Something held since the request: deferred (the tick retries once the holds are gone)."""
    e = s.get(ErasureRequest, m.erasure_id)
    held = sorted({h for i in items if i.status == "skipped" for h in (i.held_by or [])})
    e.receipt_id = receipt_id
    if held or any(i.status == "skipped" for i in items):
        e.status, e.held_by = "deferred", held or None
        s.add(e)
        return
    if e.candidate_id:
        _scrub_candidate(s, t.redis, m.org, e.candidate_id, e.candidate_hash)
    e.status, e.candidate_id, e.completed_at, e.held_by = "complete", None, now, None
    s.add(e)
    audit.record(t.engine, session=s, org=m.org, action=audit.ERASURE_COMPLETE, actor=SYSTEM,
                 object_type="erasure", object_id=e.id,
                 detail={"candidate_hash": e.candidate_hash, "receipt_id": receipt_id})


def _scrub_candidate(s: Session, client: Optional[redis.Redis], org: str, candidate_id: str, hashed: str) -> None:
    """Rooms, call sessions, room history, outcome events, released holds: id → salted hash."""
    conn = s.connection()
    rooms = conn.execute(text("SELECT id, slot_id FROM room WHERE org = :org AND candidate_id = :cid"),
                         {"org": org, "cid": candidate_id}).all()
    in_org = "room_id IN (SELECT id FROM room WHERE org = :org)"
    p = {"org": org, "cid": candidate_id, "h": hashed}
    conn.execute(text("UPDATE room SET candidate_id = :h, title = '', vocabulary = NULL "
                      "WHERE org = :org AND candidate_id = :cid"), p)
    conn.execute(text(f"UPDATE callsession SET participant_id = :h, display_name = '' "
                      f"WHERE participant_id = :cid AND {in_org}"), p)
    conn.execute(text(f"UPDATE roomtransition SET actor = :h WHERE actor = :cid AND {in_org}"), p)
    conn.execute(text("UPDATE candidateevent SET candidate_id = :h WHERE org = :org AND candidate_id = :cid"), p)
    conn.execute(text("UPDATE legalhold SET target = :h WHERE org = :org AND scope = 'candidate' "
                      "AND target = :cid"), p)
    if client is not None:
        for room_id, slot_id in rooms:  # signaling state of the room, and its idempotency lease
            for key in client.scan_iter(match=f"sig:{{{room_id}}}:*", count=500):
                client.delete(key)
            client.delete(_room_lease_key(org, slot_id, candidate_id))


def _room_lease_key(org: str, slot_id: str, candidate_id: str) -> str:
    """`signaling.leases.room_lease_key` (workers may not import signaling): keep them equal."""
    digest = hashlib.sha256(json.dumps([org, slot_id, candidate_id]).encode()).hexdigest()[:32]
    return f"sig:lease:{digest}"


def _receipt(t: Tools, m: RetentionManifest, items: list[ManifestItem], erasure: Optional[ErasureRequest],
             salt: str, actor: Any, now: int) -> str:
    """Sign and store the run's receipt (once: a re-run finds the manifest's receipt id)."""
    receipt_id = f"rcpt_{m.id.removeprefix('rman_')}"  # one receipt per manifest, whoever gets there first
    body = receipt_body(receipt_id=receipt_id, org=m.org, salt=salt, manifest=m.model_dump(),
                        items=[i.model_dump() for i in items], completed_at=now, signer_key_id=t.signer.key_id,
                        requested_by=erasure.requested_by if erasure else m.created_by, approved_by=m.approved_by,
                        run_by=str(getattr(actor, "sub", actor)),
                        candidate_hash=erasure.candidate_hash if erasure else None)
    try:
        with session_scope(t.engine) as s:
            if s.get(DeletionReceipt, receipt_id) is None:
                s.add(DeletionReceipt(id=receipt_id, org=m.org, manifest_id=m.id, erasure_id=m.erasure_id,
                                      body=body, signature=t.signer.sign(canonical(body)),
                                      public_key=t.signer.public_key_pem(), created_at=now))
    except IntegrityError:
        pass  # a concurrent run of the same manifest stored it first
    return receipt_id


def receipt_document(r: DeletionReceipt) -> dict[str, Any]:
    """The downloadable receipt: checked offline by `recorder receipt verify`."""
    return {"receipt": r.body, "signature": r.signature, "public_key": r.public_key}


def _vacuum(engine: Engine, rebuild: bool) -> None:
    """Deleted rows leave the files too. SQLite: FTS5 segments merged (its shadow tables then
    hold no deleted text), the file rebuilt (`rebuild`: VACUUM drops free pages and stale
    copies of updated rows), the WAL checkpointed and truncated. Postgres: VACUUM (space
    reusable, not overwritten: see the README)."""
    try:
        if engine.dialect.name == "sqlite":
            with engine.begin() as conn:
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
                conn.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES('optimize')")
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                if rebuild:
                    conn.exec_driver_sql("VACUUM")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("search_doc", "transcriptsegment", "transcriptversion", "transcripttrackstate", "chunk",
                          "track", "room", "callsession", "erasurerequest"):
                conn.exec_driver_sql(f"VACUUM {table}")
    except DBAPIError as exc:  # busy: the rows are gone; the next run compacts the files
        log.warning("retention_vacuum_skipped", error_class=type(exc.orig).__name__)


# ---------------------------------------------------------------- S3 legal holds, spool files

def sync_holds(t: Tools, org: str, recording_ids: Optional[list[str]] = None) -> int:
    """S3 legal hold on every version of every object of held recordings, off on the others
    named (all: only held ones are touched). Returns objects changed."""
    with session_scope(t.engine) as s:
        holds, subjects = active_holds(s, org), facts(s, org, recording_ids)
    changed = 0
    for f in subjects:
        on = bool(holding(holds, f.subject))
        if recording_ids is None and not on:
            continue
        for o in t.store.list_versions(keys.recording_prefix(org, f.recording_id)):
            try:
                t.store.set_legal_hold(o.key, on, o.version_id)
                changed += 1
            except StorageError:
                pass  # a delete marker has no hold; an unreachable store: the database still holds it
    return changed


def sweep_spool(directory: Optional[Path], max_age_s: int, now_s: float) -> int:
    """Upload spool files a killed request left behind (they name no recording: by age)."""
    if directory is None or not directory.is_dir():
        return 0
    gone = 0
    for path in directory.glob("chunk-*.part"):
        try:
            if now_s - path.stat().st_mtime > max_age_s:
                path.unlink()
                gone += 1
        except FileNotFoundError:
            pass  # its upload finished meanwhile
    return gone


# ---------------------------------------------------------------- the tick

def tick(t: Tools, now: int, spool: Optional[Path] = None, spool_max_age_s: int = 86400) -> list[str]:
    """One retention pass (idempotent): finish interrupted and approved runs, retry deferred
    erasures, preview each org's policy (and run it where runs are automatic). Returns the
    manifests run."""
    with session_scope(t.engine) as s:
        orgs = list(s.exec(select(RetentionPolicy.org)).all())
        waiting = s.exec(select(RetentionManifest).where(RetentionManifest.status.in_(("pending", "running")))).all()
        resume = [m.id for m in waiting if m.status == "running" or m.purpose == "erasure"
                  or (m.needs_approval and m.approved_by)]
        unapproved = {m.org for m in waiting if m.needs_approval and not m.approved_by and m.created_by == SYSTEM}
        deferred = list(s.exec(select(ErasureRequest.id).where(ErasureRequest.status == "deferred")).all())
    ran = [run_manifest(t, mid, now=now).id for mid in resume]
    for erasure_id in deferred:
        e = plan_erasure(t.engine, t.store, erasure_id, now)
        if e.manifest_id and e.status == "running":
            ran.append(run_manifest(t, e.manifest_id, now=now).id)
    for org in orgs:
        ran += _policy_pass(t, org, now, skip=org in unapproved)
    sweep_spool(spool, spool_max_age_s, now / 1000)
    return ran


def _policy_pass(t: Tools, org: str, now: int, skip: bool) -> list[str]:
    with session_scope(t.engine) as s:
        settings = s.get(OrgSettings, org)
        approval = bool(settings and settings.retention_approval)
        held = bool(active_holds(s, org))
    if held and t.holds_enforced():
        sync_holds(t, org)
    if approval and skip:
        return []  # one manifest waits for review at a time
    m = plan(t.engine, t.store, org, now, created_by=SYSTEM, needs_approval=approval, keep_empty=False)
    if m is None:
        return []
    audit.record(t.engine, org=org, action=audit.RETENTION_PREVIEW, actor=SYSTEM, object_type="manifest",
                 object_id=m.id, detail=m.summary)
    return [] if approval else [run_manifest(t, m.id, now=now).id]


def schedule_next(broker: Any, client: redis.Redis, token: str, interval_s: int) -> Optional[str]:
    """Enqueue the next tick if `token` is the chain's (`workers.periodic`)."""
    return periodic.schedule_next(CHAIN, broker, client, token, interval_s)


# ---------------------------------------------------------------- actors

@lru_cache
def tools() -> Tools:
    return Tools(res.engine(), res.store(), res.broker.client, _KeyOnFirstUse(res.settings), broker=res.broker)


@actor("default")
def apply_retention(manifest_id: str, actor: str = SYSTEM) -> None:
    """Run one manifest (policy run or erasure); a re-delivered message finishes or no-ops."""
    run_manifest(tools(), manifest_id, actor=actor)


@actor("default")
def retention_tick(chain: str = "") -> None:
    """Schedule the next tick (if this message is the chain's), then one retention pass."""
    schedule_next(res.broker, res.broker.client, chain, res.settings.retention_tick_s)
    tick(tools(), now_ms(), Path(res.settings.data_dir) / "spool", res.settings.retention_spool_max_age_s)


@actor("default")
def sync_legal_holds(org: str, recording_ids: Optional[list[str]] = None) -> None:
    """Where the store enforces legal holds: bring its holds in line with the database's."""
    t = tools()
    if t.holds_enforced():
        sync_holds(t, org, recording_ids)


res.broker.add_middleware(KickChain(CHAIN, lambda: res.settings.retention_tick_s))
