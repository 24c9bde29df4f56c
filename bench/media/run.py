"""Media benchmarks → bench/media/RESULTS.md.  `python -m bench.media [--quick]`."""
from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path

from bench.media import composite_bench, latency_bench, stitch_bench

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short inputs (< 1.5 min)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    work = latency_bench.tmp_work()
    started = time.time()
    try:
        a = stitch_bench.run(work, seconds=20 if args.quick else 60, chunk_s=5 if args.quick else 10)
        print(a, flush=True)
        b = composite_bench.run(work, seconds=10 if args.quick else 30)
        print(b, flush=True)
        c = latency_bench.run(work, [2, 5] if args.quick else [5, 15, 30])
        print(c, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n\n".join([
        "# Media benchmarks",
        f"`python -m bench.media{' --quick' if args.quick else ''}` — {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.processor() or platform.machine()}, total {time.time() - started:.0f} s. Figures vary ±25% "
        "run to run on shared 2-core machines; compare within one run.",
        "## (a) Stitch vs `ffmpeg -f concat -c copy`", a,
        "## (b) Composite vs ffmpeg CLI `xstack` + `amix`", b,
        "## (c) Hang-up → ready (media)", c, ""])
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
