"""Plain values of a transcript: speakers, words, segments (no I/O, no model).

Times are integer milliseconds on the recording timeline (from its start).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Flags that hide a segment from exports and search (it stays stored, with its reason).
SUPPRESSING_FLAGS = frozenset({"text_in_silence", "no_speech", "crosstalk_duplicate", "implausible_rate"})


@dataclass(frozen=True)
class Speaker:
    """Who owns a track: known by construction (one track per participant)."""

    participant_id: str
    display_name: str = ""
    role: str = "participant"
    track_id: str = ""

    @property
    def label(self) -> str:
        return self.display_name or self.participant_id or self.track_id or "Speaker"


@dataclass(frozen=True)
class Word:
    text: str
    start_ms: int
    end_ms: int
    probability: float = 1.0


@dataclass(frozen=True)
class Segment:
    """One utterance of one speaker, with the model's confidence and our quality flags."""

    speaker: Speaker
    start_ms: int
    end_ms: int
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    level_db: float = -120.0  # RMS of the source audio over the segment, dBFS
    voiced_ratio: float = 1.0  # share of the segment's frames that the VAD called speech
    flags: tuple[str, ...] = ()
    seq: int = 0  # chunk that produced it
    idx: int = 0  # order within that chunk

    @property
    def suppressed(self) -> bool:
        return any(f in SUPPRESSING_FLAGS for f in self.flags)

    def with_flags(self, *flags: str) -> "Segment":
        merged = tuple(dict.fromkeys((*self.flags, *flags)))
        return replace(self, flags=merged)


@dataclass(frozen=True)
class Transcript:
    """A recording's merged, time-ordered transcript (one version of it)."""

    recording_id: str
    segments: tuple[Segment, ...]
    version: int = 1
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    created_at_ms: int = 0
    time_taken_ms: int = 0
    status: str = "final"  # "live": the interview is still running, more will come

    @property
    def visible(self) -> tuple[Segment, ...]:
        """Segments shown in exports and search (suppressed ones are kept but hidden)."""
        return tuple(s for s in self.segments if not s.suppressed)

    @property
    def speakers(self) -> tuple[Speaker, ...]:
        return tuple(dict.fromkeys(s.speaker for s in self.segments))
