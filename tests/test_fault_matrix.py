"""Fault matrix (issue #10): faults injected while a short interview runs end to end.

Each case plays the same interview (2 participants × 3 chunks of 3 s, espeak voices + test
pattern) through the real API (uvicorn) to real `dramatiq` workers (media + transcribe +
default queues) on real Redis and a real S3 server, injects one fault mid-interview, and
compares the result with one undisturbed run of the same module (`baseline`).

"Identical" means, for inputs that are byte-identical (same chunk bytes, same X-Chunk-Start
on a fixed epoch `T0`, same settings):
- transcript: the same segments — speaker, text, start/end ms and every word with its
  start/end ms, exactly (decoding is deterministic: same model, same audio, same windows);
- composite: same codecs, duration, window count, media gaps, HLS segment count, the same
  number of video frames with the same SHA-256 of every *decoded* frame, and the same
  number of decoded audio samples with the same hash. Bytes of the MP4 are not compared:
  the container is not what a reviewer sees, and x264/AAC byte identity is not promised
  across processes (decoded identity is what the composite's determinism is about);
- ledger: the same chunks (seq, SHA-256, start, duration) per track and the same gaps (none);
- S3: one object per chunk sent, whose SHA-256 is exactly the set sent (no loss, no copy).

The permanent-fault case instead asserts `failed` with our message, nothing left `running`.

A SIGKILLed worker's unacked message is given back by Dramatiq's queue maintenance only after
60 s without heartbeat, by a 0.1 % chance per broker command (minutes); `faults.requeue_lost`
does exactly what that maintenance does, at once, so the case stays short. The new worker may
then wait for the dead one's window lock (its TTL, 60 s) before it renders that window.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from core.auth import mint_token
from recorder.services import free_port
from tests.conftest import JWT_SECRET, drop_bucket, make_settings
from tests.faults import Stack, make_interview, outcome, play
from tests.workers.conftest import wait_for

SPOOL_MB = 4  # the API's spool: a tmpfs this small (we are root in CI) to fill up


@pytest.fixture(scope="module")
def interview(tmp_path_factory):
    return make_interview(tmp_path_factory.mktemp("interview"))


@pytest.fixture(scope="module")
def stack(s3_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("fault-matrix")
    spool = work / "data" / "spool"
    spool.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SPOOL_MB}m", "tmpfs", str(spool)],
                             capture_output=True, check=False).returncode == 0
    port = free_port()
    settings = make_settings(f"sqlite:///{work / 'recorder.db'}", f"redis://127.0.0.1:{port}/0", s3_server,
                             f"t-faults-{os.getpid()}", work / "data")
    st = Stack(settings, s3_server, work, port)
    st.spool, st.spool_mounted = spool, mounted
    try:
        st.start_api()
        st.start_worker()
        yield st
    finally:
        st.close()
        if mounted:
            subprocess.run(["umount", str(spool)], check=False)
        drop_bucket(s3_server, settings.s3_bucket)


@pytest.fixture(scope="module")
def token(stack) -> str:
    return mint_token(JWT_SECRET, sub="fault-matrix", org="acme", role="admin", ttl_s=3600,
                      issuer=stack.settings.jwt_issuer)


@pytest.fixture(scope="module")
def baseline(stack, interview, token, tmp_path_factory):
    played = play(stack, "baseline", interview, token)
    assert played.status["status"] == "ready", played.status
    return outcome(stack, played, token, tmp_path_factory.mktemp("baseline"))


def _assert_like_baseline(stack, played, token, baseline, interview, tmp_path) -> None:
    assert played.status["status"] == "ready", (played.status, stack.logs())
    got = outcome(stack, played, token, tmp_path)
    assert got.chunk_objects == sorted(ch.sha256 for ch in interview)   # 0 lost, 0 duplicated
    assert got.ledger == baseline.ledger and got.ledger["complete"]
    assert all(not t["gaps"] for t in got.ledger["tracks"].values())
    assert got.media == baseline.media
    assert got.transcript == baseline.transcript
    not_done = {n: (st.status, st.error) for n, st in stack.steps(played.rec).items() if st.status != "done"}
    assert not not_done, (not_done, stack.logs())


def test_baseline_is_a_real_interview(baseline, interview) -> None:
    said = {}
    for speaker, text, *_ in baseline.transcript:
        said[speaker] = f"{said.get(speaker, '')} {text}".lower()
    assert set(said) == {"ines", "carl"} and "project" in said["ines"] and "moved" in said["carl"], said
    assert abs(baseline.media["duration_ms"] - 9000) <= 100 and baseline.media["windows"] == 3
    assert len(baseline.media["frames"]) >= 250 and baseline.chunk_objects == sorted(c.sha256 for c in interview)


def test_s3_down_20s_mid_interview(stack, interview, token, baseline, tmp_path) -> None:
    def outage(_rec: str) -> None:
        time.sleep(3.5)             # chunk 0 of both is in; chunk 1 closes during the outage
        stack.s3.stop()
        time.sleep(20)
        stack.s3.start()

    played = play(stack, "s3-down", interview, token, fault=outage)
    assert any(503 in a for a in played.answers.values()), played.answers  # the client did see 503s
    _assert_like_baseline(stack, played, token, baseline, interview, tmp_path)


def test_redis_restarted_mid_interview(stack, interview, token, baseline, tmp_path) -> None:
    played = play(stack, "redis-restart", interview, token,
                  fault=lambda _rec: (time.sleep(4.5), stack.restart_redis(down_s=2)))
    _assert_like_baseline(stack, played, token, baseline, interview, tmp_path)


def test_worker_killed_during_composite_and_during_transcription(stack, interview, token, baseline,
                                                                  tmp_path) -> None:
    killed: list[tuple[str, int]] = []  # (step killed in, messages handed to the new worker)

    def kill_twice(rec: str) -> None:
        for prefix in ("window.", "transcript."):
            wait_for(lambda p=prefix: stack.running(rec, p), 120, f"a {prefix} step running", interval_s=0.02)
            killed.append((prefix, stack.replace_worker(kill=True)))

    played = play(stack, "worker-kill", interview, token, fault=kill_twice)
    assert [k[0] for k in killed] == ["window.", "transcript."] and all(k[1] >= 1 for k in killed), killed
    _assert_like_baseline(stack, played, token, baseline, interview, tmp_path)


def test_api_restarted_mid_interview(stack, interview, token, baseline, tmp_path) -> None:
    played = play(stack, "api-restart", interview, token,
                  fault=lambda _rec: (time.sleep(4.0), stack.restart_api(down_s=2)))
    assert any(isinstance(x, str) for a in played.answers.values() for x in a), played.answers  # refused
    _assert_like_baseline(stack, played, token, baseline, interview, tmp_path)


def test_spool_disk_full_answers_503_then_retries_succeed(stack, interview, token, baseline, tmp_path) -> None:
    if not stack.spool_mounted:
        pytest.skip("could not mount a small tmpfs for the spool (needs root)")
    ballast = stack.spool / "ballast"

    def fill_then_free(_rec: str) -> None:
        time.sleep(3.3)
        _fill(stack.spool, ballast, leave_bytes=8 * 1024)   # less than any chunk
        time.sleep(6)
        ballast.unlink()

    played = play(stack, "spool-full", interview, token, fault=fill_then_free)
    refused = [x for a in played.answers.values() for x in a if x == 503]
    assert refused, played.answers
    assert [p.name for p in stack.spool.iterdir()] == []              # no partial chunk left
    _assert_like_baseline(stack, played, token, baseline, interview, tmp_path)


def test_permanent_s3_fault_fails_with_the_reason_then_recovers(stack, interview, token, tmp_path) -> None:
    stack.replace_worker(kill=False, RECORDER_WORKER_MAX_RETRIES="2", RECORDER_WORKER_MIN_BACKOFF_MS="50",
                         RECORDER_WORKER_MAX_BACKOFF_MS="200")

    def outage_at_hangup(rec: str) -> None:
        # every chunk is in and checked: take S3 away for longer than the retry budget (~0.5 s)
        wait_for(lambda: sum(n.startswith("chunk.") and st.status == "done" for n, st in stack.steps(rec).items())
                 == len(interview), 60, "every chunk checked", on_timeout=stack.logs)
        stack.s3.stop()

    try:
        played = play(stack, "permanent", interview, token, timeout_s=120, fault=outage_at_hangup)
    finally:
        stack.s3.start()
        stack.replace_worker(kill=False)
    status = played.status
    assert status["status"] == "failed", status
    assert status["error"] in ("video processing failed after 3 attempts", "transcription failed after 3 attempts",
                               "video processing failed (storage_unavailable)",
                               "transcription failed (storage_unavailable)"), status["error"]
    final = stack.steps(played.rec)["media.final" if status["error"].startswith("video") else "transcript.final"]
    assert (final.status, final.error) == ("failed", status["error"])

    def unsettled() -> dict:
        return {n: (st.status, st.error) for n, st in stack.steps(played.rec).items()
                if st.status in ("running", "pending")}

    # every other step ends too (done or failed with its reason), none left running/pending
    wait_for(lambda: not unsettled(), 60, "every step settled", interval_s=0.5,
             on_timeout=lambda: f"{unsettled()}\n{stack.logs()}")


def _fill(directory: Path, ballast: Path, leave_bytes: int) -> None:
    """Fill the (small, mounted) spool disk up to `leave_bytes` free; prove a chunk no longer fits."""
    assert os.path.ismount(directory), directory       # never fill a real disk
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    assert free < 64 * 1024 * 1024, free
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    with pytest.raises(OSError):
        (directory / "probe").write_bytes(b"\1" * 64 * 1024)
    (directory / "probe").unlink(missing_ok=True)
