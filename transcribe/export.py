"""Transcript exports (pure): JSON (everything, with flags), WebVTT with `<v Speaker>`
voice tags, SRT and plain text (the last three show visible segments only)."""
from __future__ import annotations

import json
from typing import Any

from core.timeline import ms_to_timestamp
from transcribe.types import Segment, Speaker, Transcript, Word

FORMATS = {"json": "application/json", "vtt": "text/vtt; charset=utf-8",
           "srt": "application/x-subrip; charset=utf-8", "txt": "text/plain; charset=utf-8"}


def speaker_dict(sp: Speaker) -> dict[str, str]:
    return {"participant_id": sp.participant_id, "display_name": sp.display_name,
            "role": sp.role, "track_id": sp.track_id}


def segment_dict(seg: Segment, index: int) -> dict[str, Any]:
    return {
        "id": index, "start_ms": seg.start_ms, "end_ms": seg.end_ms,
        "start": round(seg.start_ms / 1000, 3), "end": round(seg.end_ms / 1000, 3),
        "speaker": speaker_dict(seg.speaker), "text": seg.text,
        "words": [{"word": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms,
                   "probability": round(w.probability, 4)} for w in seg.words],
        "avg_logprob": round(seg.avg_logprob, 4), "no_speech_prob": round(seg.no_speech_prob, 4),
        "compression_ratio": round(seg.compression_ratio, 3), "level_db": round(seg.level_db, 1),
        "voiced_ratio": round(seg.voiced_ratio, 3), "flags": list(seg.flags),
        "suppressed": seg.suppressed,
    }


def to_dict(t: Transcript) -> dict[str, Any]:
    return {
        "recording_id": t.recording_id, "version": t.version, "status": t.status, "model": t.model,
        "params": t.params,
        "created_at_ms": t.created_at_ms, "time_taken_ms": t.time_taken_ms,
        "speakers": [speaker_dict(s) for s in t.speakers],
        "segments": [segment_dict(s, i) for i, s in enumerate(t.segments)],
    }


def to_json(t: Transcript) -> str:
    return json.dumps(to_dict(t), ensure_ascii=False, indent=1)


def from_dict(data: dict[str, Any]) -> Transcript:
    """Inverse of `to_dict` (flags are kept; derived fields are recomputed)."""
    segs = []
    for d in data["segments"]:
        sp = Speaker(**d["speaker"])
        words_ = tuple(Word(w["word"], w["start_ms"], w["end_ms"], w["probability"]) for w in d["words"])
        segs.append(Segment(sp, d["start_ms"], d["end_ms"], d["text"], words_, d["avg_logprob"],
                            d["no_speech_prob"], d["compression_ratio"], d["level_db"], d["voiced_ratio"],
                            tuple(d["flags"])))
    return Transcript(data["recording_id"], tuple(segs), data["version"], data["model"], data["params"],
                      data["created_at_ms"], data["time_taken_ms"], data.get("status", "final"))


def _escape_cue(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # "-->" cannot survive


def _voice(name: str) -> str:
    return _escape_cue(name).replace("\n", " ").strip() or "Speaker"


def to_vtt(t: Transcript) -> str:
    cues = ["WEBVTT", ""]
    for i, s in enumerate(t.visible, 1):
        cues += [str(i), f"{ms_to_timestamp(s.start_ms)} --> {ms_to_timestamp(max(s.end_ms, s.start_ms + 1))}",
                 f"<v {_voice(s.speaker.label)}>{_escape_cue(s.text.strip())}", ""]
    return "\n".join(cues)


def to_srt(t: Transcript) -> str:
    cues = []
    for i, s in enumerate(t.visible, 1):
        span = f"{ms_to_timestamp(s.start_ms, ',')} --> {ms_to_timestamp(max(s.end_ms, s.start_ms + 1), ',')}"
        cues.append(f"{i}\n{span}\n{s.speaker.label}: {s.text.strip()}\n")
    return "\n".join(cues)


def to_text(t: Transcript) -> str:
    lines = []
    for s in t.visible:
        role = f" ({s.speaker.role})" if s.speaker.role else ""
        lines.append(f"[{ms_to_timestamp(s.start_ms)[:8]}] {s.speaker.label}{role}: {s.text.strip()}")
    return "\n".join(lines) + ("\n" if lines else "")


def render(t: Transcript, fmt: str) -> str:
    """One export by name: json | vtt | srt | txt."""
    renderers = {"json": to_json, "vtt": to_vtt, "srt": to_srt, "txt": to_text}
    if fmt not in renderers:
        raise ValueError(f"unknown transcript format {fmt!r}; one of {sorted(renderers)}")
    return renderers[fmt](t)
