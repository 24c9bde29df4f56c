"""Generated media shared by the compositor tests (built once per session with tests.media)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.media import av_clip, speech_track

A_FLASHES = (1.0, 3.6, 7.2)  # seconds in clip A (starts at 0 on the timeline)
B_FLASHES = (0.5, 4.0)  # seconds in clip B (starts at B_START_MS)
B_START_MS = 1500


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compositor-media")


@pytest.fixture(scope="session")
def clip_a(media_dir) -> Path:
    return av_clip(media_dir / "a.webm", 9, beeps_s=A_FLASHES, flashes_s=A_FLASHES, label="A")


@pytest.fixture(scope="session")
def clip_b(media_dir) -> Path:
    return av_clip(media_dir / "b.webm", 7, beeps_s=B_FLASHES, flashes_s=B_FLASHES, label="B")


@pytest.fixture(scope="session")
def clip_mp4(media_dir) -> Path:
    return av_clip(media_dir / "c.mp4", 6, container="mp4", beeps_s=(1.0, 4.0),
                   flashes_s=(1.0, 4.0), label="C")


@pytest.fixture(scope="session")
def speech(media_dir) -> dict[str, Path]:
    """Two voices taking turns: A from 0.3 s, B from 4.5 s (espeak-ng), 10 s each."""
    a, _ = speech_track(media_dir / "speech_a.webm",
                        [(0.3, "Hello and thank you for joining the interview today, let us begin.")], 10)
    b, placed = speech_track(media_dir / "speech_b.webm",
                             [(4.5, "Thanks for having me, I have worked on distributed systems.", "en-gb")], 10)
    return {"a": a, "b": b, "b_span": placed[0]}
