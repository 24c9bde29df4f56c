"""Artifact kinds — the unit of retention — what a recording holds of each, and the plan
(a frozen manifest) of what a policy or an erasure would delete.

    kind            objects under {org}/recordings/{rec}/              rows
    raw_chunks      chunks/                                            chunk
    quarantine      quarantine/                                        rejectedchunk
    media_outputs   windows/, outputs/ (but the transcript keys)       recording.outputs media fields
    transcripts     outputs/transcripts/ (final + live exports),       transcriptversion, transcriptsegment,
                    outputs/transcript.json, work/transcript/          transcripttrackstate, search_doc (+ FTS)
    quality         (none)                                             qualitysample, mediagap
    record          the recording itself, deleted last (tombstone):    track, processingstep, recordinggrant,
                    any key under its prefix no kind claims            recordingmatter; recording fields cleared

Every key the pipeline writes maps to exactly one kind (`kind_of_key`), every table to one
(`TABLE_KINDS`), so a policy, a hold or an erasure enumerates everything it touches.
In a versioned (object-lock) bucket every version of a key counts and is deleted.

The date math is `core.retention` (pure); the deleting is `workers.retention`. This module
is shared by both sides: the API previews, the workers preview and re-check.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from core import keys
from core.db import session_scope
from core.models import ErasureRequest, LegalHold, ManifestItem, Recording, RetentionManifest, RetentionPolicy
from core.retention import (Hold, Outcome, Rule, Subject, due_dates, holding, outcome, parse_rules,
                            record_due, recording_end, salted_hash)
from core.storage import ObjectStore

__all__ = ["KINDS", "RECORD", "ITEM_KINDS", "TABLE_KINDS", "OUTPUT_FIELDS", "UnknownArtifact", "kind_of_key",
           "Stock", "take_stock", "kind_has_rows", "delete_rows", "Facts", "facts", "active_holds", "policy_row",
           "rules_of", "plan", "summarize", "run_summary", "recording_retention", "candidate_recordings",
           "covered_recordings", "request_erasure", "plan_erasure"]

RAW_CHUNKS, QUARANTINE, MEDIA_OUTPUTS, TRANSCRIPTS, QUALITY = KINDS = (
    "raw_chunks", "quarantine", "media_outputs", "transcripts", "quality")
RECORD = "record"  # the recording's own metadata: its item goes last and leaves a tombstone
ITEM_KINDS = (*KINDS, RECORD)

# (path under the recording prefix, kind): most specific first; a "/" ending means a folder.
_KEY_KINDS = (("chunks/", RAW_CHUNKS), ("quarantine/", QUARANTINE), ("windows/", MEDIA_OUTPUTS),
              ("outputs/transcripts/", TRANSCRIPTS), ("outputs/transcript.json", TRANSCRIPTS),
              ("work/transcript/", TRANSCRIPTS), ("outputs/", MEDIA_OUTPUTS))
_KEY = re.compile(r"^([^/]+)/recordings/([^/]+)/(.+)$")
# kind → tables holding its rows (keyed by recording_id), in deletion order
_TABLES: dict[str, tuple[str, ...]] = {
    RAW_CHUNKS: ("chunk",), QUARANTINE: ("rejectedchunk",), MEDIA_OUTPUTS: (),
    TRANSCRIPTS: ("search_doc", "transcriptsegment", "transcripttrackstate", "transcriptversion"),
    QUALITY: ("qualitysample", "mediagap"),  # core.models.quality (where migrated)
    RECORD: ("recordingmatter", "recordinggrant", "processingstep", "track"),
}
TABLE_KINDS = {table: kind for kind, tables in _TABLES.items() for table in tables}
TABLE_KINDS["search_fts"] = TRANSCRIPTS  # SQLite's FTS5 mirror of search_doc (kept by triggers)
# fields of `Recording.outputs` that point at a kind's objects
OUTPUT_FIELDS = {MEDIA_OUTPUTS: ("composite", "hls", "poster", "thumbnails", "windows", "media_gaps", "labels",
                                 "sources", "duration_ms"),
                 TRANSCRIPTS: ("transcript",)}


class UnknownArtifact(ValueError):
    """A key no artifact kind claims (a bug in whatever wrote it)."""


def kind_of_key(key: str) -> str:
    """The artifact kind of an object key under `{org}/recordings/{rec}/`."""
    m = _KEY.match(key)
    if m is None:
        raise UnknownArtifact(f"not a recording object key: {key!r}")
    rest = m.group(3)
    for prefix, kind in _KEY_KINDS:
        if rest.startswith(prefix) if prefix.endswith("/") else rest == prefix:
            return kind
    raise UnknownArtifact(f"no artifact kind claims {key!r}")


_SEEN: set[tuple[str, str]] = set()  # (database url, table) found to exist


def _tables(conn: Connection, kind: str) -> tuple[str, ...]:
    """The kind's tables that this database has (a table a later revision adds may be missing)."""
    url, out = str(conn.engine.url), []
    for table in _TABLES[kind]:
        if (url, table) not in _SEEN and inspect(conn).has_table(table):
            _SEEN.add((url, table))
        if (url, table) in _SEEN:
            out.append(table)
    return tuple(out)


def _kind_or_none(key: str) -> Optional[str]:
    try:
        return kind_of_key(key)
    except UnknownArtifact:
        return None


# ---------------------------------------------------------------- what a recording holds

@dataclass
class Stock:
    """What one recording holds now, by kind: objects (key → bytes over all versions, and
    their version ids), rows (table → count)."""

    objects: dict[str, dict[str, int]] = field(default_factory=dict)
    versions: dict[str, list[Optional[str]]] = field(default_factory=dict)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)

    def present(self) -> set[str]:
        """Artifact kinds with anything left (the record is not one)."""
        return {k for k in KINDS if self.objects.get(k) or any(self.rows.get(k, {}).values())}

    def listing(self, kind: str) -> list[list[Any]]:
        return [[key, size] for key, size in sorted(self.objects.get(kind, {}).items())]


def take_stock(s: Session, store: ObjectStore, org: str, recording_id: str) -> Stock:
    """List the recording's prefix (every version) and count its rows, by kind."""
    stock = Stock()
    for o in store.list_versions(keys.recording_prefix(org, recording_id)):
        kind = _kind_or_none(o.key) or RECORD
        sizes = stock.objects.setdefault(kind, {})
        sizes[o.key] = sizes.get(o.key, 0) + o.size
        stock.versions.setdefault(o.key, []).append(o.version_id)
    conn = s.connection()
    for kind in _TABLES:
        stock.rows[kind] = {t: int(conn.execute(text(f"SELECT count(*) FROM {t} WHERE recording_id = :rid"),
                                                {"rid": recording_id}).scalar_one()) for t in _tables(conn, kind)}
    rec = s.get(Recording, recording_id)
    outputs = (rec.outputs or {}) if rec is not None else {}
    for kind, names in OUTPUT_FIELDS.items():
        stock.rows[kind]["recording.outputs"] = sum(1 for n in names if n in outputs)
    return stock


def kind_has_rows(s: Session, recording_id: str, kind: str) -> bool:
    conn = s.connection()
    return any(conn.execute(text(f"SELECT 1 FROM {t} WHERE recording_id = :rid LIMIT 1"), {"rid": recording_id}).first()
               for t in _tables(conn, kind))


def delete_rows(s: Session, recording_id: str, kind: str) -> dict[str, int]:
    """Delete the kind's rows of one recording (in the caller's transaction); counts per table."""
    conn, done = s.connection(), {}
    for table in _tables(conn, kind):
        done[table] = conn.execute(text(f"DELETE FROM {table} WHERE recording_id = :rid"),
                                   {"rid": recording_id}).rowcount or 0
    rec = s.get(Recording, recording_id)
    names = OUTPUT_FIELDS.get(kind, ())
    if rec is not None and names and rec.outputs:
        done["recording.outputs"] = sum(1 for n in names if n in rec.outputs)
        rec.outputs = {k: v for k, v in rec.outputs.items() if k not in names} or None
        s.add(rec)
    return done


# ---------------------------------------------------------------- what is due, what is held

@dataclass(frozen=True)
class Facts:
    """What retention needs to know about one recording."""

    recording_id: str
    org: str
    status: str
    end_ms: int
    subject: Subject
    outcome: Optional[Outcome]
    candidate_id: Optional[str]  # its room's candidate (events count for them)


def policy_row(s: Session, org: str) -> RetentionPolicy:
    """The org's policy row, made (no rules, a fresh salt) on first use."""
    row = s.get(RetentionPolicy, org)
    if row is None:
        row = RetentionPolicy(org=org, rules={}, salt=secrets.token_hex(32))
        s.add(row)
        s.flush()
    return row


def rules_of(s: Session, org: str) -> tuple[Rule, ...]:
    row = s.get(RetentionPolicy, org)
    return parse_rules(row.rules or {}, KINDS) if row is not None else ()


def active_holds(s: Session, org: str) -> list[Hold]:
    rows = s.exec(select(LegalHold).where(LegalHold.org == org, LegalHold.released_at == None)).all()  # noqa: E711
    return [Hold(r.id, r.scope, r.target) for r in rows]


def facts(s: Session, org: str, recording_ids: Optional[Iterable[str]] = None) -> list[Facts]:
    """Facts of the org's recordings that are not tombstones (all, or these)."""
    params: dict[str, Any] = {"org": org}
    only = ""
    if recording_ids is not None:
        ids = list(recording_ids)
        if not ids:
            return []
        names = [f":r{i}" for i in range(len(ids))]
        params.update({f"r{i}": rid for i, rid in enumerate(ids)})
        only = f" AND r.id IN ({', '.join(names)})"
    conn = s.connection()
    recs = conn.execute(text("SELECT r.id, r.status, r.room_id, r.finalized_at, r.last_chunk_at, r.created_at, "
                             "room.candidate_id FROM recording r LEFT JOIN room ON room.id = r.room_id "
                             f"WHERE r.org = :org AND r.status != 'deleted'{only} ORDER BY r.created_at, r.id"),
                        params).all()
    people: dict[str, set[str]] = {}
    for rid, pid in conn.execute(text("SELECT t.recording_id, t.participant_id FROM track t JOIN recording r "
                                      f"ON r.id = t.recording_id WHERE r.org = :org AND t.participant_id != ''{only}"),
                                 params):
        people.setdefault(rid, set()).add(pid)
    matters: dict[str, set[str]] = {}
    for rid, matter in conn.execute(text("SELECT recording_id, matter FROM recordingmatter WHERE org = :org"),
                                    {"org": org}):
        matters.setdefault(rid, set()).add(matter)
    events: dict[str, list[tuple[str, int]]] = {}
    for cid, type_, at in conn.execute(text("SELECT candidate_id, type, at FROM candidateevent WHERE org = :org "
                                            "ORDER BY id"), {"org": org}):
        events.setdefault(cid, []).append((type_, int(at)))
    out = []
    for rid, status, room_id, finalized, last_chunk, created, cand in recs:
        candidates = people.get(rid, set()) | ({cand} if cand else set())
        subject = Subject(rid, room_id, frozenset(candidates), frozenset(matters.get(rid, ())))
        out.append(Facts(rid, org, status, recording_end(finalized, last_chunk, created), subject,
                         outcome(events.get(cand, ())) if cand else None, cand))
    return out


def candidate_recordings(s: Session, org: str, candidate_id: str) -> list[str]:
    """Recordings the candidate took part in: their room's candidate, or a track's participant."""
    rows = s.connection().execute(text(
        "SELECT r.id FROM recording r LEFT JOIN room ON room.id = r.room_id WHERE r.org = :org "
        "AND r.status != 'deleted' AND (room.candidate_id = :cid OR EXISTS (SELECT 1 FROM track t "
        "WHERE t.recording_id = r.id AND t.participant_id = :cid)) ORDER BY r.created_at, r.id"),
        {"org": org, "cid": candidate_id}).all()
    return [r[0] for r in rows]


def covered_recordings(s: Session, org: str, hold: Hold) -> list[str]:
    return [f.recording_id for f in facts(s, org) if holding([hold], f.subject)]


def recording_retention(s: Session, org: str, recording_id: str) -> dict[str, Any]:
    """Each kind's deletion date and the holds keeping the recording (rows only: no S3)."""
    (f,) = facts(s, org, [recording_id])
    due = due_dates(rules_of(s, org), KINDS, f.end_ms, f.outcome)
    held = holding(active_holds(s, org), f.subject)
    present = {k for k in KINDS if kind_has_rows(s, recording_id, k)}
    outputs = s.get(Recording, recording_id).outputs or {}  # type: ignore[union-attr]
    present |= {k for k, names in OUTPUT_FIELDS.items() if any(n in outputs for n in names)}
    kinds = {k: {"due_at": due[k], "held_by": held} for k in KINDS}
    kinds[RECORD] = {"due_at": record_due(due, present), "held_by": held}
    return {"recording_id": recording_id, "ended_at": f.end_ms, "held_by": held,
            "outcome": {"type": f.outcome.type, "at": f.outcome.at} if f.outcome else None, "kinds": kinds}


# ---------------------------------------------------------------- the plan (a frozen manifest)

def plan(engine: Engine, store: ObjectStore, org: str, at: int, *, created_by: str, purpose: str = "policy",
         needs_approval: bool = False, recording_ids: Optional[list[str]] = None,
         erasure_id: Optional[str] = None, keep_empty: bool = True) -> Optional[RetentionManifest]:
    """Preview: every (recording, kind) due at `at` with what it holds now; held ones are
    listed with the holds that keep them. An erasure makes everything of `recording_ids` due.
    None when nothing is listed and `keep_empty` is off (the tick's previews)."""
    with session_scope(engine) as s:
        policy_row(s, org)
        rules, holds, recs = rules_of(s, org), active_holds(s, org), facts(s, org, recording_ids)
    items: list[ManifestItem] = []
    for f in recs:
        due = {k: at for k in KINDS} if purpose == "erasure" else due_dates(rules, KINDS, f.end_ms, f.outcome)
        if not any(d is not None and d <= at for d in due.values()):
            continue  # nothing due: no need to list its objects
        with session_scope(engine) as s:
            stock = take_stock(s, store, org, f.recording_id)
        items += _items(f, due, stock, holding(holds, f.subject), at, purpose)
    if not items and not keep_empty:
        return None
    manifest = RetentionManifest(org=org, purpose=purpose, at=at, needs_approval=needs_approval,
                                 erasure_id=erasure_id, created_by=created_by, summary=summarize(items))
    with session_scope(engine) as s:
        s.add(manifest)
        s.flush()
        for item in items:
            item.manifest_id = manifest.id
            s.add(item)
    return manifest


def _items(f: Facts, due: dict[str, Optional[int]], stock: Stock, held: list[str], at: int,
           purpose: str) -> list[ManifestItem]:
    status, out = ("held" if held else "due"), []
    for kind in KINDS:
        d = due[kind]
        if d is not None and d <= at and kind in stock.present():
            listing = stock.listing(kind)
            out.append(ManifestItem(recording_id=f.recording_id, kind=kind, due_at=d, status=status,
                                    held_by=held or None, objects=listing, object_count=len(listing),
                                    bytes=sum(size for _, size in listing), rows=stock.rows.get(kind, {})))
    end = at if purpose == "erasure" else record_due(due, stock.present())
    if end is not None and end <= at:
        listing = stock.listing(RECORD)
        out.append(ManifestItem(recording_id=f.recording_id, kind=RECORD, due_at=end, status=status,
                                held_by=held or None, objects=listing, object_count=len(listing),
                                bytes=sum(size for _, size in listing), rows={"recording": 1, **stock.rows[RECORD]}))
    return out


def summarize(items: Iterable[ManifestItem]) -> dict[str, Any]:
    """Counts per status and kind: recordings, items, objects, bytes, rows."""
    out: dict[str, Any] = {"recordings": 0, "due": {}, "held": {}}
    recordings = set()
    for item in items:
        recordings.add(item.recording_id)
        group = out["held" if item.status == "held" else "due"].setdefault(
            item.kind, {"items": 0, "objects": 0, "bytes": 0, "rows": 0})
        group["items"] += 1
        group["objects"] += item.object_count
        group["bytes"] += item.bytes
        group["rows"] += sum((item.rows or {}).values())
    out["recordings"] = len(recordings)
    return out


def run_summary(items: Iterable[ManifestItem]) -> dict[str, Any]:
    """What a run did: items per status; objects, bytes and rows deleted per kind."""
    out: dict[str, Any] = {"items": {}, "deleted": {}}
    for item in items:
        out["items"][item.status] = out["items"].get(item.status, 0) + 1
        if item.status == "deleted":
            group = out["deleted"].setdefault(item.kind, {"objects": 0, "bytes": 0, "rows": 0})
            group["objects"] += len(item.deleted_objects or [])
            group["bytes"] += sum(size for _, size in item.deleted_objects or [])
            group["rows"] += sum((item.deleted_rows or {}).values())
    return out


# ---------------------------------------------------------------- erasure (GDPR Art. 17)

def request_erasure(engine: Engine, store: ObjectStore, org: str, candidate_id: str, requested_by: str,
                    now: int) -> ErasureRequest:
    """Record a candidate's erasure and plan it (`plan_erasure`)."""
    with session_scope(engine) as s:
        salt = policy_row(s, org).salt
        e = ErasureRequest(org=org, candidate_id=candidate_id, candidate_hash=salted_hash(salt, candidate_id),
                           requested_by=requested_by, requested_at=now)
        s.add(e)
    return plan_erasure(engine, store, e.id, now)


def plan_erasure(engine: Engine, store: ObjectStore, erasure_id: str, now: int) -> ErasureRequest:
    """Every recording the candidate took part in, and everything derived, in one erasure
    manifest — unless a hold covers one of them or the candidate: then `deferred` (held_by)."""
    with session_scope(engine) as s:
        e = s.get(ErasureRequest, erasure_id)
        assert e is not None and e.candidate_id is not None
        recordings, holds = candidate_recordings(s, e.org, e.candidate_id), active_holds(s, e.org)
        held = sorted({h for f in facts(s, e.org, recordings) for h in holding(holds, f.subject)}
                      | {h.id for h in holds if h.scope == "candidate" and h.target == e.candidate_id})
        e.recordings, e.held_by, e.status = recordings, held or None, "deferred" if held else "pending"
        s.add(e)
    if held:
        return e
    m = plan(engine, store, e.org, now, created_by=e.requested_by, purpose="erasure", recording_ids=recordings,
             erasure_id=e.id)
    assert m is not None
    with session_scope(engine) as s:
        e = s.get(ErasureRequest, erasure_id)
        e.manifest_id, e.status = m.id, "running"  # type: ignore[union-attr]
        s.add(e)
    return e  # type: ignore[return-value]
