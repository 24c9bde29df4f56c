"""`DEMO_EXIT=1 recorder demo`: the call path end to end, exit 0, no process left behind."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from recorder.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_call_path_ends_ready_and_leaves_no_processes(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    env["DEMO_EXIT"] = "1"
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run([sys.executable, "-m", "recorder", "demo", "--minutes", "0.5", "--data-dir",
                           str(tmp_path / "var"), "--api-port", str(port)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "the bot is recording" in out and "ready" in out and "/review/rec_" in out and "?token=ey" in out
    assert "client chunks" in out and "search 'PostgreSQL'" in out
    # every track of the 30-s call was recorded by the bot, from start to hang-up, without gaps
    tracks = [line for line in out.splitlines() if line.strip().startswith("track ")]
    assert len(tracks) == 4, tracks
    for line in tracks:
        covered = int(re.search(r"(\d+) s covered", line).group(1))
        assert covered >= 28 and line.rstrip().endswith("gaps: none"), line
    leftovers = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] not in before
                 and any(str(port) in arg or str(tmp_path) in arg for arg in (p.info["cmdline"] or []))]
    assert leftovers == [], [p.info["cmdline"] for p in leftovers]
