"""Word error rate over normalized English words (see `transcribe.normalize`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from transcribe.normalize import words


@dataclass(frozen=True)
class WerResult:
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_words

    def __add__(self, other: "WerResult") -> "WerResult":
        return WerResult(self.substitutions + other.substitutions, self.deletions + other.deletions,
                         self.insertions + other.insertions, self.reference_words + other.reference_words)


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> WerResult:
    """Levenshtein alignment of two word lists → substitution/deletion/insertion counts."""
    # Each cell: (cost, subs, dels, ins); ties prefer fewer substitutions.
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        row = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            if ref[i - 1] == hyp[j - 1]:
                best = prev[j - 1]
            else:
                c, s, d, n = prev[j - 1]
                sub = (c + 1, s + 1, d, n)
                c, s, d, n = prev[j]
                dele = (c + 1, s, d + 1, n)
                c, s, d, n = row[j - 1]
                ins = (c + 1, s, d, n + 1)
                best = min(sub, dele, ins)
            row.append(best)
        prev = row
    _, subs, dels, ins = prev[-1]
    return WerResult(subs, dels, ins, len(ref))


def wer(reference: str, hypothesis: str) -> WerResult:
    """WER of `hypothesis` against `reference`, both normalized first."""
    return align_counts(words(reference), words(hypothesis))
