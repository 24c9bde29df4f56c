"""`make bench`: every bench/ suite, then bench/results/latest.{json,md} and the README table.

    python -m bench [--quick] [--only ingest e2e ...]     (BENCH_QUICK=1 is --quick)

Each suite runs as its own process (`python -m bench.<suite> [--quick]`) and emits its
headline rows (`bench.results.emit`); a suite that fails is reported as a row with its
exit code and the run goes on. Rows get the machine (CPU model, cores, load) and the time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_markdown, write_readme

SUITES = ["ingest", "media", "signaling", "transcribe", "bot", "e2e"]
OUT = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    model = platform.processor() or ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 1)}


def run_suite(suite: str, quick: bool, rows_file: Path) -> tuple[int, float]:
    cmd = [sys.executable, "-m", f"bench.{suite}"] + (["--quick"] if quick else [])
    print(f"== {' '.join(cmd[1:])}", flush=True)
    t = time.monotonic()
    rc = subprocess.run(cmd, env={**os.environ, "BENCH_ROWS": str(rows_file)}, check=False).returncode
    return rc, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    ap.add_argument("--only", nargs="+", choices=SUITES, default=SUITES)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    rows: list[dict] = []
    for suite in args.only:
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as tmp:
            mach = machine()
            rc, took = run_suite(suite, args.quick, Path(tmp.name))
            got = [json.loads(line) for line in Path(tmp.name).read_text().splitlines() if line.strip()]
        if rc != 0:
            got.append({"suite": suite, "metric": f"suite failed (exit {rc})", "ours": None, "baseline": None,
                        "ratio": None, "target": "", "met": False, "unit": ""})
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for row in got:
            rows.append({**row, "quick": args.quick, "seconds": round(took), "machine": mach, "when": when})
    if set(args.only) != set(SUITES) and (OUT / "latest.json").exists():  # keep the other suites' rows
        rows = [r for r in json.loads((OUT / "latest.json").read_text()) if r["suite"] not in args.only] + rows
        rows.sort(key=lambda r: SUITES.index(r["suite"]) if r["suite"] in SUITES else len(SUITES))
    (OUT / "latest.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    print(write_markdown(rows, OUT / "latest.md"))
    write_readme(rows)


if __name__ == "__main__":
    main()
