"""Retention date math: when each artifact kind of a recording is due for deletion, which
legal holds cover a recording, whether a policy change shortens a locked policy.

Pure: plain values in, plain values out (times are epoch milliseconds). The database and
object store side lives in `core.artifacts`; the deleting side in `workers.retention`.

A policy is a set of rules, each "keep `kind` for `days` after `anchor`":

    anchor "end"                        the recording's end (finalized, else last chunk, else created)
    anchor "hired|rejected|withdrawn"   the candidate's outcome event, if it is their latest one
                                        (a candidate rejected, then hired, is hired: rules
                                        anchored on "rejected" no longer apply)

A kind is due at the earliest time any of its applicable rules gives; a kind without an
applicable rule is kept. An outcome before the recording ended counts from the end.

A locked policy may only keep longer: every rule of the new policy must exist in the old
one (same kind and anchor) with at least as many days. Dropping a rule keeps data longer
(forever), so it is allowed; adding one could delete earlier, so it is not.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from core.errors import RecorderError
from core.signing import key_id, verify

__all__ = ["DAY_MS", "ANCHORS", "OUTCOMES", "HOLD_SCOPES", "Rule", "Outcome", "Subject", "Hold",
           "parse_rules", "rules_json", "outcome", "recording_end", "due_at", "due_dates", "record_due",
           "shortened", "covers", "holding", "salted_hash", "canonical", "receipt_body", "check_receipt"]

DAY_MS = 86_400_000
MAX_DAYS = 100 * 366
OUTCOMES = ("hired", "rejected", "withdrawn")
ANCHORS = ("end", *OUTCOMES)
HOLD_SCOPES = ("recording", "candidate", "room", "matter")


@dataclass(frozen=True, order=True)
class Rule:
    """Keep `kind` for `days` after `after` (an anchor)."""

    kind: str
    after: str
    days: int


@dataclass(frozen=True)
class Outcome:
    """A candidate's latest outcome event."""

    type: str
    at: int


def parse_rules(raw: Mapping[str, Sequence[Mapping[str, Any]]], kinds: Sequence[str]) -> tuple[Rule, ...]:
    """`{kind: [{"days": 30, "after": "end"}, …]}` → sorted rules. ValueError on an unknown kind
    or anchor, days outside 0‥MAX_DAYS, or two rules for the same kind and anchor."""
    rules: dict[tuple[str, str], Rule] = {}
    for kind, items in raw.items():
        if kind not in kinds:
            raise ValueError(f"unknown artifact kind {kind!r} (one of {', '.join(kinds)})")
        for item in items:
            after, days = item.get("after", "end"), item.get("days")
            if after not in ANCHORS:
                raise ValueError(f"{kind}: unknown anchor {after!r} (one of {', '.join(ANCHORS)})")
            if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DAYS:
                raise ValueError(f"{kind}: days must be a whole number from 0 to {MAX_DAYS}")
            if (kind, after) in rules:
                raise ValueError(f"{kind}: two rules counted from {after!r}")
            rules[(kind, after)] = Rule(kind, after, days)
    return tuple(sorted(rules.values()))


def rules_json(rules: Iterable[Rule]) -> dict[str, list[dict[str, Any]]]:
    """The inverse of `parse_rules` (what the API returns and the database stores)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rules):
        out.setdefault(r.kind, []).append({"days": r.days, "after": r.after})
    return out


def outcome(events: Iterable[tuple[str, int]]) -> Optional[Outcome]:
    """The latest `(type, at)` event (on equal times, the later one given), or None."""
    latest: Optional[Outcome] = None
    for type_, at in events:
        if latest is None or at >= latest.at:
            latest = Outcome(type_, at)
    return latest


def recording_end(finalized_at: Optional[int], last_chunk_at: Optional[int], created_at: int) -> int:
    """When a recording ended, for retention: finalized, else its last chunk, else created."""
    for value in (finalized_at, last_chunk_at):
        if value is not None:
            return value
    return created_at


def due_at(rules: Iterable[Rule], kind: str, end_ms: int, result: Optional[Outcome]) -> Optional[int]:
    """When `kind` of a recording that ended at `end_ms` is due; None = kept."""
    times = []
    for r in rules:
        if r.kind != kind:
            continue
        if r.after == "end":
            anchor = end_ms
        elif result is not None and result.type == r.after:
            anchor = max(end_ms, result.at)
        else:
            continue
        times.append(anchor + r.days * DAY_MS)
    return min(times, default=None)


def due_dates(rules: Sequence[Rule], kinds: Sequence[str], end_ms: int,
              result: Optional[Outcome]) -> dict[str, Optional[int]]:
    return {kind: due_at(rules, kind, end_ms, result) for kind in kinds}


def record_due(due: Mapping[str, Optional[int]], present: Iterable[str]) -> Optional[int]:
    """When the recording itself becomes a tombstone: once every kind it still holds is due
    (the latest of them). With nothing left, when the last kind with a rule is due."""
    held = list(present)
    if any(due.get(k) is None for k in held):
        return None
    times = [due[k] for k in held] or [d for d in due.values() if d is not None]
    return max(times, default=None)  # type: ignore[type-var]


def shortened(old: Iterable[Rule], new: Iterable[Rule]) -> list[str]:
    """Why `new` would delete something earlier than `old` (empty: it only keeps longer)."""
    before = {(r.kind, r.after): r.days for r in old}
    problems = []
    for r in sorted(new):
        days = before.get((r.kind, r.after))
        if days is None:
            problems.append(f"{r.kind}: a new rule ({r.days} days after {r.after}) could delete earlier")
        elif r.days < days:
            problems.append(f"{r.kind}: {r.days} days after {r.after} is shorter than the locked {days}")
    return problems


# ---------------------------------------------------------------- legal holds

@dataclass(frozen=True)
class Subject:
    """What a legal hold can name about one recording."""

    recording_id: str
    room_id: Optional[str] = None
    candidates: frozenset[str] = frozenset()  # the room's candidate and every track's participant
    matters: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Hold:
    id: str
    scope: str  # recording | candidate | room | matter
    target: str


def covers(hold: Hold, subject: Subject) -> bool:
    if hold.scope == "recording":
        return hold.target == subject.recording_id
    if hold.scope == "room":
        return subject.room_id is not None and hold.target == subject.room_id
    if hold.scope == "candidate":
        return hold.target in subject.candidates
    if hold.scope == "matter":
        return hold.target in subject.matters
    return False


def holding(holds: Iterable[Hold], subject: Subject) -> list[str]:
    """Ids of the holds that cover the recording, sorted."""
    return sorted(h.id for h in holds if covers(h, subject))


def salted_hash(salt: str, value: str, purpose: str = "candidate") -> str:
    """SHA-256 of `value` under a per-org secret salt: names a candidate (or an object key) in
    receipts and audit details without keeping it, yet the org can re-derive it to answer
    "was X erased?"."""
    return hashlib.sha256(f"{purpose}\x00{salt}\x00{value}".encode()).hexdigest()


# ---------------------------------------------------------------- deletion receipts

RECEIPT_TYPE = "interview-recorder/deletion-receipt"


def canonical(value: Any) -> bytes:
    """The bytes a receipt's signature covers: JSON, keys sorted, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def receipt_body(*, receipt_id: str, org: str, salt: str, manifest: Mapping[str, Any],
                 items: Iterable[Mapping[str, Any]], completed_at: int, signer_key_id: str,
                 **who: Any) -> dict[str, Any]:
    """What a run deleted — counts, bytes and salted key hashes per recording and kind — and
    what it kept and why. No personal data: ids, counts, hashes. `who`: requested_by,
    approved_by, run_by, candidate_hash (erasures)."""
    deleted, kept, totals = [], [], {}
    for i in items:
        if i["status"] != "deleted":
            if i["status"] in ("skipped", "held"):
                kept.append({"recording_id": i["recording_id"], "kind": i["kind"],
                             "reason": i.get("note") or "held", "held_by": i.get("held_by") or []})
            continue
        objects = [(str(k), int(size)) for k, size in i.get("deleted_objects") or []]
        rows = dict(i.get("deleted_rows") or {})
        deleted.append({"recording_id": i["recording_id"], "kind": i["kind"], "objects": len(objects),
                        "bytes": sum(size for _, size in objects), "rows": rows,
                        "key_hashes": sorted(salted_hash(salt, k, "object") for k, _ in objects)})
        t = totals.setdefault(i["kind"], {"objects": 0, "bytes": 0, "rows": 0})
        t["objects"] += len(objects)
        t["bytes"] += sum(size for _, size in objects)
        t["rows"] += sum(rows.values())
    return {"type": RECEIPT_TYPE, "v": 1, "id": receipt_id, "org": org, "manifest_id": manifest["id"],
            "purpose": manifest["purpose"], "erasure_request_id": manifest.get("erasure_id"),
            "subject": {"candidate_hash": who["candidate_hash"]} if who.get("candidate_hash") else None,
            "requested_by": who.get("requested_by", ""), "approved_by": who.get("approved_by") or None,
            "run_by": who.get("run_by", ""), "previewed_at": manifest["created_at"], "evaluated_at": manifest["at"],
            "started_at": manifest.get("started_at"), "completed_at": completed_at,
            "deleted": deleted, "kept": kept, "totals": totals,
            "tombstones": sorted(d["recording_id"] for d in deleted if d["kind"] == "record"),
            "key_hash": "sha256('object' NUL org salt NUL key), hex", "key_id": signer_key_id}


def check_receipt(document: Mapping[str, Any], public_key_pem: Optional[str] = None) -> tuple[bool, str]:
    """Is this downloaded receipt (`{receipt, signature, public_key}`) intact and signed by
    `public_key_pem` (default: the key it carries — then compare its key id with the service's)?"""
    try:
        body, signature = document["receipt"], document["signature"]
        key = public_key_pem or document["public_key"]
        if not isinstance(body, dict) or body.get("type") != RECEIPT_TYPE:
            return False, "not a deletion receipt"
        if key_id(key) != body.get("key_id"):
            return False, "signed by another key than the one given"
        if not verify(key, canonical(body), signature):
            return False, "the signature does not match: the receipt was changed or signed by another key"
    except (KeyError, TypeError, ValueError) as exc:
        return False, f"not a readable receipt ({type(exc).__name__})"
    except RecorderError as exc:  # a key that is not a PEM Ed25519 public key
        return False, exc.message
    return True, f"valid, signed by key {body['key_id']}"
