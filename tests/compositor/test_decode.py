"""DecodeAhead (decoding in a thread, batches ahead) and decoding stitched tracks."""
from __future__ import annotations

import threading

import pytest

from compositor.decode import DecodeAhead, audio_samples, video_frames
from compositor.stitch import Source, stitch
from core.errors import InvalidMedia


def test_decode_ahead_yields_everything_in_order():
    assert list(DecodeAhead(iter(range(21)), batch=4)) == list(range(21))
    assert list(DecodeAhead(iter([]))) == []


def test_decode_ahead_hands_over_items_then_the_error():
    def failing():
        yield 1
        yield 2
        raise InvalidMedia("broken", code="invalid_media")

    ahead = DecodeAhead(failing(), batch=8)
    assert [next(ahead), next(ahead)] == [1, 2]
    with pytest.raises(InvalidMedia):
        next(ahead)


def test_close_stops_the_thread_and_closes_the_generator():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    ahead = DecodeAhead(endless(), batch=2, depth=1)
    assert next(ahead) == 0
    ahead.close()
    assert closed.wait(5) and not ahead._thread.is_alive()


def test_video_frames_and_audio_samples_are_on_the_timeline(clip_a, tmp_path):
    track = tmp_path / "a.mkv"
    stitch([Source(clip_a, 2000)], track)  # the clip starts 2 s into the recording
    frames = list(DecodeAhead(video_frames(track, 3000, 4000, threads=1)))
    times = [t for t, _ in frames]
    assert times == sorted(times) and 2000 <= times[0] <= 2040  # from the keyframe before 3000 - preroll
    assert 4000 <= times[-1] < 4100  # and stops after the end
    pcm = audio_samples(track, 0, 48 * 4000)
    assert abs(pcm[: 48 * 1990]).max() == 0  # silence before the track starts
    assert abs(pcm[48 * 2000:]).max() > 0
