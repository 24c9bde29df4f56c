"""Rows of `make bench`: each suite calls `emit(...)` for its headline numbers.

`python -m bench` sets BENCH_ROWS to a JSON-lines file and runs every suite; `emit` appends
one row there (and does nothing when a suite runs on its own). A row: suite, metric, ours,
baseline (same run, same machine; None when there is none), ratio (ours / baseline), target
(text, e.g. "≥ 0.8×"), met (True/False/None) and unit.
"""
from __future__ import annotations

import json
import os
from typing import Any


def emit(suite: str, metric: str, ours: float | None, baseline: float | None = None, *, target: str = "",
         met: bool | None = None, unit: str = "") -> dict[str, Any]:
    """Record one headline number of a suite for bench/results/latest.json."""
    ratio = (ours / baseline) if ours is not None and baseline else None
    row = {"suite": suite, "metric": metric, "ours": _round(ours), "baseline": _round(baseline),
           "ratio": _round(ratio), "target": target, "met": None if met is None else bool(met), "unit": unit}
    path = os.environ.get("BENCH_ROWS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")
    return row


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{float(x):.4g}")
