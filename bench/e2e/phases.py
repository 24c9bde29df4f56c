"""Where one interview's worker CPU goes, per phase, measured in-process.

    python -m bench.e2e.phases [--minutes 1] [--layout grid] [--no-transcribe]

Runs the media worker's stages (as `workers.media` and `workers.transcription` call them,
without Redis, S3 or the database) on bench/e2e's cached chunks (two participants, 30-s
320x180@15 VP8 + Opus WebM) and prints CPU-seconds per phase: this process's user+system
time over all its threads (decoder, encoder and model threads included) plus its reaped
children (the label renderer's ffmpeg run). S3 transfers, the API's upload handling and the
idle stack are not here: `python -m bench.e2e` measures the whole stack.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console

from bench.e2e.run import cached_media
from compositor.composite import CompositeOptions, Participant, composite_window, output_format, sized
from compositor.outputs import concat_windows, grab_jpeg, thumbnail_strip, window_hls
from compositor.probe import probe
from compositor.sizing import VideoFormat
from compositor.stitch import Source, stitch
from recorder.demo import NAMES

LOOKBACK_MS = 5000  # as workers.media
WINDOW_MS = 30000


def cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Phases:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = cpu_s()
        try:
            yield
        finally:
            self.cpu[name] += cpu_s() - t0


def media_phases(media, minutes: float, opts: CompositeOptions, tmp: Path, ph: Phases,
                 fixed: VideoFormat | None = None) -> dict[str, int]:
    end = int(minutes * 60_000)
    with ph("chunk checks (probe)"):
        for t in media:
            for path, _, _ in t.chunks:
                probe(path, what=path.name, require_packets=False)
    windows, thumbs = [], []
    for index in range((end + WINDOW_MS - 1) // WINDOW_MS):
        start, stop = max(0, index * WINDOW_MS - LOOKBACK_MS), (index + 1) * WINDOW_MS
        people = []
        with ph("stitch (remux)"):
            for t in media:
                srcs = [Source(p, off) for p, off, dur in t.chunks if off < stop and off + dur > start]
                out = tmp / f"{t.role}-{index}.mkv"
                stitch(srcs, out)
                people.append(Participant(NAMES[t.role], out, out))
        path = tmp / f"w{index}.mp4"
        last = end if end < (index + 1) * WINDOW_MS else None
        with ph("composite (decode+draw+x264+aac)"):
            fmt = output_format(people, opts.layout) if fixed is None else fixed  # as workers.media chooses it
            composite_window(people, index, WINDOW_MS, path, sized(opts, fmt), end_ms=last)
        with ph("window HLS (copy)"):
            window_hls(path, index, WINDOW_MS, tmp / "hls", "w")
        with ph("poster/thumbnails"):
            thumbs.append(grab_jpeg(path, min(WINDOW_MS, (last or WINDOW_MS * (index + 1)) - index * WINDOW_MS) / 2,
                                    160))
        windows.append(path)
    with ph("concat (copy)"):
        concat_windows(windows, WINDOW_MS, tmp / "composite.mp4")
    with ph("poster/thumbnails"):
        grab_jpeg(windows[0], min(2000, end / 2), 1280)
        thumbnail_strip(thumbs)
    return {"composite.mp4": (tmp / "composite.mp4").stat().st_size}


def transcription_phases(media, ph: Phases) -> None:
    """Both tracks through the live path (chunk by chunk, leak gate on), as the worker runs them."""
    from transcribe import leak, model as whisper
    from transcribe.audio import decode
    from transcribe.pipeline import TrackOptions, transcribe_track
    from transcribe.pipeline import split_samples
    from transcribe.types import Speaker

    with ph("transcribe: model load"):
        model = whisper.load_model(whisper.ModelSpec())
    with ph("transcribe: audio decode"):
        audio = {t.role: [decode(p).samples for p, _, _ in t.chunks] for t in media}
    import numpy as np
    whole = {r: np.concatenate(a) for r, a in audio.items()}
    envs = {r: leak.envelope(s, 0.0) for r, s in whole.items()}
    with ph("transcribe: VAD + whisper"):
        for t in media:
            blocks = split_samples(whole[t.role], 0.0, 30.0)
            transcribe_track(model, Speaker(t.role, NAMES[t.role], t.role, t.role), blocks, TrackOptions(),
                             others=[e for r, e in envs.items() if r != t.role])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--layout", default="grid")
    ap.add_argument("--no-transcribe", action="store_true")
    ap.add_argument("--format", default="", help="WxH@FPS instead of what the sources justify (e.g. 1280x720@30, "
                    "the fixed output before the canvas followed the sources)")
    args = ap.parse_args(argv)
    console, ph = Console(), Phases()
    media = cached_media(args.minutes, console)
    with tempfile.TemporaryDirectory(prefix="bench-phases-") as tmp:
        fixed = None
        if args.format:
            size, fps = args.format.split("@")
            fixed = VideoFormat(*map(int, size.split("x")), int(fps))
        sizes = media_phases(media, args.minutes, CompositeOptions(layout=args.layout), Path(tmp), ph, fixed)
        if not args.no_transcribe:
            transcription_phases(media, ph)
    total = sum(ph.cpu.values())
    print(f"| phase ({args.minutes:g}-min interview, {args.layout}) | CPU-s | per interview-min |")
    print("|---|---:|---:|")
    for name, s in ph.cpu.items():
        print(f"| {name} | {s:.2f} | {s / args.minutes:.2f} |")
    print(f"| **total** | {total:.2f} | {total / args.minutes:.2f} |")
    print(f"composite.mp4: {sizes['composite.mp4'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
