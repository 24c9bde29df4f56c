"""`recorder bot --processes N`: N bot processes, each with its own admission cap.

A bot process runs one asyncio event loop, so it uses about one core however many the
machine has; the admission cap (`RECORDER_BOT_MAX_PARTICIPANTS`) is per process. This
parent starts N children (`recorder bot --processes 1`, same environment, output to ours),
restarts one that dies (after a pause that doubles while it keeps dying and starts over once
a child has run `HEALTHY_S`), and on SIGTERM / Ctrl-C passes the signal on and waits for
every child to leave its rooms (exit 1 if one had to be killed).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from core.logging import get_logger

log = get_logger("bot.fleet")
POLL_S = 0.5
FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 30.0
HEALTHY_S = 60.0  # a child that ran this long died of something new: its next restart is prompt again
BOT_COMMAND = (sys.executable, "-m", "recorder", "bot", "--processes", "1")


def restart_pause(previous_s: float | None, uptime_s: float) -> float:
    """How long to wait before restarting a child that ran `uptime_s` and had waited
    `previous_s` before its last start (None: never restarted)."""
    if previous_s is None or uptime_s >= HEALTHY_S:
        return FIRST_PAUSE_S
    return min(MAX_PAUSE_S, previous_s * 2)


def _start(index: int, command: tuple[str, ...]) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen(list(command))
    log.info("bot_process_started", index=index, pid=proc.pid)
    return proc, time.monotonic()


def run_processes(n: int, stop_grace_s: float = 60.0, command: tuple[str, ...] = BOT_COMMAND) -> int:
    """Supervise `n` bot processes until SIGTERM/SIGINT; the exit code is 0 after a clean stop,
    1 when a child did not stop within `stop_grace_s` and was killed."""
    stopping: list[int] = []

    def _stop(signum: int, _: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = [_start(i, command) for i in range(n)]
    procs, since = [p for p, _ in started], [t for _, t in started]
    pauses: list[float | None] = [None] * n
    restart_at: list[float | None] = [None] * n
    while not stopping:
        time.sleep(POLL_S)
        for i, proc in enumerate(procs):
            if restart_at[i] is None and proc.poll() is not None:
                pauses[i] = restart_pause(pauses[i], time.monotonic() - since[i])
                log.warning("bot_process_exited", index=i, pid=proc.pid, code=proc.returncode, restart_in_s=pauses[i])
                restart_at[i] = time.monotonic() + pauses[i]
            elif restart_at[i] is not None and time.monotonic() >= restart_at[i] and not stopping:
                (procs[i], since[i]), restart_at[i] = _start(i, command), None
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(stopping[0])
    deadline, killed = time.monotonic() + stop_grace_s, 0
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("bot_process_killed", pid=proc.pid, grace_s=stop_grace_s)
            proc.kill()
            proc.wait()
            killed += 1
    return 1 if killed else 0
