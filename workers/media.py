"""Media actors: validate chunks, composite windows while recording, finalize after hang-up.

    process_chunk(rec, track, seq)  probe the chunk; enqueue windows that became ready
    composite_window(rec, index)    stitch the window's chunks per track, composite,
                                    upload windows/{index}.mp4 + .jpg + HLS segments + .json
    finalize_recording(rec)         last window(s) → concat by stream copy →
                                    outputs/composite.mp4, outputs/hls/index.m3u8,
                                    outputs/poster.jpg, outputs/thumbs/strip.jpg; "media.final"

Two sources (`workers.reconcile`): at finalize, a bot recording whose room also has a client
recording gets its per-participant source plan first; windows where a participant's plan
plays the client are rendered from the reconciled track (others keep their fingerprint, so
windows rendered live stay valid), and `outputs["sources"]` records the plan for the ledger.

Output format (`compositor.sizing`): a window's canvas size and frame rate follow its sources
(never below the window before it); windows are joined by stream copy, so finalize renders
again any window whose format is not the recording's largest (only when a larger or faster
source appeared after it was rendered).

Failures follow `workers.policy`: bad input fails the step at once, anything else is
retried, and `step_failed` fails the step (for "media.final", the recording) when the
retries run out.

Idempotent: every object key is deterministic, each file is written locally first and
uploaded whole (an S3 PUT replaces an object atomically), and the window manifest
(.json, holding the inputs' fingerprint) is uploaded last: a worker killed mid-step
leaves either the old object or the new one, and the re-run redoes the step.
"""
from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager, suppress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from redis.exceptions import LockError
from sqlmodel import select

from compositor.composite import CompositeOptions, Participant, composite_window as render_window, output_format, sized
from compositor.outputs import HlsSegment, concat_windows, grab_jpeg, hls_playlist, thumbnail_strip, window_hls
from compositor.probe import probe
from compositor.sizing import FormatLimits, VideoFormat, common_format
from compositor.stitch import stitch
from compositor.windows import (ChunkRef, InputGroup, fingerprint, ready_windows, timeline_end,
                                window_count, window_inputs)
from core import keys
from core.db import session_scope
from core.errors import InvalidMedia, NotFound
from core.logging import bound, get_logger
from core.models import Chunk, ProcessingStep, Recording, Track
from core.queue import enqueue
from core.steps import (DONE, FAILED, MEDIA_FINAL, PENDING, RUNNING, WINDOW_PREFIX, chunk_step, describe, parse,
                        window_step)
from core.timeline import to_timeline
from workers import broker as res
from workers import reconcile
from workers.chunkfiles import download as _download, group_source as _group_source
from workers.policy import actor, step_guard
from workers.status import give_up, mark_step

log = get_logger("workers.media")
LOOKBACK_MS = 5000  # VAD warm-up for the active speaker + AAC priming before each window
OPTIONS_VERSION = 2  # bump when rendering changes, so stored windows are re-rendered (2: size/rate follow sources)


@dataclass(frozen=True)
class WindowPlan:
    """What a window is made of: input groups per track; the fingerprint of them all
    decides whether a stored window is current."""

    groups: dict[str, list[InputGroup]]
    fingerprint: str
    sources: tuple[reconcile.WindowSources, ...] = ()  # participants played (partly) from their client


# ---------------------------------------------------------------- ledger → plan

def _load(recording_id: str) -> tuple[Recording, list[Track], dict[str, list[ChunkRef]]]:
    with session_scope(res.engine()) as s:
        rec = s.get(Recording, recording_id)
        if rec is None:
            raise NotFound(f"recording {recording_id} not found", code="recording_not_found")
        tracks = list(s.exec(select(Track).where(Track.recording_id == recording_id)).all())
        rows = s.exec(select(Chunk).where(Chunk.recording_id == recording_id, Chunk.status == "stored")).all()
        bad = {st.step for st in s.exec(select(ProcessingStep).where(
            ProcessingStep.recording_id == recording_id, ProcessingStep.status == FAILED)).all()}
    origin = rec.started_at_ms if rec.started_at_ms is not None else min((c.start_ms for c in rows), default=0)
    chunks: dict[str, list[ChunkRef]] = {}
    for c in rows:
        if chunk_step(c.track_id, c.seq) in bad:
            continue  # invalid media: left out, its span becomes a gap
        start = to_timeline(c.start_ms, origin)
        end = start + c.duration_ms if c.duration_ms else None
        chunks.setdefault(c.track_id, []).append(ChunkRef(c.track_id, c.seq, start, end, c.continuation,
                                                          c.sha256, c.object_key, c.container or "webm"))
    return rec, tracks, chunks


def _plan(rec: Recording, chunks: dict[str, list[ChunkRef]], index: int, end_ms: int | None,
          recon: reconcile.Reconciliation | None = None) -> WindowPlan:
    """What window `index` is made of; its fingerprint decides if a stored window is current.
    A window no participant's plan plays from the client keeps the fingerprint it had without one."""
    w = res.settings.window_ms
    start, stop = max(0, index * w - LOOKBACK_MS), (index + 1) * w
    groups = {t: window_inputs(cs, start, stop) for t, cs in sorted(chunks.items())}
    desc = {t: [[g.header.seq, g.header.sha256, g.contiguous, [[p.seq, p.sha256] for p in g.parts]] for g in gs]
            for t, gs in groups.items()}
    sources = reconcile.window_sources(recon, start, min(stop, end_ms) if end_ms is not None else stop)
    payload = {"v": OPTIONS_VERSION, "layout": rec.layout, "window_ms": w, "end": end_ms, "in": desc}
    if sources:
        payload["sources"] = [ws.describe() for ws in sources]
    return WindowPlan(groups, fingerprint(payload), tuple(sources))


def _manifest(rec: Recording, index: int) -> dict[str, Any] | None:
    try:
        return json.loads(res.store().get_bytes(keys.window_key(rec.org, rec.id, index, "json")))
    except NotFound:
        return None


# ---------------------------------------------------------------- inputs → local files

def _participants(rec: Recording, tracks: list[Track], files: dict[str, Path]) -> list[Participant]:
    """Tiles in a stable order; the client layout shows its composite video once, unlabelled."""
    ordered = sorted((t for t in tracks if t.track_id in files), key=lambda t: (t.participant_id, t.track_id))
    if rec.layout == "client":
        video = [Participant("", video=files[t.track_id]) for t in ordered if t.kind == "composite"]
        voices = [Participant(t.display_name, audio=files[t.track_id]) for t in ordered if t.kind in ("audio", "av")]
        return video[:1] + voices
    people: dict[str, dict[str, Any]] = {}
    for t in ordered:
        p = people.setdefault(t.participant_id or t.track_id, {"name": t.display_name or t.participant_id})
        if t.kind in ("video", "av", "composite"):
            p.setdefault("video", files[t.track_id])
        if t.kind in ("audio", "av"):
            p.setdefault("audio", files[t.track_id])
    return [Participant(p["name"], p.get("video"), p.get("audio")) for p in people.values()]


# ---------------------------------------------------------------- one window

def _limits() -> FormatLimits:
    cfg = res.settings
    return FormatLimits(max_height=cfg.composite_max_height, min_height=cfg.composite_min_height,
                        max_fps=cfg.composite_max_fps)


def _format_of(manifest: dict[str, Any]) -> VideoFormat:
    return VideoFormat(*manifest["format"])


def _render(rec: Recording, tracks: list[Track], plan: WindowPlan, index: int, end_ms: int | None,
            fmt: VideoFormat | None = None, floor: VideoFormat | None = None) -> dict[str, Any]:
    """Composite window `index` and upload it; returns the manifest (uploaded last).

    fmt: the recording's common output format (finalize); None = what this window's
    sources justify, but not less than `floor` (the earlier windows' format)."""
    st, w = res.store(), res.settings.window_ms
    with tempfile.TemporaryDirectory(prefix=f"win{index}-") as tmpdir:
        tmp = Path(tmpdir)
        files, gaps = {}, {}
        for track_id, groups in plan.groups.items():
            if not groups:
                continue
            sources = [_group_source(g, tmp) for g in groups]
            try:
                report = stitch(sources, tmp / f"{track_id}.mkv")
            except InvalidMedia as exc:
                if exc.code != "empty_media":
                    raise
                continue  # no media of this track in the window yet: it is a gap here
            files[track_id] = tmp / f"{track_id}.mkv"
            gaps[track_id] = [[g.start_ms, g.end_ms] for g in report.gaps]
        _use_sources(plan, files, gaps, tmp)
        out = tmp / "window.mp4"
        people, limits = _participants(rec, tracks, files), _limits()
        opts = CompositeOptions(layout=rec.layout if rec.layout in ("grid", "speaker", "client") else "grid")
        if fmt is None:
            fmt = output_format(people, opts.layout, limits)
            fmt = common_format([fmt, floor]) if floor is not None else fmt
        result = render_window(people, index, w, out, sized(opts, fmt, limits), end_ms=end_ms)
        segments = window_hls(out, index, w, tmp / "hls", "w")
        thumb = grab_jpeg(out, min(w, (end_ms or w * (index + 1)) - index * w) / 2, 160)
        st.put_file(keys.window_key(rec.org, rec.id, index), str(out), "video/mp4")
        for seg in segments:
            st.put_file(keys.output_key(rec.org, rec.id, f"hls/{seg.uri}"), str(tmp / "hls" / seg.uri), "video/mp2t")
        st.put_bytes(keys.window_key(rec.org, rec.id, index, "jpg"), thumb, "image/jpeg")
    manifest = {"fingerprint": plan.fingerprint, "index": index, "frames": result.frames, "format": fmt.as_list(),
                "segments": [asdict(s) for s in segments], "gaps": gaps, "speakers": result.speakers,
                "labels": result.labels}
    st.put_bytes(keys.window_key(rec.org, rec.id, index, "json"), json.dumps(manifest).encode(), "application/json")
    return manifest


def _use_sources(plan: WindowPlan, files: dict[str, Path], gaps: dict[str, list], tmp: Path) -> None:
    """Participants played (partly) from their client: both their bot tracks become the reconciled file.
    The client is only a fallback: when its media cannot be rendered, the participant keeps the bot's files."""
    for ws in plan.sources:
        try:
            track = reconcile.render_window(ws, files, tmp)
        except InvalidMedia as exc:
            log.warning("client_not_rendered", participant=ws.plan.pairing.participant_id, reason=exc.message)
            continue
        if track is None:
            continue
        p = ws.plan.pairing
        for track_id in {p.video_track, p.audio_track}:
            files[track_id] = track.path
            gaps[track_id] = [list(g) for g in track.gaps]


def _current_manifest(rec: Recording, index: int, plan: WindowPlan,
                      fmt: VideoFormat | None = None) -> dict[str, Any] | None:
    """The stored manifest if it was rendered from exactly these inputs (and at `fmt`, if given)."""
    manifest = _manifest(rec, index)
    if manifest is not None and manifest.get("fingerprint") == plan.fingerprint \
            and (fmt is None or _format_of(manifest) == fmt) \
            and res.store().exists(keys.window_key(rec.org, rec.id, index)):
        return manifest
    return None


@contextmanager
def _window_lock(recording_id: str, index: int) -> Iterator[bool]:
    """One renderer per window across workers (two chunk messages can schedule the same
    window). Yields False if the wait timed out: render anyway (the result is the same)."""
    ttl = max(60.0, res.settings.window_ms / 1000 * 20)  # expires if its holder dies mid-render
    lock = res.broker.client.lock(f"recorder:lock:window:{recording_id}:{index}", timeout=ttl,
                                  blocking_timeout=ttl)
    held = lock.acquire()
    try:
        yield held
    finally:
        if held:
            with suppress(LockError):  # expired while rendering: someone else may hold it now
                lock.release()


def _ensure_window(rec: Recording, tracks: list[Track], chunks: dict[str, list[ChunkRef]], index: int,
                   end_ms: int | None, recon: reconcile.Reconciliation | None = None,
                   fmt: VideoFormat | None = None, floor: VideoFormat | None = None) -> dict[str, Any]:
    """The window's manifest, rendering it first unless a current one is stored (at `fmt`, if given;
    a new render is at least `floor`)."""
    plan = _plan(rec, chunks, index, end_ms, recon)
    manifest = _current_manifest(rec, index, plan, fmt)
    if manifest is not None:
        log.info("window_already_rendered", index=index)
        return manifest
    step = window_step(index)
    with _window_lock(rec.id, index):
        manifest = _current_manifest(rec, index, plan, fmt)  # rendered while we waited for the lock
        if manifest is not None:
            log.info("window_already_rendered", index=index)
            return manifest
        with bound(recording_id=rec.id, phase=step), step_guard(rec.id, step):
            manifest = _render(rec, tracks, plan, index, end_ms, fmt, floor)
            log.info("window_rendered", frames=manifest["frames"], format=manifest["format"])
    return manifest


# ---------------------------------------------------------------- actors

@actor("media", step=lambda recording_id, track_id, seq: chunk_step(track_id, seq))
def process_chunk(recording_id: str, track_id: str, seq: int) -> None:
    """Validate one stored chunk, then enqueue every window that became ready."""
    with bound(recording_id=recording_id, phase="process_chunk"):
        rec, _, chunks = _load(recording_id)
        ref = next((c for c in chunks.get(track_id, []) if c.seq == seq), None)
        if ref is None:
            log.info("chunk_not_stored", track_id=track_id, seq=seq)
            return
        with step_guard(recording_id, chunk_step(track_id, seq)):
            if not ref.continuation:
                with tempfile.TemporaryDirectory(prefix="chunk-") as tmp:
                    # A timeslice header may hold no media yet (Chromium MP4: ftyp + moov only).
                    probe(_download(ref.key, Path(tmp) / f"chunk.{ref.container}"), what=f"{track_id}/{seq}",
                          require_packets=False)
        if rec.status != "recording":
            return  # finalize owns the remaining windows
        _schedule(rec, chunks, ref)


def _schedule(rec: Recording, chunks: dict[str, list[ChunkRef]], ref: ChunkRef) -> None:
    w = res.settings.window_ms
    ready = set(ready_windows(chunks, w, grace_ms=w))
    with session_scope(res.engine()) as s:
        steps = {st.step: st.status for st in s.exec(select(ProcessingStep).where(
            ProcessingStep.recording_id == rec.id, ProcessingStep.step.startswith(WINDOW_PREFIX))).all()}
    late = {i for i in range(ref.start_ms // w, (ref.end_ms or ref.start_ms) // w + 1)
            if steps.get(window_step(i)) == DONE}  # a late chunk changes finished windows
    for index in sorted((ready - {parse(k).index for k in steps}) | late):
        mark_step(res.engine(), rec.id, window_step(index), PENDING)
        enqueue(res.broker, "composite_window", rec.id, index)


@actor("media", step=lambda recording_id, index: window_step(index))
def composite_window(recording_id: str, index: int) -> None:
    """Render one window (no-op when the stored window already matches its inputs)."""
    with bound(recording_id=recording_id, phase=window_step(index)):
        rec, tracks, chunks = _load(recording_id)
        if rec.status not in ("recording", "processing"):
            # e.g. a retry after the recording failed: end a step left pending/running (a done one stays)
            give_up(res.engine(), recording_id, window_step(index),
                    f"{describe(window_step(index))} not run: the recording is {rec.status}")
            return
        recon = reconcile.stored(rec) if rec.status == "processing" else None  # as finalize renders it
        _ensure_window(rec, tracks, chunks, index, None, recon, floor=_floor(rec, index))  # records its own failures


def _floor(rec: Recording, index: int) -> VideoFormat | None:
    """The previous window's format: a window is not rendered smaller or slower than the one
    before it, so windows rarely need rendering again at finalize (`_finalize`)."""
    before = _manifest(rec, index - 1) if index > 0 else None
    return _format_of(before) if before is not None and "format" in before else None


@actor("media", step=lambda recording_id: MEDIA_FINAL)
def finalize_recording(recording_id: str) -> None:
    """Last window(s), then concat → MP4 + HLS + poster + thumbnails; marks "media.final"."""
    with bound(recording_id=recording_id, phase=MEDIA_FINAL):
        rec, tracks, chunks = _load(recording_id)
        with step_guard(recording_id, MEDIA_FINAL):
            outputs = _finalize(rec, tracks, chunks)
            with session_scope(res.engine()) as s:
                row = s.get(Recording, recording_id)
                row.outputs = {**(row.outputs or {}), **outputs}
                s.add(row)


def _settle_windows(recording_id: str, count: int) -> None:
    """Every window is in place now (finalize rendered it or found it current): a window step
    still waiting for a retry (`pending`) or failed earlier is done — else a ready recording
    would show it waiting, and its late retry would fail it. A `running` one ends itself."""
    with session_scope(res.engine()) as s:
        open_steps = [st.step for st in s.exec(select(ProcessingStep).where(
            ProcessingStep.recording_id == recording_id, ProcessingStep.step.startswith(WINDOW_PREFIX),
            ProcessingStep.status.in_((PENDING, FAILED)))).all()]
    for step in open_steps:
        if parse(step).index < count:
            mark_step(res.engine(), recording_id, step, DONE)


def _finalize(rec: Recording, tracks: list[Track], chunks: dict[str, list[ChunkRef]]) -> dict[str, Any]:
    if not chunks:
        raise InvalidMedia("recording has no valid chunks", code="no_chunks")
    w, st = res.settings.window_ms, res.store()
    recon = reconcile.reconciliation(rec)
    end = max(timeline_end(chunks), recon.total_ms if recon is not None else 0)
    count = window_count(end, w)
    ends = [end if end < (i + 1) * w else None for i in range(count)]
    manifests: list[dict[str, Any]] = []
    for i in range(count):
        floor = common_format([_format_of(m) for m in manifests]) if manifests else None
        manifests.append(_ensure_window(rec, tracks, chunks, i, ends[i], recon, floor=floor))
    # Windows are joined by stream copy: one picture size and rate for all. A window rendered
    # live before a larger (or faster) source joined is rendered again at the common format.
    target = common_format([_format_of(m) for m in manifests])
    manifests = [m if _format_of(m) == target else _ensure_window(rec, tracks, chunks, i, ends[i], recon, target)
                 for i, m in enumerate(manifests)]
    _settle_windows(rec.id, count)
    mark_step(res.engine(), rec.id, MEDIA_FINAL, RUNNING, progress=0.5)  # windows ready; joining
    with tempfile.TemporaryDirectory(prefix="final-") as tmpdir:
        tmp = Path(tmpdir)
        paths = [tmp / f"{i:06d}.mp4" for i in range(count)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda i: _download(keys.window_key(rec.org, rec.id, i), paths[i]), range(count)))
            thumbs = list(pool.map(lambda i: st.get_bytes(keys.window_key(rec.org, rec.id, i, "jpg")), range(count)))
        concat_windows(paths, w, tmp / "composite.mp4")
        poster = grab_jpeg(paths[0], min(2000, end / 2), 1280)  # at most 1280 wide, never upscaled
        out = {name: keys.output_key(rec.org, rec.id, name)
               for name in ("composite.mp4", "hls/index.m3u8", "poster.jpg", "thumbs/strip.jpg")}
        st.put_file(out["composite.mp4"], str(tmp / "composite.mp4"), "video/mp4")
    segments = [HlsSegment(**s) for m in manifests for s in m["segments"]]
    st.put_bytes(out["hls/index.m3u8"], hls_playlist(segments).encode(), "application/vnd.apple.mpegurl")
    st.put_bytes(out["poster.jpg"], poster, "image/jpeg")
    st.put_bytes(out["thumbs/strip.jpg"], thumbnail_strip(thumbs), "image/jpeg")
    gaps: dict[str, list] = {}
    for m in manifests:
        for track, spans in m["gaps"].items():
            gaps.setdefault(track, []).extend(s for s in spans if s not in gaps.get(track, []))
    return {"composite": out["composite.mp4"], "hls": out["hls/index.m3u8"], "poster": out["poster.jpg"],
            "thumbnails": out["thumbs/strip.jpg"], "duration_ms": end, "windows": count,
            "media_gaps": gaps, "labels": all(m.get("labels", False) for m in manifests),
            "sources": recon.outputs() if recon is not None else {}}
