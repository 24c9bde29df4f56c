"""Media quality: samples and gap causes in, a per-second timeline out.

    POST /v1/recordings/{id}/quality   {"samples": [...], "gaps": [...]}   (bot, or a browser for itself)
    GET  /v1/recordings/{id}/quality   per participant per second + the ledger's gaps + a summary

Samples are windows (the bot's are 5 s) of one received track; gaps are intervals in
which a participant's media was missing, with their cause (`core.models.quality`). Both
carry wall-clock epoch ms; the answer places them on the recording timeline. Posting is
idempotent: a sample is keyed by (track, source, window start), a gap by (participant,
source, cause, start) and a repeated gap only grows. Upload tokens post for their own
participant only (as `client`), while their recording is being made.

Each second gets a `state`: `red` where media froze or is missing (a ledger gap), `amber`
where loss > 5 % or RTT > 400 ms, else `ok` — the review page draws exactly that.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.access import Action, recording_for
from core.auth import Principal, ensure_upload_open
from core.db import session_scope
from core.errors import Conflict, Forbidden
from core.http import CurrentPrincipal
from core.limits import ID_CHARS, ID_PATTERN, MAX_EPOCH_MS, MAX_TIMELINE_MS
from core.models import MediaGap, QualitySample, Recording, Track
from ingest.recordings import ledger_of

router = APIRouter(prefix="/v1", tags=["quality"])
LOSS_PCT_AMBER = 5.0
RTT_MS_AMBER = 400.0
MAX_SAMPLES, MAX_GAPS = 500, 100
_COUNT = 10**9


# ---------------------------------------------------------------- bodies

class SampleIn(BaseModel):
    """One measurement window of one received track."""

    model_config = ConfigDict(extra="forbid")
    participant_id: str = Field(min_length=1, max_length=ID_CHARS)
    track_id: str = Field(pattern=ID_PATTERN)
    at_ms: int = Field(ge=0, le=MAX_EPOCH_MS, description="window start, epoch ms")
    window_ms: int = Field(5000, ge=100, le=60_000)
    packets: int = Field(0, ge=0, le=_COUNT, description="RTP packets received in the window")
    lost: int = Field(0, ge=0, le=_COUNT, description="RTP packets lost in the window")
    jitter_ms: Optional[float] = Field(None, ge=0, le=60_000)
    rtt_ms: Optional[float] = Field(None, ge=0, le=60_000)
    bitrate_kbps: Optional[float] = Field(None, ge=0, le=1_000_000)
    fps: Optional[float] = Field(None, ge=0, le=1000)
    width: Optional[int] = Field(None, ge=0, le=16_384)
    height: Optional[int] = Field(None, ge=0, le=16_384)
    frozen: bool = Field(False, description="connected, but no media moved for the whole window")


class GapIn(BaseModel):
    """The participant's media was missing from `start_ms` to `end_ms` (epoch), and why."""

    model_config = ConfigDict(extra="forbid")
    participant_id: str = Field(min_length=1, max_length=ID_CHARS)
    cause: Literal["network", "bot_restart", "participant_left"]
    start_ms: int = Field(ge=0, le=MAX_EPOCH_MS)
    end_ms: int = Field(ge=0, le=MAX_EPOCH_MS)

    @model_validator(mode="after")
    def _ordered(self) -> GapIn:
        if not 0 <= self.end_ms - self.start_ms <= MAX_TIMELINE_MS:
            raise ValueError("end_ms must follow start_ms (by at most a week)")
        return self


class QualityPost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["bot", "client"] = Field("bot", description="upload tokens always post as `client`")
    samples: list[SampleIn] = Field(default_factory=list, max_length=MAX_SAMPLES)
    gaps: list[GapIn] = Field(default_factory=list, max_length=MAX_GAPS)


class QualityStored(BaseModel):
    samples: int = Field(description="new samples stored")
    duplicates: int = Field(description="samples already stored (a retried batch)")
    gaps: int = Field(description="gaps stored or extended")


# ---------------------------------------------------------------- per-second timeline (pure)

@dataclass(frozen=True)
class Window:
    """A sample on the recording timeline."""

    track_id: str
    source: str
    start_ms: int
    window_ms: int
    packets: int
    lost: int
    jitter_ms: Optional[float] = None
    rtt_ms: Optional[float] = None
    bitrate_kbps: Optional[float] = None
    fps: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    frozen: bool = False


def seconds_of(start_ms: int, end_ms: int) -> range:
    """The whole seconds whose middle lies in [start_ms, end_ms)."""
    return range(math.ceil(start_ms / 1000 - 0.5), math.ceil(end_ms / 1000 - 0.5))


def _pick(current: Optional[Window], new: Window) -> Window:
    """One window per track and second: the bot's over a client's, then the later one."""
    if current is None:
        return new
    return max(current, new, key=lambda w: (w.source == "bot", w.start_ms))


def _most(values: Iterable[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def state_of(row: dict[str, Any]) -> str:
    if row["frozen"] or row["missing"]:
        return "red"
    if (row["loss_pct"] or 0) > LOSS_PCT_AMBER or (row["rtt_ms"] or 0) > RTT_MS_AMBER:
        return "amber"
    return "ok"


def _second(t: int, windows: list[Window], missing: Optional[str]) -> dict[str, Any]:
    """One participant's second from the windows of its tracks (one each) and the ledger."""
    packets = sum(w.packets * 1000 / w.window_ms for w in windows)
    lost = sum(w.lost * 1000 / w.window_ms for w in windows)
    video = max((w for w in windows if w.width), key=lambda w: (w.width or 0) * (w.height or 0), default=None)
    rates = [w.bitrate_kbps for w in windows if w.bitrate_kbps is not None]
    row = {"t": t, "packets": round(packets, 1), "lost": round(lost, 1),
           "loss_pct": round(100 * lost / (packets + lost), 1) if packets + lost else None,
           "jitter_ms": _most(w.jitter_ms for w in windows), "rtt_ms": _most(w.rtt_ms for w in windows),
           "bitrate_kbps": round(sum(rates), 1) if rates else None, "fps": _most(w.fps for w in windows),
           "width": video.width if video else None, "height": video.height if video else None,
           "frozen": any(w.frozen for w in windows), "missing": missing}
    row["state"] = state_of(row)
    return row


def per_second(windows: Iterable[Window], gaps: Iterable[tuple[int, int, str]]) -> list[dict[str, Any]]:
    """One participant's timeline: a row for every second a window or a gap covers.

    Counts are per second (a window's counts spread evenly); loss is lost / (received + lost);
    jitter, RTT and frame rate are the worst track's, bitrate the sum of the tracks', size
    the largest video's; `frozen` if any track froze, `missing` the cause of a ledger gap."""
    by_second: dict[int, dict[str, Window]] = {}
    for w in windows:
        for t in seconds_of(w.start_ms, w.start_ms + w.window_ms):
            tracks = by_second.setdefault(t, {})
            tracks[w.track_id] = _pick(tracks.get(w.track_id), w)
    missing: dict[int, str] = {}
    for start, end, cause in gaps:
        for t in seconds_of(start, end):
            missing.setdefault(t, cause)
    return [_second(t, list(by_second.get(t, {}).values()), missing.get(t))
            for t in sorted(set(by_second) | set(missing)) if t >= 0]


_SEVERITY = {"red": 2, "amber": 1, "ok": 0}


def summarize(timelines: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Frozen / missing seconds (of the recording, and per participant) and the worst second."""
    frozen, missing, worst, people = set(), set(), None, {}
    for pid, rows in timelines.items():
        mine_frozen = {r["t"] for r in rows if r["frozen"]}
        mine_missing = {r["t"] for r in rows if r["missing"]}
        frozen |= mine_frozen
        missing |= mine_missing
        people[pid] = {"frozen_seconds": len(mine_frozen), "missing_seconds": len(mine_missing)}
        for r in rows:
            key = (_SEVERITY[r["state"]], r["loss_pct"] or 0, r["rtt_ms"] or 0, r["jitter_ms"] or 0)
            if worst is None or key > worst[0]:
                worst = (key, {**r, "participant_id": pid})
    return {"frozen_seconds": len(frozen), "missing_seconds": len(missing),
            "worst_second": worst[1] if worst and worst[0][0] > 0 else None, "participants": people}


# ---------------------------------------------------------------- routes

def _store_samples(s: Session, rec_id: str, source: str, samples: list[SampleIn]) -> tuple[int, int]:
    keys = {(x.track_id, x.at_ms) for x in samples}
    have = set(s.exec(select(QualitySample.track_id, QualitySample.at_ms).where(
        QualitySample.recording_id == rec_id, QualitySample.source == source,
        QualitySample.at_ms.in_(sorted({k[1] for k in keys})))).all())  # type: ignore[attr-defined]
    new = 0
    for x in samples:
        if (x.track_id, x.at_ms) in have:
            continue
        have.add((x.track_id, x.at_ms))
        s.add(QualitySample(recording_id=rec_id, source=source, **x.model_dump()))
        new += 1
    return new, len(samples) - new


def _store_gaps(s: Session, rec_id: str, source: str, gaps: list[GapIn]) -> int:
    for g in gaps:
        row = s.exec(select(MediaGap).where(MediaGap.recording_id == rec_id, MediaGap.participant_id ==
                                            g.participant_id, MediaGap.source == source,
                                            MediaGap.cause == g.cause, MediaGap.start_ms == g.start_ms)).first()
        if row is None:
            s.add(MediaGap(recording_id=rec_id, source=source, **g.model_dump()))
        elif g.end_ms > row.end_ms:
            row.end_ms = g.end_ms
            s.add(row)
    return len(gaps)


def _authorize(principal: Principal, body: QualityPost) -> str:
    """The source to store as; upload tokens speak for their own participant only."""
    if principal.scope != "upload":
        return body.source
    who = {x.participant_id for x in body.samples} | {g.participant_id for g in body.gaps}
    if who - {principal.participant_id}:
        raise Forbidden("upload token is for another participant", code="wrong_participant")
    return "client"


def post_quality(engine: Any, principal: Principal, recording_id: str, body: QualityPost) -> QualityStored:
    source = _authorize(principal, body)
    for attempt in range(2):
        try:
            with session_scope(engine) as s:
                rec = recording_for(s, principal, Action.POST_QUALITY, recording_id)
                ensure_upload_open(principal, rec.status)
                new, dup = _store_samples(s, rec.id, source, body.samples)
                return QualityStored(samples=new, duplicates=dup, gaps=_store_gaps(s, rec.id, source, body.gaps))
        except IntegrityError:  # the same batch, posted twice at once: the retry sees the winner's rows
            if attempt:
                raise Conflict("quality batch raced with itself; retry", code="quality_race") from None
    raise AssertionError("unreachable")


def quality_of(s: Session, rec: Recording, source: Optional[str]) -> dict[str, Any]:
    """The timeline answer for a recording the caller may read. Before its first chunk the
    recording has no start yet: the first sample stands in (positions may shift a little)."""
    query = select(QualitySample).where(QualitySample.recording_id == rec.id)
    if source:
        query = query.where(QualitySample.source == source)
    rows = s.exec(query.order_by(QualitySample.at_ms)).all()  # type: ignore[arg-type]
    start = rec.started_at_ms if rec.started_at_ms is not None else (rows[0].at_ms if rows else 0)
    tracks = s.exec(select(Track).where(Track.recording_id == rec.id).order_by(Track.id)).all()
    ledger = ledger_of(s, rec)
    people = {t.participant_id: t for t in tracks if t.participant_id}
    windows: dict[str, list[Window]] = {}
    for r in rows:
        windows.setdefault(r.participant_id, []).append(Window(
            r.track_id, r.source, r.at_ms - start, r.window_ms, r.packets, r.lost, r.jitter_ms, r.rtt_ms,
            r.bitrate_kbps, r.fps, r.width, r.height, r.frozen))
    gaps = [{"participant_id": t["participant_id"], "track_id": t["track_id"], **g}
            for t in ledger["tracks"] for g in t["gaps"] if g["end_ms"] > g["start_ms"]]
    timelines = {pid: per_second(windows.get(pid, []), [(g["start_ms"], g["end_ms"], g["cause"]) for g in gaps
                                                          if g["participant_id"] == pid])
                 for pid in sorted(set(windows) | {g["participant_id"] for g in gaps})}
    last = max([r[-1]["t"] + 1 for r in timelines.values() if r] or [0]) * 1000
    participants = [{"participant_id": pid, "display_name": people[pid].display_name if pid in people else "",
                     "role": people[pid].role if pid in people else "", "seconds": rows_}
                    for pid, rows_ in timelines.items()]
    return {"recording_id": rec.id, "started_at_ms": rec.started_at_ms,
            "duration_ms": max(int((rec.outputs or {}).get("duration_ms") or 0), last),
            "thresholds": {"loss_pct": LOSS_PCT_AMBER, "rtt_ms": RTT_MS_AMBER},
            "participants": participants, "gaps": gaps, "summary": summarize(timelines)}


def _engine(request: Request) -> Any:
    return request.app.state.engine


EngineDep = Annotated[Any, Depends(_engine)]


@router.post("/recordings/{recording_id}/quality", response_model=QualityStored)
def post_recording_quality(recording_id: str, body: QualityPost, principal: CurrentPrincipal,
                           engine: EngineDep) -> QualityStored:
    """Store quality samples and gap causes (idempotent; upload tokens: their own participant)."""
    return post_quality(engine, principal, recording_id, body)


@router.get("/recordings/{recording_id}/quality")
def get_recording_quality(recording_id: str, principal: CurrentPrincipal, engine: EngineDep,
                          source: Optional[Literal["bot", "client"]] = Query(None)) -> dict:
    """Per participant per second: loss, jitter, RTT, bitrate, frame rate, size, frozen, missing (+ summary)."""
    with session_scope(engine) as s:
        rec = recording_for(s, principal, Action.READ_METADATA, recording_id)
        return quality_of(s, rec, source)
