"""Two sources per participant in the pipeline: the bot's recording of a room and the room's
client recording (each call page's own uploads) → which source plays each second.

The two are separate recordings of one room (`Recording.source` "bot" / "client", one of
each per room, each with its own timeline and ledger). The bot's recording is the one that
is reconciled: its timeline is the reference, its outputs become the reviewed interview.
A participant is paired when the bot recording has their audio and video tracks and the
client recording has their `av` track. Per pair (`compositor.reconcile`): the client's
chunks are placed on the bot's timeline by their declared (browser clock) starts, its
offset is measured from the audio, and each 1-s window goes to the bot where it has media,
else to the client. The client is only a fallback: a participant whose client media cannot be
read, or has no video, is logged and kept on the bot alone (never a failed final step).
The transcript has a plan of its own (`ParticipantPlan.transcript`): the same rule with the
bot's audio alone as its coverage, so the client is transcribed only where the bot has no
audio (a second where the bot lost only its video keeps the bot's live transcript: no word
twice). Computed once per set of inputs by whichever final step asks first
(`reconciliation`), stored at `windows/sources.json` (a media output); the media stage
renders windows that use the client from it, the transcript stage transcribes the client's
spans, and the ledger shows the plan per second (`Recording.outputs["sources"]`).

    reconciliation(rec)            -> Reconciliation | None    compute (once) or read the current plan
    stored(rec)                    -> Reconciliation | None    read only (a late window message)
    window_sources(recon, lo, hi)  -> [WindowSources]          participants whose window uses the client
    render_window(ws, files, tmp)  -> WindowTrack | None        their reconciled file for that window
    client_pcm(plan, span, rate)   -> np.ndarray                the client's audio of a span, on the timeline
"""
from __future__ import annotations

import json
import tempfile
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from redis.exceptions import LockError
from sqlmodel import select

from compositor.decode import audio_samples
from compositor.reconcile import (SourceFiles, SourceSpan, align_tracks, clip_plan, covered_spans, overlap_span,
                                  plan_sources, render_plan, shared_spans, source_coverage, uncovered)
from compositor.windows import ChunkRef, InputGroup, fingerprint, window_inputs, with_ends
from core import keys
from core.db import session_scope
from core.errors import InvalidMedia, NotFound
from core.logging import get_logger
from core.models import Chunk, ProcessingStep, Recording, Track
from core.steps import FAILED, chunk_step
from workers import broker as res
from workers.chunkfiles import stitch_chunks, stitch_groups

__all__ = ["Pairing", "ParticipantPlan", "Reconciliation", "WindowSources", "WindowTrack", "reconciliation",
           "stored", "window_sources", "render_window", "client_pcm"]

log = get_logger("workers.reconcile")
VERSION = 2  # bump when the plan's rule changes: stored plans are recomputed
ALIGN_MAX_MS = 60_000  # audio read to measure the offset: the longest shared stretch, at most this
SEARCH_MS = 2000.0  # the client's clock may be this far off its declared starts
EDGE_MS = 1000  # client media read beyond a span (decoder pre-roll, offset)


@dataclass(frozen=True)
class Pairing:
    """One participant in both recordings: the bot's tracks and the client's, its chunks on the bot timeline."""

    participant_id: str
    video_track: str
    audio_track: str
    client_recording_id: str
    client_track: str
    client_chunks: tuple[ChunkRef, ...]


@dataclass(frozen=True)
class ParticipantPlan:
    """Where the client lies against the bot (`offset_ms`: timeline = client + offset) and who plays what."""

    pairing: Pairing
    offset_ms: float
    confidence: float
    aligned: bool  # the measured offset was reliable (else the declared starts are kept)
    spans: tuple[SourceSpan, ...]  # who plays each second (picture and sound)
    transcript: tuple[SourceSpan, ...]  # whose audio is transcribed: the bot wherever it has audio

    def public(self) -> dict[str, Any]:
        """As `Recording.outputs["sources"][participant]` (what the ledger expands per second)."""
        p = self.pairing
        return {"client_recording_id": p.client_recording_id, "client_track_id": p.client_track,
                "bot_track_ids": sorted({p.video_track, p.audio_track}), "offset_ms": round(self.offset_ms, 1),
                "aligned": self.aligned, "confidence": round(self.confidence, 1),
                "spans": [{"source": s.source, "start_ms": s.start_ms, "end_ms": s.end_ms} for s in self.spans]}


@dataclass(frozen=True)
class Reconciliation:
    fingerprint: str
    total_ms: int
    participants: tuple[ParticipantPlan, ...]

    def outputs(self) -> dict[str, Any]:
        return {p.pairing.participant_id: p.public() for p in self.participants}

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Reconciliation":
        raw = json.loads(data)
        plans = []
        for p in raw["participants"]:
            pr = p["pairing"]
            pairing = Pairing(**{**pr, "client_chunks": tuple(ChunkRef(**c) for c in pr["client_chunks"])})
            plans.append(ParticipantPlan(pairing, p["offset_ms"], p["confidence"], p["aligned"],
                                         tuple(SourceSpan(**s) for s in p["spans"]),
                                         tuple(SourceSpan(**s) for s in p["transcript"])))
        return cls(raw["fingerprint"], raw["total_ms"], tuple(plans))


# ---------------------------------------------------------------- the ledger → pairings

def _origin(s: Any, rec: Recording) -> int:
    if rec.started_at_ms is not None:
        return rec.started_at_ms
    first = min((c.start_ms for c in s.exec(select(Chunk).where(Chunk.recording_id == rec.id)).all()), default=0)
    return int(first)


def _refs(s: Any, recording_id: str, track_id: str, origin: int) -> list[ChunkRef]:
    """Stored, not failed chunks of one track, placed on a timeline starting at epoch `origin`.

    A chunk that began before `origin` has no place on that timeline and is left out."""
    rows = s.exec(select(Chunk).where(Chunk.recording_id == recording_id, Chunk.track_id == track_id,
                                      Chunk.status == "stored")).all()
    bad = {st.step for st in s.exec(select(ProcessingStep).where(
        ProcessingStep.recording_id == recording_id, ProcessingStep.status == FAILED)).all()}
    out = []
    for c in sorted(rows, key=lambda c: c.seq):
        if chunk_step(c.track_id, c.seq) in bad or c.start_ms < origin:
            continue
        start = c.start_ms - origin
        out.append(ChunkRef(c.track_id, c.seq, start, start + c.duration_ms if c.duration_ms else None,
                            c.continuation, c.sha256, c.object_key, c.container or "webm"))
    return out


def _track_of(tracks: Sequence[Track], participant_id: str, kinds: tuple[str, ...]) -> str | None:
    return next((t.track_id for t in sorted(tracks, key=lambda t: t.track_id)
                 if t.participant_id == participant_id and t.kind in kinds), None)


def _pairings(rec: Recording) -> tuple[list[Pairing], dict[str, list[ChunkRef]]]:
    """The paired participants, and the bot's chunks of their tracks (both on the bot timeline)."""
    if rec.source != "bot" or not rec.room_id:
        return [], {}
    with session_scope(res.engine()) as s:
        client = s.exec(select(Recording).where(Recording.org == rec.org, Recording.room_id == rec.room_id,
                                                Recording.source == "client", Recording.status != "deleted")).first()
        if client is None:
            return [], {}
        origin = _origin(s, rec)
        mine = s.exec(select(Track).where(Track.recording_id == rec.id)).all()
        theirs = s.exec(select(Track).where(Track.recording_id == client.id)).all()
        pairs, bot = [], {}
        for pid in sorted({t.participant_id for t in mine if t.participant_id}):
            video, audio = _track_of(mine, pid, ("video", "av")), _track_of(mine, pid, ("audio", "av"))
            other = _track_of(theirs, pid, ("av",))
            if video is None or audio is None or other is None:
                continue
            chunks = tuple(_refs(s, client.id, other, origin))
            if chunks:
                pairs.append(Pairing(pid, video, audio, client.id, other, chunks))
                for t in (video, audio):
                    bot[t] = _refs(s, rec.id, t, origin)
    return pairs, bot


def _fingerprint(pairs: Sequence[Pairing], bot: dict[str, list[ChunkRef]]) -> str:
    def desc(refs: Sequence[ChunkRef]) -> list:
        return [[c.seq, c.sha256, c.start_ms, c.end_ms] for c in refs]

    return fingerprint({"v": VERSION, "bot": {t: desc(cs) for t, cs in sorted(bot.items())},
                        "client": {p.participant_id: [p.client_track, desc(p.client_chunks)] for p in pairs}})


# ---------------------------------------------------------------- measure + plan (I/O: stitched files)

def _client_coverage(client: Path | None) -> list[tuple[int, int]]:
    """Where the client has audio and video; InvalidMedia when it has none (e.g. no video at all:
    it could not fill the bot's picture, so the participant keeps the bot alone)."""
    spans = covered_spans(client, kinds=("audio", "video")) if client is not None else []
    if client is not None and not spans:
        raise InvalidMedia("the client's media has no audio and video together", code="no_video")
    return spans


def _measure(p: Pairing, bot: dict[str, list[ChunkRef]], total_ms: int, tmp: Path) -> ParticipantPlan:
    """Stitch both sources whole (remux only), read their coverage, align on their shared audio, plan."""
    video = stitch_chunks(bot[p.video_track], 0, total_ms, tmp / "bot-video.mkv", tmp)
    audio = video if p.audio_track == p.video_track else \
        stitch_chunks(bot[p.audio_track], 0, total_ms, tmp / "bot-audio.mkv", tmp)
    client = stitch_chunks(p.client_chunks, 0, total_ms, tmp / "client.mkv", tmp)
    coverage = {"bot": source_coverage(SourceFiles(video, audio)) if video and audio else [],
                "client": _client_coverage(client)}
    heard = {"bot": covered_spans(audio, kinds=("audio",)) if audio else [], "client": coverage["client"]}
    span = overlap_span(coverage["bot"], coverage["client"], ALIGN_MAX_MS)
    offset, confidence, aligned = 0.0, 0.0, False
    if span is not None and audio is not None and client is not None:
        a = align_tracks(audio, client, span[1], expected_ms=0.0, search_ms=SEARCH_MS, start_ms=span[0],
                         shared=shared_spans(coverage["bot"], coverage["client"]))
        confidence, aligned = a.confidence, a.reliable
        offset = a.offset_ms if a.reliable else 0.0
    spans = plan_sources(coverage, {"bot": 0.0, "client": offset}, total_ms)
    transcript = plan_sources(heard, {"bot": 0.0, "client": offset}, total_ms)  # client spans ⊆ those of `spans`
    log.info("sources_planned", participant=p.participant_id, offset_ms=round(offset, 1), aligned=aligned,
             confidence=round(confidence, 1), client_s=sum(s.end_ms - s.start_ms for s in spans
                                                           if s.source == "client") / 1000)
    return ParticipantPlan(p, offset, confidence, aligned, tuple(spans), tuple(transcript))


def _end(chunks: Sequence[ChunkRef]) -> int:
    return max(((c.end_ms or c.start_ms) for c in with_ends(chunks)), default=0)


def _compute(pairs: Sequence[Pairing], bot: dict[str, list[ChunkRef]], fp: str) -> Reconciliation:
    """Plan every pair (over all either source may cover); the recording ends where the bot's
    media ends, or where a client span that outlasts it does."""
    bot_end = max((_end(cs) for cs in bot.values()), default=0)
    reach = max([bot_end, *(_end(p.client_chunks) for p in pairs)])  # declared: all either may cover
    plans = []
    for p in pairs:
        with tempfile.TemporaryDirectory(prefix="sources-") as tmp:
            try:
                plans.append(_measure(p, bot, reach, Path(tmp)))
            except InvalidMedia as exc:  # unreadable media: this participant keeps the bot alone
                log.warning("sources_not_planned", participant=p.participant_id, reason=exc.message)
    total = max([bot_end, *(s.end_ms for p in plans for s in p.spans)])  # a client span past the bot's end
    return Reconciliation(fp, total, tuple(plans))


def _key(rec: Recording) -> str:
    return f"{keys.recording_prefix(rec.org, rec.id)}windows/sources.json"


def stored(rec: Recording) -> Reconciliation | None:
    """The plan the last final step computed (None before that, when the setting is off, or when
    the stored plan cannot be read, e.g. an older schema: it is then computed again)."""
    if not res.settings.reconcile_sources or rec.source != "bot":
        return None
    try:
        data = res.store().get_bytes(_key(rec))
    except NotFound:
        return None
    try:
        return Reconciliation.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("sources_plan_unreadable", reason=f"{type(exc).__name__}: {exc}")
        return None


def reconciliation(rec: Recording) -> Reconciliation | None:
    """The current plan of a bot recording whose room also has a client recording (computed
    once per set of inputs, under a lock: the media and the transcript final steps both ask)."""
    if not res.settings.reconcile_sources:
        return None
    pairs, bot = _pairings(rec)
    if not pairs:
        return None
    fp = _fingerprint(pairs, bot)
    have = stored(rec)
    if have is not None and have.fingerprint == fp:
        return have
    lock = res.broker.client.lock(f"recorder:lock:sources:{rec.id}", timeout=600, blocking_timeout=600)
    held = lock.acquire()
    try:
        have = stored(rec)
        if have is not None and have.fingerprint == fp:
            return have
        recon = _compute(pairs, bot, fp)
        res.store().put_bytes(_key(rec), recon.to_json(), "application/json")
        return recon
    finally:
        if held:
            with suppress(LockError):
                lock.release()


# ---------------------------------------------------------------- per window (media) and per span (transcript)

@dataclass(frozen=True)
class WindowSources:
    """One participant's sources in one window [start_ms, end_ms): the plan there, the client chunks read."""

    plan: ParticipantPlan
    spans: tuple[SourceSpan, ...]
    groups: tuple[InputGroup, ...]
    start_ms: int
    end_ms: int

    def describe(self) -> list:
        """What the window's fingerprint holds of it."""
        return [self.plan.pairing.participant_id, [[s.source, s.start_ms, s.end_ms, round(s.offset_ms, 2)]
                                                    for s in self.spans],
                [[g.header.seq, g.header.sha256, [p.sha256 for p in g.parts]] for g in self.groups]]


def _client_range(spans: Sequence[SourceSpan]) -> tuple[int, int]:
    """The client's own time that `spans` read (timeline - offset), with a margin."""
    lo = min(s.start_ms - s.offset_ms for s in spans)
    hi = max(s.end_ms - s.offset_ms for s in spans)
    return int(lo) - EDGE_MS, int(hi) + EDGE_MS


def window_sources(recon: Reconciliation | None, start_ms: int, end_ms: int) -> list[WindowSources]:
    """Participants whose plan plays the client somewhere in [start_ms, end_ms) (the others keep the bot's files)."""
    out = []
    for p in recon.participants if recon is not None else ():
        spans = clip_plan(p.spans, start_ms, min(end_ms, recon.total_ms))
        client = [s for s in spans if s.source == "client"]
        if client:
            lo, hi = _client_range(client)
            out.append(WindowSources(p, tuple(spans), tuple(window_inputs(p.pairing.client_chunks, lo, hi)),
                                     start_ms, min(end_ms, recon.total_ms)))
    return out


@dataclass(frozen=True)
class WindowTrack:
    """A participant's reconciled file for one window, and what no source covered there."""

    path: Path
    gaps: list[tuple[int, int]]


def render_window(ws: WindowSources, files: dict[str, Path], tmp: Path) -> WindowTrack | None:
    """Render `ws` from the bot's stitched window files (`files`, by track) and the client's chunks."""
    p = ws.plan.pairing
    folder = tmp / f"client-{keys.check_id(p.client_track, 'track')}"
    folder.mkdir(exist_ok=True)
    client = folder / "client.mkv" if stitch_groups(ws.groups, folder / "client.mkv", folder) else None
    if client is None:
        return None
    sources: dict[str, SourceFiles | Path] = {"client": client}
    if p.video_track in files and p.audio_track in files:
        sources["bot"] = SourceFiles(files[p.video_track], files[p.audio_track])
    spans = [s for s in ws.spans if s.source in sources]
    out = render_plan(sources, spans, ws.end_ms, folder / "reconciled.mkv", start_ms=ws.start_ms)
    return WindowTrack(out, uncovered(spans, ws.start_ms, ws.end_ms))


def client_pcm(plan: ParticipantPlan, span: SourceSpan, rate: int) -> np.ndarray:
    """The client's audio of timeline span `span` (read at timeline - offset), mono float32 at `rate`."""
    lo, hi = _client_range([span])
    with tempfile.TemporaryDirectory(prefix="client-pcm-") as tmp:
        path = stitch_chunks(plan.pairing.client_chunks, lo, hi, Path(tmp) / "client.mkv", Path(tmp))
        first = round((span.start_ms - span.offset_ms) * rate / 1000)
        count = round((span.end_ms - span.start_ms) * rate / 1000)
        if path is None:
            return np.zeros(count, np.float32)
        return audio_samples(path, first, first + count, rate)
