"""Synthetic interview media built with the `ffmpeg` CLI and `espeak-ng` (demo, tests, benches).

    espeak_wav(text, path)                 -> Path                  one utterance, espeak's own rate
    speech_track(path, segments, total_s)  -> (Path, [(start_s, end_s, text)])
    av_clip(path, seconds, ...)            -> Path                  test pattern + running clock,
                                                                    1 kHz beeps, white flashes
    participant_clip(path, seconds, segments, label) -> (Path, placed)   clock video + speech
    split_chunks(src, out_dir, chunk_s)    -> [(Path, start_offset_ms, duration_ms)]
    ffprobe(path)                          -> dict                  `ffprobe -show_format -show_streams`

Every encode passes `-fflags +bitexact` (no random Matroska/MP4 ids, no encoder version
string), so the same arguments give the same bytes, run after run.
"""
from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SAMPLE_RATE = 48_000
BEEP_HZ, BEEP_S, FLASH_S = 1000, 0.1, 0.1
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]
# Fragmented MP4 has no edit list: AAC's 1024 priming samples would play (and shift the
# audio 21 ms late) and the muxer would stretch the first video frame. Drop 1024 input
# samples and keep timestamps non-negative so decoded A/V lines up with the source.
_FRAG_MP4 = ["-movflags", "frag_keyframe+empty_moov+default_base_moof", "-avoid_negative_ts", "make_non_negative"]
_AAC_ALIGN = ["-af", "atrim=start_sample=1024,asetpts=PTS-STARTPTS"]
# (video codec args, audio codec args, muxer args) per container. libvpx "realtime" adapts
# to wall-clock speed (different bytes each run); "good" at its fastest setting does not.
_CODECS = {
    "webm": (["-c:v", "libvpx", "-b:v", "600k", "-deadline", "good", "-cpu-used", "16"],
             ["-c:a", "libopus", "-b:a", "64k"], ["-f", "webm"]),
    "mp4": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
            ["-c:a", "aac", "-b:a", "96k", *_AAC_ALIGN], ["-f", "mp4", *_FRAG_MP4]),
    "wav": ([], ["-c:a", "pcm_s16le"], ["-f", "wav"]),
}


def _run(args: Sequence[str]) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def _ffmpeg(*args: str) -> None:
    _run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args])


def ffprobe(path: str | Path) -> dict:
    """`ffprobe -show_format -show_streams` as a dict (keys "format" and "streams")."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"ffprobe failed on {path}: {proc.stderr[-1000:]}")
    return json.loads(proc.stdout)


def probe_duration_s(path: str | Path) -> float:
    """Container duration in seconds (format.duration)."""
    return float(ffprobe(path)["format"]["duration"])


# ---------------------------------------------------------------- speech

def espeak_wav(text: str, path: str | Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Speak `text` into a WAV file (espeak-ng's native 22.05 kHz mono)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text])
    return path


def read_pcm_48k(path: Path) -> np.ndarray:
    """Decode any audio file to mono float32 at 48 kHz."""
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
         "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        capture_output=True, timeout=120, check=True)
    return np.frombuffer(proc.stdout, dtype="<f4").copy()


def _trim_silence(pcm: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Drop espeak's leading/trailing silence so placed spans are the audible speech."""
    loud = np.flatnonzero(np.abs(pcm) > threshold)
    return pcm[loud[0]:loud[-1] + 1] if loud.size else pcm[:0]


def place_segments(total_s: float, clips: Iterable[tuple[float, np.ndarray]]) -> np.ndarray:
    """Mix (start_s, pcm) clips onto silence of `total_s` seconds; clips past the end are cut."""
    out = np.zeros(int(round(total_s * SAMPLE_RATE)), dtype=np.float32)
    for start_s, pcm in clips:
        first = int(round(start_s * SAMPLE_RATE))
        piece = pcm[: max(0, out.size - first)]
        out[first:first + piece.size] += piece
    return np.clip(out, -1.0, 1.0)


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())


def speech_track(
    path: str | Path,
    segments: Sequence[tuple],
    total_s: float,
    container: str = "webm",
) -> tuple[Path, list[tuple[float, float, str]]]:
    """Place espeak utterances at given times on silence; 48 kHz mono.

    `segments` holds `(start_s, text)` or `(start_s, text, voice)`. `container` is
    "webm" (Opus), "mp4" (AAC, fragmented) or "wav" (PCM). Returns the file and the spans
    actually placed, `(start_s, end_s, text)`, measured on the trimmed speech (cut at total_s).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clips, placed = [], []
    for i, seg in enumerate(segments):
        start_s, text = float(seg[0]), seg[1]
        voice = seg[2] if len(seg) > 2 else "en-us"
        raw = espeak_wav(text, path.with_name(f".{path.stem}.seg{i}.wav"), voice=voice)
        pcm = _trim_silence(read_pcm_48k(raw))
        raw.unlink()
        end_s = min(total_s, start_s + pcm.size / SAMPLE_RATE)
        clips.append((start_s, pcm))
        placed.append((start_s, round(end_s, 3), text))
    mix = place_segments(total_s, clips)
    if container == "wav":
        _write_wav(path, mix)
        return path, placed
    tmp = path.with_name(f".{path.stem}.mix.wav")
    _write_wav(tmp, mix)
    _, acodec, mux = _CODECS[container]
    _ffmpeg("-i", str(tmp), *acodec, "-ar", str(SAMPLE_RATE), *_BITEXACT, *mux, str(path))
    tmp.unlink()
    return path, placed


# ---------------------------------------------------------------- audio/video clips

def _windows_expr(starts: Iterable[float], length: float) -> str:
    """ffmpeg expression that is 1 inside any [s, s+length) window, else 0."""
    terms = [f"gte(t,{s:.4f})*lt(t,{s + length:.4f})" for s in starts]
    return "+".join(terms) or "0"


def _video_filter(label: str, flashes_s: Sequence[float]) -> str:
    label = "".join(c for c in label if c.isalnum() or c in " -_.")
    chain = []
    if FONT.exists():
        text = (label + " " if label else "") + r"%{pts\:hms}"
        chain.append(f"drawtext=fontfile={FONT}:text='{text}':x=8:y=h-th-8:fontsize=h/10"
                     ":fontcolor=white:box=1:boxcolor=black@0.8")
    # Flashes go last so the whole frame is white (the clock is covered too).
    chain += [f"drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='gte(t,{s:.4f})*lt(t,{s + FLASH_S:.4f})'"
              for s in flashes_s]
    return ",".join(chain) or "null"


def av_clip(
    path: str | Path,
    seconds: float,
    container: str = "webm",
    size: tuple[int, int] = (320, 180),
    fps: int = 30,
    beeps_s: Sequence[float] = (),
    flashes_s: Sequence[float] = (),
    label: str = "",
) -> Path:
    """Test pattern with a visible running clock, plus 1 kHz beeps and white flashes.

    webm = VP8 + Opus 48 kHz; mp4 = H.264 + AAC 48 kHz, fragmented (as browsers write it).
    Beeps/flashes last 100 ms from each given second; audio is silent elsewhere.
    A keyframe every second.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if container not in ("webm", "mp4"):
        raise ValueError(f"av_clip container must be webm or mp4, not {container!r}")
    w, h = size
    src = f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}"
    tone = f"aevalsrc=exprs='0.5*sin(2*PI*{BEEP_HZ}*t)*({_windows_expr(beeps_s, BEEP_S)})'" \
           f":s={SAMPLE_RATE}:d={seconds}"
    vcodec, acodec, mux = _CODECS[container]
    _ffmpeg("-f", "lavfi", "-i", src, "-f", "lavfi", "-i", tone,
            "-vf", _video_filter(label, flashes_s), *vcodec, "-g", str(fps), *acodec,
            "-ar", str(SAMPLE_RATE), "-t", str(seconds), *_BITEXACT, *mux, str(path))
    return path


# ---------------------------------------------------------------- chunking

def chunk_spans_ms(total_ms: int, chunk_ms: int) -> list[tuple[int, int]]:
    """(start_ms, duration_ms) of consecutive chunks covering `total_ms`."""
    if chunk_ms <= 0:
        raise ValueError("chunk_ms must be positive")
    return [(s, min(chunk_ms, total_ms - s)) for s in range(0, total_ms, chunk_ms)]


def split_chunks(src: str | Path, out_dir: str | Path, chunk_s: float = 30) -> list[tuple[Path, int, int]]:
    """Cut `src` into self-contained files as a stop/start browser recorder makes them.

    Each chunk is re-encoded from its own start (timestamps from 0, a keyframe first, full
    header), in the container/codecs of `src` (by extension: .webm, .mp4 or .wav). Files are
    `out_dir/{seq:06d}.{ext}`, seq from 0. Returns `(path, start_offset_ms, duration_ms)`
    with the planned offsets (relative to the start of `src`).
    """
    src, out_dir = Path(src), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = src.suffix.lstrip(".")
    vcodec, acodec, mux = _CODECS[ext]
    info = ffprobe(src)
    has_video = any(s["codec_type"] == "video" for s in info["streams"])
    total_ms = int(round(float(info["format"]["duration"]) * 1000))
    chunks = []
    for seq, (start, dur) in enumerate(chunk_spans_ms(total_ms, int(round(chunk_s * 1000)))):
        if dur < 100:  # a codec-padding sliver is not a chunk a recorder would emit
            break
        out = out_dir / f"{seq:06d}.{ext}"
        video = [*vcodec, "-g", "30"] if has_video else ["-vn"]
        _ffmpeg("-ss", f"{start / 1000:.3f}", "-t", f"{dur / 1000:.3f}", "-i", str(src),
                *video, *acodec, "-ar", str(SAMPLE_RATE), *_BITEXACT, *mux, str(out))
        chunks.append((out, start, dur))
    return chunks


def participant_clip(path: str | Path, seconds: float, segments: Sequence[tuple], label: str = "",
                     size: tuple[int, int] = (320, 180), fps: int = 30) -> tuple[Path, list[tuple[float, float, str]]]:
    """One participant's camera+mic: test pattern with name + clock, and espeak speech at given times (WebM)."""
    path = Path(path)
    wav, placed = speech_track(path.with_name(f".{path.stem}.speech.wav"), segments, seconds, container="wav")
    w, h = size
    vcodec, acodec, mux = _CODECS["webm"]
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}", "-i", str(wav),
            "-vf", _video_filter(label, ()), *vcodec, "-g", str(fps), *acodec, "-ar", str(SAMPLE_RATE),
            "-t", str(seconds), *_BITEXACT, *mux, str(path))
    wav.unlink()
    return path, placed
