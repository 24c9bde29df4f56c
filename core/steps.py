"""Processing steps of a recording: their names, their statuses, and which ones `ready` needs.

One `ProcessingStep` row per (recording, step name). The names:

    chunk.{track}.{seq:06d}        media check of one stored chunk           (process_chunk)
    window.{index:06d}             composite of one timeline window          (composite_window)
    transcript.{track}.{seq:06d}   transcription of one chunk of a speaker   (transcribe_chunk)
    media.final                    MP4 + HLS + poster + thumbnails           (finalize_recording)
    transcript.final               merged, exported, indexed transcript      (finalize_transcript)

A recording is `ready` when every final step is `done`, and `failed` as soon as one of
them fails for good. Pure names and parsing: no database here (see `workers.status`).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PENDING", "RUNNING", "DONE", "FAILED", "MEDIA_FINAL", "TRANSCRIPT_FINAL", "FINAL_STEPS",
           "WINDOW_PREFIX", "STATUSES", "Step", "chunk_step", "window_step", "transcript_chunk_step", "parse",
           "is_final", "describe"]

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATUSES = (PENDING, RUNNING, DONE, FAILED)

MEDIA_FINAL = "media.final"
TRANSCRIPT_FINAL = "transcript.final"
FINAL_STEPS = (MEDIA_FINAL, TRANSCRIPT_FINAL)  # created by finalize; all done = ready

CHUNK, WINDOW, TRANSCRIPT = "chunk", "window", "transcript"
WINDOW_PREFIX = f"{WINDOW}."  # every window step starts with it (SQL prefix queries)


@dataclass(frozen=True)
class Step:
    """A parsed step name: its kind, plus the track and seq or the window index it is about."""

    kind: str  # chunk | window | transcript | media.final | transcript.final
    track_id: str | None = None
    seq: int | None = None
    index: int | None = None


def chunk_step(track_id: str, seq: int) -> str:
    return f"{CHUNK}.{track_id}.{seq:06d}"


def window_step(index: int) -> str:
    return f"{WINDOW_PREFIX}{index:06d}"


def transcript_chunk_step(track_id: str, seq: int) -> str:
    return f"{TRANSCRIPT}.{track_id}.{seq:06d}"


def parse(name: str) -> Step:
    """The step a name stands for; ValueError for a name this module does not make."""
    if name in FINAL_STEPS:
        return Step(name)
    kind, _, rest = name.partition(".")
    try:
        if kind == WINDOW and rest.isdigit():
            return Step(WINDOW, index=int(rest))
        track_id, _, seq = rest.rpartition(".")
        if kind in (CHUNK, TRANSCRIPT) and track_id and seq.isdigit():
            return Step(kind, track_id=track_id, seq=int(seq))
    except ValueError:
        pass
    raise ValueError(f"not a processing step name: {name!r}")


def is_final(name: str) -> bool:
    """Whether the recording needs this step: its failure fails the recording."""
    return name in FINAL_STEPS


def describe(name: str) -> str:
    """What the step does, in words for error messages ("transcription of track bob, chunk 3")."""
    try:
        step = parse(name)
    except ValueError:
        return f"step {name}"
    return {
        MEDIA_FINAL: lambda: "video processing",
        TRANSCRIPT_FINAL: lambda: "transcription",
        WINDOW: lambda: f"composite of window {step.index}",
        CHUNK: lambda: f"media check of track {step.track_id}, chunk {step.seq}",
        TRANSCRIPT: lambda: f"transcription of track {step.track_id}, chunk {step.seq}",
    }[step.kind]()
