"""Stopping background asyncio tasks within a bound.

A shutdown must never hang on one task. `task.cancel()` followed by `await task` waits
as long as the task takes to honour the cancel, and a task can take forever: one that
waits on a worker thread (`run_in_threadpool` defers the cancel until the thread
returns), or one whose library turns the `CancelledError` into an error that a retry
loop catches. `stop_tasks` cancels, waits at most `timeout_s`, and logs the stack of
every task that is still running, so a stuck stop names its cause instead of hanging.
"""
from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable

from core.logging import get_logger

log = get_logger("recorder.tasks")
STACK_LIMIT = 12  # frames per task in the log line: enough to see the awaited call
STOP_TASKS_S = 3.0  # a background loop (relay, sweepers) gets this long to honour its cancel


def task_stack(task: asyncio.Task) -> str:
    """The task's current stack as text (most recent call last)."""
    out = io.StringIO()
    task.print_stack(limit=STACK_LIMIT, file=out)
    return out.getvalue()


async def stop_tasks(tasks: Iterable[asyncio.Task | None], timeout_s: float, *, what: str) -> list[asyncio.Task]:
    """Cancel `tasks` and wait up to `timeout_s` for them to end; returns the ones that did
    not (each logged once with its stack). Never raises for the tasks' own errors."""
    pending = [t for t in tasks if t is not None and not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return []
    _, stuck = await asyncio.wait(pending, timeout=timeout_s)
    for task in stuck:
        log.error("task_stop_timed_out", what=what, task=task.get_name(), timeout_s=timeout_s,
                  stack=task_stack(task))
    return list(stuck)


async def run_bounded(coro, timeout_s: float, *, what: str) -> bool:  # noqa: ANN001 -- any awaitable
    """Run `coro` as a task for at most `timeout_s`; past it, log its stack (and every other
    task's name), cancel it and go on without waiting. True if it finished in time."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task_failed", what=what, error=repr(task.exception()))
        return True
    others = sorted(t.get_name() for t in asyncio.all_tasks() if not t.done() and t is not task)
    log.error("task_timed_out", what=what, timeout_s=timeout_s, stack=task_stack(task), other_tasks=others)
    task.cancel()
    return False
