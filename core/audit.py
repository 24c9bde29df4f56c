"""The audit log: a hash chain of events (`record`), signed checkpoints of its head kept in the
object store (`checkpoint`), and a check of both (`verify`). One home for action names.

Every read of interview data (media bytes, playback URLs, transcripts, search), every token
mint, grant, org-settings and vocabulary change, and every retention step (policy, hold,
preview, run, deletion, erasure) appends one `AuditEvent`. Each row's hash covers its fields
and the previous row's hash, so an edited or deleted row breaks the chain from there on.

The chain is global (all orgs, one `seq`); rows carry their org, and readers see only theirs.
Appends are serialized for the rest of their transaction (Postgres advisory lock, SQLite
write lock) before the head is read; the unique `seq` backs that up (a loser retries).

Checkpoints: `{"at","hash","key","seq","v"}` + `"sig"` (Ed25519 over the canonical JSON
without `sig`, `core.signing`) at `_audit/checkpoints/{seq:012d}.json`, apart from the
database, with an S3 legal hold when the bucket has object lock enabled (a plain object
otherwise, as on the local SeaweedFS bucket). A checkpoint is only signed after the rows
since the previous one were checked, so a rewritten tail is never blessed.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Optional

from minio.error import S3Error
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.db import session_scope
from core.errors import RecorderError
from core.models import AuditEvent
from core.models._types import now_ms
from core.signing import Signer, verify as verify_signature
from core.storage import ObjectStore, _translated

# ---------------------------------------------------------------- action names (the one home)
MEDIA_READ = "media.read"  # bytes of a media output (each GET: ranges, HLS playlist and segments)
PLAYBACK_URL = "playback.url"  # playback URLs minted (with ?direct=1, presigned S3 URLs: bytes bypass us)
TRANSCRIPT_READ = "transcript.read"  # a transcript export (json, vtt, srt, txt) of some version
TRANSCRIPT_VERSIONS = "transcript.versions"  # the version list of a recording
RETRANSCRIBE = "transcript.retranscribe"  # a new transcript version queued
EXPORT = "export"  # a bulk export of interview data
SEARCH = "search"  # a transcript search (the query text is kept: this log is the compliance record)
RECORDINGS_LOOKUP = "recordings.list"  # the recording list filtered by a person (q=, participant=)
TOKEN_MINT = "token.mint"  # upload / join tokens (detail.scope); never the token itself
TOKEN_REVOKE = "token.revoke"
GRANT_ADD = "grant.add"
GRANT_REMOVE = "grant.remove"
ORG_SETTINGS = "org.settings"
VOCABULARY_CHANGE = "vocabulary.change"
AUDIT_READ = "audit.read"  # someone read this log
POLICY_CHANGE = "policy.change"
HOLD_CREATE = "hold.create"
HOLD_RELEASE = "hold.release"
RETENTION_PREVIEW = "retention.preview"
RETENTION_RUN = "retention.run"
RECORDING_DELETE = "recording.delete"
ERASURE_REQUEST = "erasure.request"
ERASURE_COMPLETE = "erasure.complete"
ACTIONS = frozenset({
    MEDIA_READ, PLAYBACK_URL, TRANSCRIPT_READ, TRANSCRIPT_VERSIONS, RETRANSCRIBE, EXPORT, SEARCH,
    RECORDINGS_LOOKUP, TOKEN_MINT, TOKEN_REVOKE, GRANT_ADD, GRANT_REMOVE, ORG_SETTINGS, VOCABULARY_CHANGE,
    AUDIT_READ, POLICY_CHANGE, HOLD_CREATE, HOLD_RELEASE, RETENTION_PREVIEW, RETENTION_RUN, RECORDING_DELETE,
    ERASURE_REQUEST, ERASURE_COMPLETE,
})

GENESIS = "0" * 64
ATTEMPTS = 50
PAGE = 1000  # rows per query while verifying (bounded memory)
PREFIX = "_audit/checkpoints/"
_LOCK_ID = 0x61756469  # pg_advisory_xact_lock key of the chain ("audi")
_TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_KEY = re.compile(r"^_audit/checkpoints/(\d{12})\.json$")


# ---------------------------------------------------------------- the chain

def entry_hash(prev_hash: str, seq: int, at: int, org: str, actor: str, actor_role: str, action: str,
               object_type: str, object_id: str, detail: dict[str, Any] | None) -> str:
    """SHA-256 over the previous hash and this entry's fields (canonical JSON)."""
    body = json.dumps([seq, at, org, actor, actor_role, action, object_type, object_id, detail or {}],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def row_hash(row: AuditEvent) -> str:
    return entry_hash(row.prev_hash, row.seq, row.at, row.org, row.actor, row.actor_role, row.action,
                      row.object_type, row.object_id, row.detail)


def _head(s: Session) -> tuple[int, str]:
    last = s.exec(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
    return (last.seq, last.hash) if last else (0, GENESIS)


def head(engine: Engine) -> tuple[int, str]:
    """(seq, hash) of the newest row; (0, GENESIS) for an empty log."""
    with session_scope(engine) as s:
        return _head(s)


def _clean(value: Any) -> Any:
    """The detail as the database will give it back (JSON types), bearer tokens redacted."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return _TOKEN.sub("[token]", value)
    return json.loads(json.dumps(value))


def _lock_chain(s: Session) -> None:
    """Hold the chain until this transaction ends, so the head read next is the one we extend:
    an advisory lock on Postgres; on SQLite, the write lock (a no-op UPDATE takes it)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        s.connection().execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
    elif dialect == "sqlite":
        s.connection().execute(text("UPDATE auditevent SET seq = seq WHERE 1 = 0"))


def append(s: Session, *, org: str, action: str, actor: Any = "", object_type: str = "", object_id: str = "",
           detail: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event inside the caller's transaction (it commits with the caller's change)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to core.audit")
    sub = getattr(actor, "sub", None)
    who, role = (str(sub), str(getattr(actor, "role", ""))) if sub is not None else (str(actor), "")
    _lock_chain(s)
    seq, prev = _head(s)
    row = AuditEvent(seq=seq + 1, at=now_ms(), org=org, actor=who[:256], actor_role=role[:32], action=action,
                     object_type=object_type[:32], object_id=object_id[:256],
                     detail=_clean(detail) if detail else None, prev_hash=prev, hash="")
    row.hash = row_hash(row)
    s.add(row)
    s.flush()
    return row


def record(engine: Engine, *, org: str, action: str, actor: Any = "", object_type: str = "", object_id: str = "",
           detail: dict[str, Any] | None = None, session: Optional[Session] = None) -> AuditEvent:
    """Append one event. `actor` is a `Principal` (sub + role are taken) or a plain name.

    With `session`, the event joins that transaction (see `append`); otherwise it is committed
    on its own, retrying when another writer took the same `seq`."""
    fields = dict(org=org, action=action, actor=actor, object_type=object_type, object_id=object_id,
                  detail=detail)
    if session is not None:
        return append(session, **fields)
    for _ in range(ATTEMPTS):
        try:
            with session_scope(engine) as s:
                return append(s, **fields)
        except IntegrityError:
            continue  # another writer took this seq: read the new head and retry
    raise RecorderError("audit log append kept racing; giving up", code="audit_busy")


def _rows(engine: Engine, after: int, page: int = PAGE, until: Optional[int] = None) -> Iterator[AuditEvent]:
    """Rows with seq > after (≤ until), in seq order, one page per query."""
    while True:
        q = select(AuditEvent).where(AuditEvent.seq > after)
        if until is not None:
            q = q.where(AuditEvent.seq <= until)
        with session_scope(engine) as s:
            batch = list(s.exec(q.order_by(AuditEvent.seq).limit(page)).all())  # type: ignore[arg-type]
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].seq


# ---------------------------------------------------------------- checkpoints

@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the chain's row `seq` had hash `hash` at `at` (epoch ms)."""

    seq: int
    hash: str
    at: int
    key: str  # key id of the signing key (`core.signing.key_id`)

    def payload(self) -> bytes:
        return _canonical({"at": self.at, "hash": self.hash, "key": self.key, "seq": self.seq, "v": 1})

    def signed(self, signer: Signer) -> bytes:
        return self.with_signature(signer.sign(self.payload()))

    def with_signature(self, sig: str) -> bytes:
        """The stored object: the payload's fields plus `sig`, canonical JSON."""
        return _canonical({**json.loads(self.payload()), "sig": sig})


class BadCheckpoint(ValueError):
    """A checkpoint object that is malformed or whose signature does not verify."""


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def open_checkpoint(raw: bytes, public_key_pem: str) -> Checkpoint:
    """The checkpoint in `raw` if its signature holds; any changed byte raises BadCheckpoint."""
    try:
        body = json.loads(raw)
        sig = body.pop("sig")
        cp = Checkpoint(seq=body["seq"], hash=body["hash"], at=body["at"], key=body["key"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BadCheckpoint("not a checkpoint") from None
    if not isinstance(sig, str) or body.get("v") != 1 or raw != cp.with_signature(sig):
        raise BadCheckpoint("not in canonical form")
    if not verify_signature(public_key_pem, cp.payload(), sig):
        raise BadCheckpoint("signature does not verify")
    return cp


def checkpoint_key(seq: int) -> str:
    return f"{PREFIX}{seq:012d}.json"


def checkpoint_seqs(store: ObjectStore, after: Optional[int] = None) -> list[int]:
    """Seqs of the stored checkpoints (those past `after` only), ascending."""
    start = checkpoint_key(after) if after is not None else None
    with _translated(PREFIX):
        names = [o.object_name for o in store.client.list_objects(store.bucket, prefix=PREFIX, recursive=True,
                                                                   start_after=start)]
    return sorted(int(m.group(1)) for name in names if (m := _KEY.match(name or "")))


def _latest_at_or_below(store: ObjectStore, seq: int) -> Optional[int]:
    """The newest checkpoint ≤ seq, listing windows that grow ×16 back from it (few LISTs)."""
    step = 256
    while True:
        low = max(0, seq - step)
        found = [n for n in checkpoint_seqs(store, after=low - 1 if low else None) if n <= seq]
        if found or low == 0:
            return max(found) if found else None
        step *= 16


def _load(store: ObjectStore, seq: int, public_key_pem: str) -> Checkpoint:
    cp = open_checkpoint(store.get_bytes(checkpoint_key(seq)), public_key_pem)
    if cp.seq != seq:
        raise BadCheckpoint(f"names seq {cp.seq}")
    return cp


def _put(store: ObjectStore, key: str, data: bytes) -> bool:
    """Write the object, under a legal hold where the bucket has object lock; True if held."""
    with _translated(key):
        try:
            store.client.get_object_lock_config(store.bucket)
            held = True
        except S3Error as exc:
            if exc.code != "ObjectLockConfigurationNotFoundError":
                raise
            held = False
        store.client.put_object(store.bucket, key, io.BytesIO(data), len(data),
                                content_type="application/json", legal_hold=held)
    return held


def checkpoint(engine: Engine, store: ObjectStore, signer: Signer) -> Optional[Checkpoint]:
    """Sign the chain head into the object store; None when there is nothing new to sign.

    The rows since the newest checkpoint are checked first: a broken chain, or a head behind
    a checkpoint (a cut tail), raises `audit_chain_broken` instead of being signed."""
    seq, top = head(engine)
    beyond = checkpoint_seqs(store, after=seq)
    if beyond:
        raise _broken(seq + 1, f"checkpoint {beyond[-1]} names rows past the end of the log (seq {seq})")
    if seq == 0 or store.exists(checkpoint_key(seq)):
        return None
    pem = signer.public_key_pem()
    result = _check_since(engine, store, pem, _latest_at_or_below(store, seq), seq)
    if not result.ok:
        raise _broken(result.first_broken_seq or 0, result.reason)
    cp = Checkpoint(seq=seq, hash=top, at=now_ms(), key=signer.key_id)
    _put(store, checkpoint_key(seq), cp.signed(signer))
    return cp


def _broken(seq: int, reason: str) -> RecorderError:
    return RecorderError(f"audit chain broken at seq {seq}: {reason}; not signing", code="audit_chain_broken")


# ---------------------------------------------------------------- verification

@dataclass(frozen=True)
class VerifyResult:
    """What `verify` found. Only seq numbers and reasons: safe to show any org."""

    ok: bool
    checked: int  # rows whose hash and link were recomputed
    first_broken_seq: Optional[int] = None
    reason: str = ""
    checkpoints: int = 0  # checkpoints whose signature and hash were checked
    head_seq: int = 0  # the last row reached

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _link_problem(row: AuditEvent, seq: int, prev: str) -> Optional[tuple[int, str]]:
    """Why `row` does not follow the row (seq, hash=prev), if it does not."""
    if row.seq != seq + 1:
        gone = f"row {seq + 1} is" if row.seq == seq + 2 else f"rows {seq + 1}..{row.seq - 1} are"
        return seq + 1, f"{gone} missing"
    if row_hash(row) != row.hash:
        return row.seq, f"row {row.seq} was altered: its hash does not match its contents"
    if row.prev_hash != prev:
        if seq == 0:
            return row.seq, f"row {row.seq} does not start the chain"
        return seq, f"row {seq} was altered or replaced: row {row.seq} links to another hash"
    return None


@dataclass
class _Walk:
    seq: int = 0
    hash: str = GENESIS
    checked: int = 0
    checkpoints: int = 0
    last_checkpoint: int = 0

    def broken(self, seq: int, reason: str) -> VerifyResult:
        return VerifyResult(False, self.checked, seq, reason, self.checkpoints, self.seq)


def _walk(engine: Engine, store: ObjectStore, pem: str, w: _Walk, cps: list[int], page: int,
          until: Optional[int] = None) -> VerifyResult:
    """Recompute rows after `w.seq` in order, checking each checkpoint in `cps` as it is reached;
    checkpoints past the last row mean the tail was cut."""
    pending = iter(c for c in cps if c > w.seq)
    nxt = next(pending, None)
    for row in _rows(engine, w.seq, page, until):
        problem = _link_problem(row, w.seq, w.hash)
        if problem:
            return w.broken(*problem)
        if nxt == row.seq:
            problem = _checkpoint_problem(store, pem, row, w.last_checkpoint)
            if problem:
                return w.broken(*problem)
            w.checkpoints, w.last_checkpoint, nxt = w.checkpoints + 1, row.seq, next(pending, None)
        w.seq, w.hash, w.checked = row.seq, row.hash, w.checked + 1
    if nxt is not None:
        try:
            _load(store, nxt, pem)
        except BadCheckpoint as exc:
            return w.broken(nxt, f"checkpoint {nxt} is not valid ({exc})")
        return w.broken(w.seq + 1, f"the log ends at seq {w.seq} but checkpoint {nxt} signed rows up to {nxt}: "
                                   "its tail was removed")
    return VerifyResult(True, w.checked, None, "", w.checkpoints, w.seq)


def _checkpoint_problem(store: ObjectStore, pem: str, row: AuditEvent, previous: int) -> Optional[tuple[int, str]]:
    try:
        cp = _load(store, row.seq, pem)
    except BadCheckpoint as exc:
        return row.seq, f"checkpoint {row.seq} is not valid ({exc})"
    if cp.hash != row.hash:
        return previous + 1, (f"row {row.seq} differs from checkpoint {row.seq}: rows {previous + 1}..{row.seq} "
                              "were rewritten")
    return None


def verify(engine: Engine, store: ObjectStore, public_key: str, *, page: int = PAGE) -> VerifyResult:
    """Recompute the whole chain in seq order and check every checkpoint (signature, hash).

    Finds edited rows (hash mismatch), deleted rows (seq gap, broken link), a rewritten
    stretch (a checkpoint's hash differs) and a cut tail (a checkpoint past the last row).
    Rows appended after the newest checkpoint can be cut without trace: the checkpoint
    interval bounds that window."""
    return _walk(engine, store, public_key, _Walk(), checkpoint_seqs(store), page)


def _check_since(engine: Engine, store: ObjectStore, pem: str, since: Optional[int], until: int) -> VerifyResult:
    """The rows from checkpoint `since` (or the start) to `until` still extend what it signed."""
    if since is None:
        return _walk(engine, store, pem, _Walk(), [], PAGE, until)
    try:
        cp = _load(store, since, pem)
    except BadCheckpoint as exc:
        return VerifyResult(False, 0, since, f"checkpoint {since} is not valid ({exc})")
    with session_scope(engine) as s:
        row = s.exec(select(AuditEvent).where(AuditEvent.seq == since)).first()
    if row is None or row_hash(row) != row.hash or row.hash != cp.hash:
        return VerifyResult(False, 0, since, f"row {since} no longer matches checkpoint {since}")
    return _walk(engine, store, pem, _Walk(seq=since, hash=row.hash, last_checkpoint=since), [], PAGE, until)
