"""`recorder bot --processes N`: N bot processes, each with its own admission cap.

A bot process runs one asyncio event loop, so it uses about one core however many the
machine has; the admission cap (`RECORDER_BOT_MAX_PARTICIPANTS`) is per process. This
parent starts N children (`recorder bot --processes 1`, same environment, output to ours),
restarts one that dies (after a pause that grows while it keeps dying), and on SIGTERM /
Ctrl-C passes the signal on and waits for every child to leave its rooms.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from core.logging import get_logger

log = get_logger("bot.fleet")
POLL_S = 0.5
MAX_PAUSE_S = 30.0


def _start(index: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "recorder", "bot", "--processes", "1"])
    log.info("bot_process_started", index=index, pid=proc.pid)
    return proc


def run_processes(n: int, stop_grace_s: float = 60.0) -> int:
    """Supervise `n` bot processes until SIGTERM/SIGINT; the exit code is 0 after a clean stop."""
    stopping: list[int] = []

    def _stop(signum: int, _: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    procs = [_start(i) for i in range(n)]
    pauses = [1.0] * n
    restart_at: list[float | None] = [None] * n
    while not stopping:
        time.sleep(POLL_S)
        for i, proc in enumerate(procs):
            if restart_at[i] is None and proc.poll() is not None:
                log.warning("bot_process_exited", index=i, pid=proc.pid, code=proc.returncode, restart_in_s=pauses[i])
                restart_at[i] = time.monotonic() + pauses[i]
                pauses[i] = min(MAX_PAUSE_S, pauses[i] * 2)
            elif restart_at[i] is not None and time.monotonic() >= restart_at[i] and not stopping:
                procs[i], restart_at[i] = _start(i), None
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(stopping[0])
    deadline = time.monotonic() + stop_grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return 0
