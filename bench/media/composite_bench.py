"""(b) composite (PyAV graph) vs the ffmpeg CLI xstack + amix command, same x264/AAC settings."""
from __future__ import annotations

from pathlib import Path

from bench.media.common import ffmpeg, interview_clip, table, timed
from compositor.composite import CompositeOptions, Participant, composite_window
from compositor.layout import grid
from compositor.stitch import Source, stitch

W, H = 1280, 720


def _cli(inputs: list[Path], out: Path, seconds: float) -> None:
    tiles = grid(len(inputs), W, H)
    chains = [f"[{i}:v]scale={t.w}:{t.h},setsar=1[v{i}]" for i, t in enumerate(tiles)]
    layout = "|".join(f"{t.x}_{t.y}" for t in tiles)
    vids = "".join(f"[v{i}]" for i in range(len(inputs)))
    auds = "".join(f"[{i}:a]" for i in range(len(inputs)))
    graph = ";".join(chains + [f"{vids}xstack=inputs={len(inputs)}:layout={layout}:fill=black,"
                               f"pad={W}:{H}:0:0:black,fps=30[v]",
                               f"{auds}amix=inputs={len(inputs)}:normalize=0,aformat=channel_layouts=mono[a]"])
    args = []
    for p in inputs:
        args += ["-i", str(p)]
    ffmpeg(*args, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "23", "-g", "150", "-keyint_min", "150", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
           "-ar", "48000", "-t", str(seconds), "-movflags", "+faststart", str(out))


def run(work: Path, seconds: float) -> str:
    clips = [interview_clip(work / f"tile{i}.webm", seconds, (640, 360), f"P{i}") for i in range(4)]
    stitched = []
    for i, c in enumerate(clips):
        stitch([Source(c, 0)], work / f"tile{i}.mkv")
        stitched.append(work / f"tile{i}.mkv")
    rows = []
    for n in (2, 4):
        people = [Participant(f"Person {i}", p, p) for i, p in enumerate(stitched[:n])]
        ms = int(seconds * 1000)
        t_ours = t_cli = float("inf")
        for _ in range(2):  # interleaved, best of 2: other load on the machine hits both alike
            t_ours = min(t_ours, timed(lambda: composite_window(people, 0, ms, work / f"ours{n}.mp4",
                                                                CompositeOptions()))[0])
            t_cli = min(t_cli, timed(lambda: _cli(clips[:n], work / f"cli{n}.mp4", seconds))[0])
        rows.append([f"{n} tiles → 1280×720", f"{t_ours:.2f}", f"{t_cli:.2f}", f"{t_ours / t_cli:.2f}",
                     f"{seconds / t_ours:.1f}×", f"{seconds / t_cli:.1f}×"])
    return table(["layout", "PyAV s", "CLI s", "time ratio (PyAV/CLI)", "PyAV × realtime", "CLI × realtime"], rows) + (
        f"\n\n{seconds:g} s of 640×360 VP8/Opus per participant; libx264 veryfast crf 23 g 150 yuv420p, AAC 96k "
        "mono, faststart. PyAV side includes labels (ffmpeg-CLI-rendered masks), VAD + gain, and decoding "
        "5 s of look-back; the CLI side is xstack + amix only (no labels, no loudness). CLI = Debian ffmpeg 5.1 "
        "(its own x264 build); PyAV bundles FFmpeg 8. Best of 2 interleaved runs each.")
