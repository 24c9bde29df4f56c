"""Decoding chunks to 16 kHz mono with PyAV: containers, continuation blobs, bad media."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidMedia
from tests.media import speech_track
from transcribe.audio import decode


@pytest.fixture(scope="module")
def webm(media_dir: Path) -> Path:
    path, _ = speech_track(media_dir / "dec.webm", [(0.5, "one two three four five six")], 4.0, "webm")
    return path


@pytest.mark.parametrize("container", ["webm", "mp4", "wav"])
def test_decodes_48k_to_16k_mono(media_dir: Path, container: str) -> None:
    path, placed = speech_track(media_dir / f"d.{container}", [(1.0, "hello there")], 3.0, container)
    d = decode(path)
    assert d.samples.dtype == np.float32 and d.samples.ndim == 1
    assert abs(d.samples.size / 16000 - 3.0) < 0.1  # AAC priming may add a few ms
    loud = np.flatnonzero(np.abs(d.samples) > 0.02) / 16000
    assert abs(loud[0] - placed[0][0]) < 0.06 and abs(loud[-1] - placed[0][1]) < 0.1
    assert d.total_samples == d.samples.size and d.start_s < 0.05


def test_stereo_input_is_downmixed(media_dir: Path, webm: Path) -> None:
    stereo = media_dir / "stereo.webm"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(webm), "-ac", "2", "-c:a", "libopus",
                    str(stereo)], check=True, timeout=60)
    assert abs(decode(stereo).samples.size - decode(webm).samples.size) < 800


def test_continuation_blobs_decode_as_their_byte_join(webm: Path) -> None:
    data = webm.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]  # cuts fall inside blocks
    whole = decode(data).samples
    consumed, parts = 0, []
    for i in range(1, len(cuts)):
        d = decode(data[:cuts[i]], skip_samples=consumed)
        parts.append(d.samples)
        consumed = d.total_samples
    joined = np.concatenate(parts)
    assert joined.size == whole.size
    assert np.allclose(joined, whole, atol=1e-3)  # only the resampler flush at each cut differs


def test_garbage_and_video_only_are_invalid_media(media_dir: Path) -> None:
    with pytest.raises(InvalidMedia):
        decode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000)
    video = media_dir / "video-only.webm"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:d=1",
                    "-c:v", "libvpx", str(video)], check=True, timeout=60)
    with pytest.raises(InvalidMedia) as err:
        decode(video)
    assert err.value.code == "no_audio"
