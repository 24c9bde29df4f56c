"""Two sources of one participant (bot segments, client chunks) → one track on the bot's timing.

    estimate_offset(ref, other, rate, ...)   -> Alignment       where `other` lies against `ref`
    plan_sources(coverage, offsets, total)   -> [SourceSpan]    which source plays which span
    source_by_second(plan, total_ms)         -> [str | None]    per second, for the ledger
    clip_plan(plan, start, end)              -> [SourceSpan]    the plan inside one timeline window
    uncovered(plan, start, end)              -> [(start, end)]  what no source covers there
    overlap_span(a, b, max_ms)               -> (start, end)    the stretch two coverages share most of
    covered_spans(path)                      -> [(start, end)]  where a stitched track has media
    source_coverage(files)                   -> [(start, end)]  the same for a source's video ∩ audio
    align_tracks(ref_path, other_path, ...)  -> Alignment       estimate_offset on stitched files
    render_plan(files, plan, end, out)       -> Path            the reconciled audio+video file

Both sources are stitched first (timestamps = timeline ms, each on its own clock). The
client's clock is the browser's, so its declared chunk starts can be off by hundreds of ms:
the offset is measured from the audio itself (both hear the same microphone), by FFT
cross-correlation of band-limited PCM in a bounded window around the declared difference.
Where both cover a span the bot wins (one timing basis for every participant); the client
fills what the bot lost (network); the bot fills what the client lost (tab crash).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import av
import numpy as np

from compositor.decode import audio_samples, video_frames
from compositor.probe import open_media
from core.errors import InvalidMedia

__all__ = ["Alignment", "SourceSpan", "SourceFiles", "estimate_offset", "align_tracks", "plan_sources",
           "source_by_second", "clip_plan", "uncovered", "overlap_span", "covered_spans", "source_coverage",
           "render_plan", "shared_spans", "keep_only", "PREFERENCE", "MIN_CONFIDENCE", "MIN_SHARPNESS"]

PREFERENCE = ("bot", "client")  # where several sources cover a window, the first one wins
Interval = tuple[int, int]
MIN_CONFIDENCE, MIN_SHARPNESS = 10.0, 1.5


@dataclass(frozen=True)
class Alignment:
    """`other` media at time t belongs at `t + offset_ms` on `ref`'s timeline.

    confidence: the peak's height in standard deviations of the correlation over the search
    window (unrelated audio: ~4–5, the maximum of that many random lags; the same speech
    through two codecs: tens). sharpness: the peak over the best value more than 50 ms away.
    """

    offset_ms: float
    confidence: float
    sharpness: float

    @property
    def reliable(self) -> bool:
        """True when the peak stands out enough to move a source by it."""
        return self.confidence >= MIN_CONFIDENCE and self.sharpness >= MIN_SHARPNESS


@dataclass(frozen=True)
class SourceSpan:
    """Timeline [start_ms, end_ms) plays `source`, whose media time = timeline - offset_ms."""

    source: str
    start_ms: int
    end_ms: int
    offset_ms: float = 0.0


@dataclass(frozen=True)
class SourceFiles:
    """One source's stitched files: video and audio (the same file when it carries both)."""

    video: Path | None
    audio: Path | None

    @classmethod
    def of(cls, value: "SourceFiles | Path | str") -> "SourceFiles":
        return value if isinstance(value, SourceFiles) else cls(Path(value), Path(value))


# ---------------------------------------------------------------- alignment (pure)

def _whiten(x: np.ndarray, rate: int) -> np.ndarray:
    """Zero-mean, 100 Hz … 3.4 kHz (speech band, what every codec keeps), pre-emphasised."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean() if x.size else x
    x = np.append(x[0], x[1:] - 0.95 * x[:-1]) if x.size > 1 else x
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    spec[(freqs < 100) | (freqs > 3400)] = 0
    return np.fft.irfft(spec, x.size)


def estimate_offset(ref: np.ndarray, other: np.ndarray, rate: int, expected_ms: float = 0.0,
                    search_ms: float = 2000.0) -> Alignment:
    """Offset of `other` against `ref` (mono PCM at `rate`, both from timeline 0) by FFT cross-correlation.

    Only lags within `expected_ms ± search_ms` are considered; the peak is refined to a
    fraction of a sample by a parabola through its neighbours. Holes (silence) in either
    signal simply contribute nothing, so sources with different gaps align as well.
    """
    a, b = _whiten(ref, rate), _whiten(other, rate)
    n = 1 << math.ceil(math.log2(max(1, a.size + b.size)))
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)  # corr[k] = Σ a[i+k]·b[i]
    lo = int(math.floor((expected_ms - search_ms) * rate / 1000))
    hi = int(math.ceil((expected_ms + search_ms) * rate / 1000))
    lags = np.arange(lo, hi + 1)
    values = corr[lags % n]
    best = int(np.argmax(values))
    peak = float(values[best])
    frac = 0.0
    if 0 < best < values.size - 1:
        y0, y1, y2 = values[best - 1], values[best], values[best + 1]
        denom = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / denom if denom else 0.0
    spread = float(values.std()) or 1.0
    far = np.abs(lags - lags[best]) > 0.05 * rate
    runner_up = float(values[far].max()) if far.any() else 0.0
    return Alignment(offset_ms=float((lags[best] + frac) * 1000 / rate), confidence=(peak - float(values.mean())) / spread,
                     sharpness=peak / runner_up if runner_up > 0 else math.inf)


def keep_only(pcm: np.ndarray, spans: Sequence[Interval], first_ms: float, rate: int) -> np.ndarray:
    """`pcm` (starting at timeline `first_ms`) with everything outside `spans` silenced: media only
    one source has would add to the correlation's spread and nothing to its peak."""
    out = np.zeros_like(pcm)
    for s, e in spans:
        lo, hi = max(0, round((s - first_ms) * rate / 1000)), min(pcm.size, round((e - first_ms) * rate / 1000))
        if hi > lo:
            out[lo:hi] = pcm[lo:hi]
    return out


def align_tracks(ref_path: Path, other_path: Path, total_ms: int, expected_ms: float = 0.0,
                 search_ms: float = 2000.0, rate: int = 8000, start_ms: int = 0,
                 shared: Sequence[Interval] | None = None) -> Alignment:
    """`estimate_offset` on the audio [start_ms, total_ms) of two stitched track files (timestamps =
    timeline ms); the same stretch of both, so the lag is the same as over the whole files.
    `shared`: where both have media (declared times); the rest of both is silenced first."""
    first, last = int(start_ms * rate / 1000), int(total_ms * rate / 1000)
    ref = audio_samples(Path(ref_path), first, last, rate)
    other = audio_samples(Path(other_path), first, last, rate)
    if shared is not None:
        ref, other = keep_only(ref, shared, start_ms, rate), keep_only(other, shared, start_ms, rate)
    return estimate_offset(ref, other, rate, expected_ms, search_ms)


# ---------------------------------------------------------------- coverage choice (pure)

def _shift(spans: Sequence[Interval], offset_ms: float) -> list[tuple[float, float]]:
    return [(s + offset_ms, e + offset_ms) for s, e in spans]


def _covers(spans: Sequence[tuple[float, float]], start: int, end: int, slack_ms: float) -> bool:
    return any(s <= start + slack_ms and e >= end - slack_ms for s, e in spans)


def plan_sources(coverage: Mapping[str, Sequence[Interval]], offsets: Mapping[str, float], total_ms: int,
                 step_ms: int = 1000, preference: Sequence[str] = PREFERENCE,
                 slack_ms: float = 50.0) -> list[SourceSpan]:
    """Per `step_ms` window, the first source in `preference` that covers all of it.

    coverage: each source's covered intervals on its own clock (drop frozen or broken
    stretches from them first); offsets: what aligns each source to the timeline
    (timeline = own + offset). Consecutive windows of one source merge into one span;
    windows that no source covers are left out (the renderer fills them with black/silence).
    A source still covers a window when it misses up to `slack_ms` at either edge (codec
    priming moves a segment's first packet a few ms, less than a video frame or two).
    """
    shifted = {name: _shift(coverage.get(name, ()), offsets.get(name, 0.0)) for name in preference}
    plan: list[SourceSpan] = []
    for start in range(0, total_ms, step_ms):
        end = min(total_ms, start + step_ms)
        name = next((n for n in preference if _covers(shifted[n], start, end, slack_ms)), None)
        if name is None:
            continue
        if plan and plan[-1].source == name and plan[-1].end_ms == start:
            plan[-1] = SourceSpan(name, plan[-1].start_ms, end, plan[-1].offset_ms)
        else:
            plan.append(SourceSpan(name, start, end, float(offsets.get(name, 0.0))))
    return plan


def source_by_second(plan: Sequence[SourceSpan], total_ms: int) -> list[str | None]:
    """Which source covers each second of the timeline (the source holding its midpoint), None = neither."""
    out = []
    for second in range(math.ceil(total_ms / 1000)):
        mid = second * 1000 + 500
        out.append(next((s.source for s in plan if s.start_ms <= mid < s.end_ms), None))
    return out


def clip_plan(plan: Sequence[SourceSpan], start_ms: int, end_ms: int) -> list[SourceSpan]:
    """The spans of `plan` inside [start_ms, end_ms), cut at its edges."""
    out = []
    for s in plan:
        lo, hi = max(s.start_ms, start_ms), min(s.end_ms, end_ms)
        if hi > lo:
            out.append(SourceSpan(s.source, lo, hi, s.offset_ms))
    return out


def uncovered(plan: Sequence[SourceSpan], start_ms: int, end_ms: int) -> list[Interval]:
    """Stretches of [start_ms, end_ms) that no span of `plan` covers (black + silence when rendered)."""
    return [(s.start_ms, s.end_ms) for s in _timeline(clip_plan(plan, start_ms, end_ms), start_ms, end_ms)
            if not s.source]


def shared_spans(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Where both coverages have media."""
    return _intersect(a, b)


def overlap_span(a: Sequence[Interval], b: Sequence[Interval], max_ms: int) -> Interval | None:
    """The stretch of at most `max_ms` where both coverages share the most media (what alignment
    reads: the holes inside it contribute nothing, the shared speech all of it). Candidates start
    where a shared interval starts; None when the two share nothing."""
    shared = _intersect(a, b)
    if not shared:
        return None

    def held(start: int) -> int:
        return sum(max(0, min(e, start + max_ms) - max(s, start)) for s, e in shared)

    start = max((s for s, _ in shared), key=held)
    return start, min(start + max_ms, max(e for _, e in shared))


# ---------------------------------------------------------------- I/O: coverage, rendering

def _merge(times: Sequence[tuple[float, float]], gap_ms: float) -> list[Interval]:
    out: list[list[float]] = []
    for s, e in sorted(times):
        if out and s <= out[-1][1] + gap_ms:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(int(round(s)), int(round(e))) for s, e in out]


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if e > s:
                out.append((s, e))
    return sorted(out)


def covered_spans(path: Path, gap_ms: float = 250.0, kinds: Sequence[str] | None = None) -> list[Interval]:
    """Timeline intervals where a stitched track has every kind of media it carries (audio ∩ video),
    or, with `kinds`, every one of those kinds (a kind the file lacks: nothing is covered).

    Read from packet timestamps (no decoding); a jump longer than `gap_ms` ends an interval.
    """
    per_kind: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds or ()}
    with open_media(Path(path)) as c:
        streams = [s for s in c.streams if s.type in (kinds or ("audio", "video"))]
        if not streams:  # (demux of no stream would read them all)
            return []
        scale = {s.index: float(s.time_base * 1000) for s in streams}
        for pkt in c.demux(streams):
            if pkt.pts is None:
                continue
            t = pkt.pts * scale[pkt.stream_index]
            dur = (pkt.duration or 0) * scale[pkt.stream_index] or 40.0
            per_kind.setdefault(pkt.stream.type, []).append((t, t + dur))
    spans: list[Interval] | None = None
    for times in per_kind.values():
        merged = _merge(times, gap_ms)
        spans = merged if spans is None else _intersect(spans, merged)
    return spans or []


def source_coverage(files: "SourceFiles | Path") -> list[Interval]:
    """`covered_spans` of a source whose video and audio may live in two files (their intersection)."""
    f = SourceFiles.of(files)
    if f.video is None or f.audio is None:
        return []
    if f.video == f.audio:
        return covered_spans(f.video)
    return _intersect(covered_spans(f.video), covered_spans(f.audio))


@dataclass(frozen=True)
class _Out:
    width: int
    height: int
    fps: int
    rate: int


def _video_size(files: Mapping[str, SourceFiles]) -> tuple[int, int]:
    for f in files.values():
        if f.video is None:
            continue
        with open_media(f.video) as c:
            if c.streams.video:
                cc = c.streams.video[0].codec_context
                return cc.width, cc.height
    raise InvalidMedia("no source of the reconciled track has video", code="no_video")


def _span_frames(path: Path, span: SourceSpan, fmt: _Out) -> Iterator[av.VideoFrame]:
    """One output frame per tick of `span`: the source frame nearest to it (half a frame either way)."""
    ticks = range(math.ceil(span.start_ms * fmt.fps / 1000), math.ceil(span.end_ms * fmt.fps / 1000))
    frames = video_frames(Path(path), span.start_ms - span.offset_ms, span.end_ms - span.offset_ms)
    half = 500 / fmt.fps
    cur = nxt = next(frames, None)
    try:
        for k in ticks:
            want = k * 1000 / fmt.fps - span.offset_ms
            while nxt is not None and nxt[0] <= want + half:
                cur, nxt = nxt, next(frames, None)
            yield None if cur is None else cur[1]
    finally:
        frames.close()


def _audio_blocks(path: Path, span: SourceSpan, fmt: _Out, block_s: int = 10) -> Iterator[np.ndarray]:
    """The span's audio (timeline samples, source read at timeline - offset) in blocks of `block_s`."""
    first = math.ceil(span.start_ms * fmt.rate / 1000)
    last = math.ceil(span.end_ms * fmt.rate / 1000)
    shift = int(round(span.offset_ms * fmt.rate / 1000))
    for lo in range(first, last, block_s * fmt.rate):
        hi = min(last, lo + block_s * fmt.rate)
        yield audio_samples(Path(path), lo - shift, hi - shift, fmt.rate)


def _black(fmt: _Out) -> av.VideoFrame:
    yuv = np.full((fmt.height * 3 // 2, fmt.width), 128, dtype=np.uint8)
    yuv[:fmt.height] = 16  # video-range black
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def _timeline(plan: Sequence[SourceSpan], start_ms: int, end_ms: int) -> list[SourceSpan]:
    """`plan` with the holes filled by SourceSpan(source="", …) so the spans tile [start_ms, end_ms)."""
    out, at, total_ms = [], start_ms, end_ms
    for s in sorted(plan, key=lambda s: s.start_ms):
        if s.start_ms > at:
            out.append(SourceSpan("", at, s.start_ms))
        out.append(s)
        at = s.end_ms
    if at < total_ms:
        out.append(SourceSpan("", at, total_ms))
    return out


class _Encoder:
    """H.264 + Opus into Matroska, fed in timeline order; counts the ticks and samples written."""

    def __init__(self, out: av.container.OutputContainer, fmt: _Out, start_ms: int = 0) -> None:
        self.out, self.fmt = out, fmt
        self.tick, self.sample = math.ceil(start_ms * fmt.fps / 1000), math.ceil(start_ms * fmt.rate / 1000)
        self.video = out.add_stream("libx264", rate=fmt.fps, options={"preset": "veryfast", "crf": "23"})
        self.video.width, self.video.height, self.video.pix_fmt = fmt.width, fmt.height, "yuv420p"
        self.video.time_base = Fraction(1, fmt.fps)
        self.video.thread_type = "AUTO"
        self.audio = out.add_stream("libopus", rate=fmt.rate, layout="mono")
        self.audio.format = "flt"
        # Opus codes 20-ms frames; the resampler cuts the decoded spans into them.
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=fmt.rate, frame_size=960)

    def frame(self, src: av.VideoFrame | None) -> None:
        f = _black(self.fmt) if src is None else src.reformat(self.fmt.width, self.fmt.height, "yuv420p")
        f.pts, f.time_base = self.tick, Fraction(1, self.fmt.fps)
        f.pict_type = av.video.frame.PictureType.NONE  # input keyframe types must not leak into x264
        self.out.mux(self.video.encode(f))
        self.tick += 1

    def pcm(self, samples: np.ndarray) -> None:
        f = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        f.sample_rate, f.pts, f.time_base = self.fmt.rate, self.sample, Fraction(1, self.fmt.rate)
        self.sample += samples.size
        for piece in self.resampler.resample(f):
            self.out.mux(self.audio.encode(piece))

    def close(self) -> None:
        for piece in self.resampler.resample(None):
            self.out.mux(self.audio.encode(piece))
        self.out.mux(self.audio.encode(None))
        self.out.mux(self.video.encode(None))


def _render_span(enc: _Encoder, files: SourceFiles | None, span: SourceSpan) -> None:
    fmt = enc.fmt
    ticks = math.ceil(span.end_ms * fmt.fps / 1000) - enc.tick
    video = files.video if files is not None else None
    frames = _span_frames(video, span, fmt) if video is not None else iter(())
    try:
        for _ in range(ticks):
            enc.frame(next(frames, None))
    finally:
        getattr(frames, "close", lambda: None)()
    if files is None or files.audio is None:
        enc.pcm(np.zeros(math.ceil(span.end_ms * fmt.rate / 1000) - enc.sample, np.float32))
        return
    for pcm in _audio_blocks(files.audio, span, fmt):
        enc.pcm(pcm)


def render_plan(files: Mapping[str, SourceFiles | Path], plan: Sequence[SourceSpan], total_ms: int, out_path: Path,
                fps: int = 30, rate: int = 48000, start_ms: int = 0) -> Path:
    """Write one reconciled track (Matroska: H.264 + Opus, timestamps = timeline) from `plan`.

    Every span is decoded from its source at `timeline - offset_ms` and re-timed onto the
    timeline; spans no source covers get black frames and silence, so the output runs
    exactly [start_ms, total_ms) with no holes in its timestamps. A source's `files` are one
    file carrying both kinds, or `SourceFiles(video, audio)`.
    """
    sources = {name: SourceFiles.of(f) for name, f in files.items()}
    fmt = _Out(*_video_size(sources), fps, rate)
    with av.open(str(out_path), "w", format="matroska") as out:
        enc = _Encoder(out, fmt, start_ms)
        for span in _timeline(clip_plan(plan, start_ms, total_ms), start_ms, total_ms):
            _render_span(enc, sources[span.source] if span.source else None, span)
        enc.close()
    return Path(out_path)
