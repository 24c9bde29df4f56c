"""Bounded stops: a task that ignores its cancel, or waits on a thread, cannot hang a shutdown."""
from __future__ import annotations

import asyncio
import threading

from fastapi.testclient import TestClient
from starlette.concurrency import run_in_threadpool
from structlog.testing import capture_logs

import recorder.app
from core.tasks import run_bounded, stop_tasks
from recorder.app import create_app


async def _stubborn(started: asyncio.Event) -> None:
    """Swallows cancels the way a retry loop does when a library turns them into errors."""
    started.set()
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


async def _polite() -> None:
    await asyncio.sleep(3600)


def test_stop_tasks_returns_the_stuck_ones_with_their_stack() -> None:
    async def main():
        started = asyncio.Event()
        stuck = asyncio.create_task(_stubborn(started), name="stubborn")
        polite = asyncio.create_task(_polite(), name="polite")
        await started.wait()
        with capture_logs() as logs:
            left = await stop_tasks([stuck, polite, None], 0.2, what="probe")
        state = (left, polite.cancelled(), logs)
        stuck.get_coro().close()  # end the stubborn coroutine for real (throws GeneratorExit in)
        return state

    left, polite_cancelled, logs = asyncio.run(main())
    assert [t.get_name() for t in left] == ["stubborn"] and polite_cancelled
    (event,) = [e for e in logs if e["event"] == "task_stop_timed_out"]
    assert event["what"] == "probe" and "_stubborn" in event["stack"]


def test_run_bounded_leaves_a_hook_that_waits_on_a_thread() -> None:
    release = threading.Event()

    async def hook() -> None:
        await asyncio.to_thread(release.wait, 30)  # a thread cannot be cancelled

    async def main():
        with capture_logs() as logs:
            finished = await run_bounded(hook(), 0.2, what="probe")
        release.set()
        return finished, logs

    finished, logs = asyncio.run(main())
    assert finished is False
    (event,) = [e for e in logs if e["event"] == "task_timed_out"]
    assert event["what"] == "probe" and "hook" in event["stack"]


def test_run_bounded_logs_a_failing_hook_and_goes_on() -> None:
    async def hook() -> None:
        raise RuntimeError("boom")

    with capture_logs() as logs:
        assert asyncio.run(run_bounded(hook(), 1.0, what="probe")) is True
    assert any(e["event"] == "task_failed" and "boom" in e["error"] for e in logs)


def test_app_shutdown_goes_past_a_hung_hook_and_runs_the_rest(settings, monkeypatch) -> None:
    monkeypatch.setattr(recorder.app, "SHUTDOWN_HOOK_S", 0.3)
    app = create_app(settings)
    later: list[str] = []

    release = threading.Timer(3.0, lambda: None)  # the thread the hook waits on ends by itself

    async def hung(app) -> None:  # noqa: ANN001 -- waits on a worker thread: a cancel cannot end it
        release.start()
        await run_in_threadpool(release.join)

    async def after(app) -> None:  # noqa: ANN001
        later.append("ran")

    app.state.on_shutdown.insert(0, hung)
    app.state.on_shutdown.append(after)
    with capture_logs() as logs:
        with TestClient(app) as c:
            assert c.get("/healthz").status_code == 200
    assert later == ["ran"]  # the hooks after the hung one still ran, signaling's stop among them
    (event,) = [e for e in logs if e["event"] == "task_timed_out"]
    assert "hung" in event["what"] and "release.join" in event["stack"]
