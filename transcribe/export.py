"""Transcript exports (pure): JSON (everything, with flags), WebVTT with `<v Speaker>`
voice tags, SRT and plain text (the last three show visible segments only).

Captions follow the segments' boundaries (a cue never spans two speakers or a pause) and
stay readable: a segment longer than `MAX_CUE_MS` or than `MAX_LINES` lines of
`LINE_CHARS` characters is cut between words into several cues, each timed by its words.
"""
from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
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


MAX_CUE_MS = 7000
LINE_CHARS = 42
MAX_LINES = 2


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def wrap(text: str, first_prefix: str = "") -> list[str]:
    """Lines of at most LINE_CHARS (a word longer than a line keeps a line of its own)."""
    lines = textwrap.wrap(first_prefix + text, LINE_CHARS, break_long_words=False, break_on_hyphens=False)
    return [ln[len(first_prefix):] if i == 0 and first_prefix else ln for i, ln in enumerate(lines)] or [""]


def _timed_words(seg: Segment) -> list[Word]:
    """The segment's words; without word times, its text spread evenly over its span."""
    if seg.words:
        return [w for w in seg.words if w.text.strip()]
    toks = seg.text.split()
    total = max(1, sum(len(t) + 1 for t in toks))
    out, pos, span = [], 0, max(1, seg.end_ms - seg.start_ms)
    for tok in toks:
        a = seg.start_ms + span * pos // total
        pos += len(tok) + 1
        out.append(Word(tok, a, seg.start_ms + span * pos // total))
    return out


def cues(seg: Segment, prefix: str = "") -> list[Cue]:
    """A segment as caption cues: ≤ MAX_CUE_MS and ≤ MAX_LINES lines each, cut between words.
    `prefix` (SRT's "Name: ") counts on the first line of every cue."""
    text = seg.text.strip()
    if seg.end_ms - seg.start_ms <= MAX_CUE_MS and len(wrap(text, prefix)) <= MAX_LINES:
        return [Cue(seg.start_ms, max(seg.end_ms, seg.start_ms + 1), tuple(wrap(text, prefix)))]
    out: list[Cue] = []
    group: list[Word] = []
    for w in _timed_words(seg) + [None]:
        if w is not None and not group:
            group = [w]
            continue
        words_ = " ".join(x.text.strip() for x in group + ([w] if w else []))
        fits = w is not None and w.end_ms - group[0].start_ms <= MAX_CUE_MS and \
            len(wrap(words_, prefix)) <= MAX_LINES
        if fits:
            group.append(w)
            continue
        said = " ".join(x.text.strip() for x in group)
        out.append(Cue(group[0].start_ms, max(group[-1].end_ms, group[0].start_ms + 1),
                       tuple(wrap(said, prefix))))
        group = [w] if w is not None else []
    return out


def to_vtt(t: Transcript) -> str:
    out, n = ["WEBVTT", ""], 0
    for s in t.visible:
        for cue in cues(s):
            n += 1
            lines = [_escape_cue(ln) for ln in cue.lines]
            lines[0] = f"<v {_voice(s.speaker.label)}>{lines[0]}"
            out += [str(n), f"{ms_to_timestamp(cue.start_ms)} --> {ms_to_timestamp(cue.end_ms)}", *lines, ""]
    return "\n".join(out)


def to_srt(t: Transcript) -> str:
    out, n = [], 0
    for s in t.visible:
        prefix = f"{s.speaker.label}: "
        for cue in cues(s, prefix):
            n += 1
            lines = list(cue.lines)
            lines[0] = f"{prefix}{lines[0]}"
            out.append(f"{n}\n{ms_to_timestamp(cue.start_ms, ',')} --> {ms_to_timestamp(cue.end_ms, ',')}\n"
                       + "\n".join(lines) + "\n")
    return "\n".join(out)


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
