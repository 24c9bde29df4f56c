"""The test-media generators make what they promise: streams, durations, beeps, flashes, speech."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from recorder.synth import read_pcm_48k
from tests.media import (
    SAMPLE_RATE, av_clip, chromium_chunks, chunk_spans_ms, espeak_wav, ffprobe,
    place_segments,
    speech_track, split_chunks,
)


def _streams(path: Path) -> dict[str, dict]:
    return {s["codec_type"]: s for s in ffprobe(path)["streams"]}


def _loud_windows(pcm: np.ndarray, win_s: float = 0.05, level: float = 0.05) -> list[float]:
    """Start seconds of windows whose RMS exceeds `level`."""
    n = int(win_s * SAMPLE_RATE)
    frames = pcm[: pcm.size // n * n].reshape(-1, n)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    return [i * win_s for i in np.flatnonzero(rms > level)]


def _frame_luma(path: Path, fps: int) -> np.ndarray:
    """Mean luma of each frame (decoded at `fps`, scaled to 16x9 grey)."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-vf",
         f"fps={fps},scale=16:9,format=gray", "-f", "rawvideo", "-"],
        capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16 * 9).mean(axis=1)


def test_chunk_spans_cover_the_total() -> None:
    assert chunk_spans_ms(65_000, 30_000) == [(0, 30_000), (30_000, 30_000), (60_000, 5_000)]
    assert chunk_spans_ms(60_000, 30_000) == [(0, 30_000), (30_000, 30_000)]
    with pytest.raises(ValueError):
        chunk_spans_ms(1000, 0)


def test_place_segments_mixes_and_cuts_at_the_end() -> None:
    one = np.full(SAMPLE_RATE // 10, 0.5, dtype=np.float32)
    out = place_segments(1.0, [(0.0, one), (0.05, one), (0.95, one)])
    assert out.size == SAMPLE_RATE
    assert out[int(0.07 * SAMPLE_RATE)] == pytest.approx(1.0)  # overlap adds (then clips)
    assert out[int(0.2 * SAMPLE_RATE)] == 0.0
    assert out[-1] == pytest.approx(0.5)


@pytest.mark.parametrize("container,vcodec,acodec", [("webm", "vp8", "opus"), ("mp4", "h264", "aac")])
def test_av_clip_streams_duration_beeps_and_flashes(tmp_path: Path, container, vcodec, acodec) -> None:
    path = av_clip(tmp_path / f"c.{container}", 4, container=container, beeps_s=[1.0, 2.5],
                   flashes_s=[2.0], label="cam A")
    streams = _streams(path)
    assert streams["video"]["codec_name"] == vcodec
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 180)
    assert streams["audio"]["codec_name"] == acodec
    assert int(streams["audio"]["sample_rate"]) == 48_000
    assert float(ffprobe(path)["format"]["duration"]) == pytest.approx(4.0, abs=0.1)

    # 50-ms windows: a 100-ms beep lights 2-3 of them.
    loud = _loud_windows(read_pcm_48k(path))
    assert loud and all(0.95 <= t <= 1.1 or 2.45 <= t <= 2.6 for t in loud), loud
    assert any(t < 1.5 for t in loud) and any(t > 2.4 for t in loud)

    luma = _frame_luma(path, 30)
    white = [i / 30 for i in np.flatnonzero(luma > 235)]
    assert white and all(2.0 - 1e-6 <= t < 2.1 for t in white), white


@pytest.mark.parametrize("container", ["webm", "mp4"])
def test_av_clip_is_deterministic(tmp_path: Path, container: str) -> None:
    a = av_clip(tmp_path / f"a.{container}", 2, container=container, beeps_s=[0.5], flashes_s=[1])
    b = av_clip(tmp_path / f"b.{container}", 2, container=container, beeps_s=[0.5], flashes_s=[1])
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_av_clip_size_and_fps_are_honoured(tmp_path: Path) -> None:
    video = _streams(av_clip(tmp_path / "c.webm", 1, size=(160, 90), fps=15))["video"]
    assert (video["width"], video["height"], video["r_frame_rate"]) == (160, 90, "15/1")


def test_espeak_wav_speaks(tmp_path: Path) -> None:
    pcm = read_pcm_48k(espeak_wav("hello there", tmp_path / "h.wav"))
    assert 0.3 < pcm.size / SAMPLE_RATE < 3
    assert np.abs(pcm).max() > 0.1


@pytest.mark.parametrize("container,codec", [("webm", "opus"), ("mp4", "aac"), ("wav", "pcm_s16le")])
def test_speech_track_places_utterances(tmp_path: Path, container, codec) -> None:
    path, placed = speech_track(tmp_path / f"s.{container}",
                                [(0.5, "hello world"), (3.0, "good morning", "en-gb")], 6.0,
                                container=container)
    assert [p[2] for p in placed] == ["hello world", "good morning"]
    assert [p[0] for p in placed] == [0.5, 3.0]
    assert all(s + 0.3 < e < s + 2.5 for s, e, _ in placed)
    audio = _streams(path)["audio"]
    assert audio["codec_name"] == codec and int(audio["sample_rate"]) == 48_000
    assert float(ffprobe(path)["format"]["duration"]) == pytest.approx(6.0, abs=0.1)
    loud = _loud_windows(read_pcm_48k(path), level=0.02)
    assert loud and all(any(s - 0.05 <= t <= e + 0.05 for s, e, _ in placed) for t in loud)
    assert any(t < 1.0 for t in loud) and any(3.0 <= t < 3.5 for t in loud)


def test_speech_track_is_deterministic(tmp_path: Path) -> None:
    a, _ = speech_track(tmp_path / "a.webm", [(0.2, "same words")], 2.0)
    b, _ = speech_track(tmp_path / "b.webm", [(0.2, "same words")], 2.0)
    assert a.read_bytes() == b.read_bytes()


def test_speech_track_cuts_at_total(tmp_path: Path) -> None:
    _, placed = speech_track(tmp_path / "s.wav", [(0.8, "a rather long sentence here")], 1.0,
                             container="wav")
    assert placed == [(0.8, 1.0, "a rather long sentence here")]


@pytest.mark.parametrize("container", ["webm", "mp4"])
def test_split_chunks_are_self_contained(tmp_path: Path, container) -> None:
    src = av_clip(tmp_path / f"src.{container}", 5, container=container, flashes_s=[2.0])
    chunks = split_chunks(src, tmp_path / "chunks", chunk_s=2)
    assert [(c[1], c[2]) for c in chunks][:2] == [(0, 2000), (2000, 2000)]
    assert len(chunks) == 3 and chunks[2][1] == 4000 and 900 <= chunks[2][2] <= 1100
    for path, _, dur in chunks:
        assert path.name.endswith(f".{container}")
        info = ffprobe(path)
        assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
        assert float(info["format"]["duration"]) == pytest.approx(dur / 1000, abs=0.1)
        assert float(info["format"].get("start_time", 0)) < 0.1  # each starts near 0
    # The flash at 2.0 s of the source is the first frame of chunk 1.
    assert _frame_luma(chunks[1][0], 30)[0] > 235
    assert _frame_luma(chunks[0][0], 30).max() < 235


def test_split_chunks_audio_only(tmp_path: Path) -> None:
    src, _ = speech_track(tmp_path / "s.webm", [(0.2, "one two three")], 3.0)
    chunks = split_chunks(src, tmp_path / "chunks", chunk_s=1)
    assert [c[1] for c in chunks] == [0, 1000, 2000]
    assert all({s["codec_type"] for s in ffprobe(p)["streams"]} == {"audio"} for p, _, _ in chunks)


@pytest.mark.browser
@pytest.mark.parametrize("mime,container,vcodec", [
    ("video/webm;codecs=vp8,opus", "matroska,webm", "vp8"), ("video/mp4", "mov,mp4,m4a,3gp,3g2,mj2", None)])
def test_chromium_stopstart_blobs_are_complete_files(tmp_path: Path, mime, container, vcodec) -> None:
    chunks = chromium_chunks(tmp_path, "stopstart", seconds=3, chunk_ms=1000, mime=mime)
    assert [c["seq"] for c in chunks] == [0, 1, 2]
    starts = [c["start_ms"] for c in chunks]
    assert starts == sorted(starts) and starts[0] > 1_600_000_000_000  # epoch ms
    for c in chunks:
        assert not c["continuation"] and c["mime"].startswith(mime.split(";")[0])
        info = ffprobe(c["path"])
        assert info["format"]["format_name"] == container
        assert float(info["format"]["duration"]) == pytest.approx(c["duration_ms"] / 1000, abs=0.3)
        codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
        assert codecs["audio"] == "opus" and (vcodec is None or codecs["video"] == vcodec)


@pytest.mark.browser
def test_chromium_timeslice_blobs_join_into_one_file(tmp_path: Path) -> None:
    chunks = chromium_chunks(tmp_path, "timeslice", seconds=3, chunk_ms=1000)
    assert len(chunks) >= 3
    assert [c["continuation"] for c in chunks] == [False] + [True] * (len(chunks) - 1)
    first = chunks[0]["path"].read_bytes()
    assert first[:4] == b"\x1a\x45\xdf\xa3"  # EBML header only in blob 0
    assert all(c["path"].read_bytes()[:4] != b"\x1a\x45\xdf\xa3" for c in chunks[1:])
    for a, b in zip(chunks, chunks[1:]):  # each blob starts where the previous ended
        assert b["start_ms"] == a["start_ms"] + a["duration_ms"]
    joined = tmp_path / "joined.webm"
    joined.write_bytes(b"".join(c["path"].read_bytes() for c in chunks))
    decoded = read_pcm_48k(joined)
    assert decoded.size / SAMPLE_RATE == pytest.approx(3.0, abs=0.5)


@pytest.mark.browser
def test_chromium_records_a_given_wav_as_the_microphone(tmp_path: Path) -> None:
    wav, placed = speech_track(tmp_path / "mic.wav", [(0.3, "hello there general kenobi")], 3.0, container="wav")
    (chunk,) = chromium_chunks(tmp_path / "out", "stopstart", seconds=3, chunk_ms=3000,
                               mime="audio/webm;codecs=opus", audio_wav=wav)
    assert [s["codec_type"] for s in ffprobe(chunk["path"])["streams"]] == ["audio"]
    # The wav loops; over 3 s its ~1.6 s of speech is loud (the built-in fake mic only beeps briefly).
    loud_s = len(_loud_windows(read_pcm_48k(chunk["path"]), level=0.02)) * 0.05
    speech_s = placed[0][1] - placed[0][0]
    assert speech_s - 0.5 < loud_s < speech_s + 0.5
