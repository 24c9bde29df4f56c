"""Media benchmarks → bench/media/RESULTS.md.  `python -m bench.media [--quick] [--only a b c]`.

(a) stitch vs the ffmpeg concat demuxer, (b) composite vs the ffmpeg CLI, (c) hang-up → ready.
`--only` runs some of them and replaces just their sections in RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import time
from pathlib import Path

from bench.media import composite_bench, latency_bench, stitch_bench

HERE = Path(__file__).resolve().parent
TITLES = {"a": "## (a) Stitch vs `ffmpeg -f concat -c copy`",
          "b": "## (b) Composite vs ffmpeg CLI `xstack` + `amix`",
          "c": "## (c) Hang-up → ready (media)"}


def _sections(text: str) -> dict[str, str]:
    """Existing RESULTS.md sections by letter (each with its own run line)."""
    out = {}
    for part in re.split(r"\n(?=## \()", text):
        m = re.match(r"## \(([abc])\)", part)
        if m:
            out[m.group(1)] = part.strip()
    return out


def _run(which: str, work: Path, quick: bool) -> str:
    if which == "a":
        return stitch_bench.run(work, seconds=20 if quick else 60, chunk_s=5 if quick else 10)
    if which == "b":
        return composite_bench.run(work, seconds=10 if quick else 30, rounds=2 if quick else 4)
    return latency_bench.run(work, [2, 5] if quick else [5, 15, 30])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short inputs (< 1.5 min)")
    parser.add_argument("--only", nargs="+", choices=sorted(TITLES), default=sorted(TITLES),
                        help="run only these parts (a=stitch, b=composite, c=latency)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    sections = _sections(args.out.read_text()) if args.out.exists() else {}
    work = latency_bench.tmp_work()
    try:
        for which in args.only:
            started, load = time.time(), os.getloadavg()[0]
            body = _run(which, work, args.quick)
            print(body, flush=True)
            run_line = (f"`python -m bench.media{' --quick' if args.quick else ''}` — "
                        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
                        f"{os.cpu_count()} cores, load average {load:.1f} → {os.getloadavg()[0]:.1f} "
                        f"(other jobs on the machine), {time.time() - started:.0f} s.")
            sections[which] = "\n\n".join([TITLES[which], run_line, body])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n\n".join(["# Media benchmarks",
                        "Figures vary ±25% run to run on shared 2-core machines (other jobs run alongside): "
                        "compare ratios within one run. Each section says when it was last run."]
                       + [sections[k] for k in sorted(sections)]) + "\n"
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
