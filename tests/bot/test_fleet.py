"""`recorder bot --processes N`: the supervisor restarts a child that dies, with a pause that
starts over after a healthy run, passes SIGTERM on, and says so when it had to kill a child.

The children here are small Python programs standing in for `recorder bot` (the supervisor
takes the command as a parameter); the signals and processes are real.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bot import fleet

SUPERVISOR = """
import sys
from bot import fleet
fleet.POLL_S = 0.05
child = tuple(sys.argv[3:])
sys.exit(fleet.run_processes(int(sys.argv[1]), stop_grace_s=float(sys.argv[2]), command=child))
"""

# A child that notes its start, then dies at once (first run) or lives until SIGTERM.
CHILD = """
import json, os, signal, sys, time
log = sys.argv[1]
with open(log, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "at": time.monotonic()}) + "\\n")
starts = sum(1 for _ in open(log))
if starts == 1:
    sys.exit(3)
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
for _ in range(600):
    time.sleep(0.1)
"""


def test_restart_pause_doubles_while_a_child_keeps_dying_and_starts_over_after_a_healthy_run() -> None:
    assert fleet.restart_pause(None, 0.5) == fleet.FIRST_PAUSE_S
    assert fleet.restart_pause(1.0, 0.5) == 2.0
    assert fleet.restart_pause(16.0, 0.5) == fleet.MAX_PAUSE_S
    assert fleet.restart_pause(fleet.MAX_PAUSE_S, 0.5) == fleet.MAX_PAUSE_S
    assert fleet.restart_pause(fleet.MAX_PAUSE_S, fleet.HEALTHY_S) == fleet.FIRST_PAUSE_S


def _run(tmp_path: Path, mode: str, grace_s: float) -> tuple[int, list[dict]]:
    log = tmp_path / "starts.jsonl"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, "1", str(grace_s), sys.executable, str(child),
                            str(log), mode], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the first child dies; the restarted one stays
            starts = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
            if len(starts) >= 2:
                break
            time.sleep(0.1)
        assert len(starts) == 2, starts
        time.sleep(0.3)
        assert psutil.pid_exists(starts[1]["pid"])
        sup.send_signal(signal.SIGTERM)
        code = sup.wait(timeout=30)
    finally:
        if sup.poll() is None:
            sup.kill()
    return code, starts


def test_a_dead_child_is_restarted_after_the_first_pause_and_sigterm_stops_all_cleanly(tmp_path: Path) -> None:
    code, starts = _run(tmp_path, "polite", grace_s=10)
    assert code == 0
    assert starts[1]["at"] - starts[0]["at"] >= fleet.FIRST_PAUSE_S
    assert not psutil.pid_exists(starts[1]["pid"])


def test_a_child_that_ignores_sigterm_is_killed_and_the_exit_code_says_so(tmp_path: Path) -> None:
    code, starts = _run(tmp_path, "stubborn", grace_s=0.5)
    assert code == 1
    assert not psutil.pid_exists(starts[1]["pid"])
