"""English text normalizer for scoring transcripts (WER) and matching duplicates.

Case, punctuation, hyphens, contractions, fillers and numbers are made uniform, so
"Twenty-one PostgreSQL clusters." and "21 postgresql clusters" compare equal. Numbers
written as words become digits ("two thousand and twenty four" → "2024",
"three point five" → "3.5", "twenty first" → "21st", and "40 million" as models write it →
"40000000"); "%" becomes "percent".
"""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
         if w != "_"}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fifth": 5, "eighth": 8, "ninth": 9, "twelfth": 12}
_FILLERS = {"um", "uh", "er", "erm", "ah", "hmm", "mm", "mhm", "uhm"}
_CONTRACTIONS = [
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\bcannot\b", "can not"),
    (r"\blet's\b", "let us"), (r"n't\b", " not"), (r"'re\b", " are"), (r"'m\b", " am"),
    (r"'ll\b", " will"), (r"'ve\b", " have"), (r"'d\b", " would"),
    (r"\b(it|that|what|there|here|he|she|who|where)'s\b", r"\1 is"),
]
_SPELLING = {"ok": "okay", "alright": "all right", "everyday": "every day"}


def _ordinal_value(word: str) -> int | None:
    if word in _ORDINALS:
        return _ORDINALS[word]
    for suffix in ("th", "ieth"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix):
            for cand in (stem, stem + "y", stem + "e", stem + "t"):
                if cand in _UNITS or cand in _TENS or cand == "hundred" or cand in _SCALES:
                    return _UNITS.get(cand) or _TENS.get(cand) or _SCALES.get(cand) or 100
    return None


def ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _is_number_word(w: str) -> bool:
    return w in _UNITS or w in _TENS or w == "hundred" or w in _SCALES


def _read_number(tokens: list[str], i: int) -> tuple[str, int]:
    """Parse one spoken number starting at tokens[i]; return (digits, tokens used)."""
    total, current, last, j = 0, 0, "", i
    while j < len(tokens):
        w = tokens[j]
        nxt = tokens[j + 1] if j + 1 < len(tokens) else ""
        if w in _UNITS or w in _TENS:
            kind = "unit" if w in _UNITS else "ten"
            if last in ("unit", "ten") and not (last == "ten" and kind == "unit" and _UNITS[w] < 10):
                break  # "five six" or "nineteen ninety": two numbers
            current += _UNITS.get(w, 0) + _TENS.get(w, 0)
            last = kind
        elif w == "hundred":
            current, last = (current or 1) * 100, "scale"
        elif w in _SCALES:
            total, current, last = total + (current or 1) * _SCALES[w], 0, "scale"
        elif w == "and" and last == "scale" and _is_number_word(nxt):
            pass
        elif w == "a" and j == i and nxt in ("hundred", *_SCALES):
            current = 1
        else:
            ordinal = _ordinal_value(w)
            if ordinal is not None and last in ("ten", "scale"):
                value = total + (current * ordinal if ordinal >= 100 else current + ordinal)
                return f"{value}{ordinal_suffix(value)}", j + 1 - i
            break
        j += 1
    value = total + current
    if j < len(tokens) - 1 and tokens[j] == "point" and tokens[j + 1] in _UNITS and _UNITS[tokens[j + 1]] < 10:
        digits = []
        j += 1
        while j < len(tokens) and tokens[j] in _UNITS and _UNITS[tokens[j]] < 10:
            digits.append(str(_UNITS[tokens[j]]))
            j += 1
        return f"{value}.{''.join(digits)}", j - i
    return str(value), j - i


def _scaled(number: str, scale: int) -> str:
    """Digits times a scale word, exactly: ("40", 10**6) → "40000000", ("2.5", 10**9) → "2500000000"."""
    value = Decimal(number) * scale
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        w = tokens[i]
        if re.fullmatch(r"\d+(?:\.\d+)?", w) and i + 1 < len(tokens) and tokens[i + 1] in _SCALES:
            out.append(_scaled(w, _SCALES[tokens[i + 1]]))  # "40 million" (as models write it) → 40000000
            i += 2
            continue
        starts = _is_number_word(w) or (w == "a" and i + 1 < len(tokens) and tokens[i + 1] in ("hundred", *_SCALES))
        if starts:
            digits, used = _read_number(tokens, i)
            if used:
                out.append(digits)
                i += used
                continue
        ordinal = _ordinal_value(w)
        out.append(f"{ordinal}{ordinal_suffix(ordinal)}" if ordinal is not None else w)
        i += 1
    return out


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    while re.search(r"(\d),(\d{3})", text):
        text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"\$(\d+(?:\.\d+)?)", r"\1 dollars", text)
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    text = re.sub(r"[-\u2010-\u2015/]", " ", text)  # hyphens, dashes, slashes split words
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points only
    text = text.replace("'", "")
    return re.sub(r"[^\w.\s]", " ", text)


def words(text: str) -> list[str]:
    """Normalized words of `text` (the unit WER counts)."""
    tokens = [_SPELLING.get(t, t) for t in _clean(text).split()]
    tokens = " ".join(tokens).split()  # spellings may expand to two words
    return [t for t in _numbers_to_digits(tokens) if t not in _FILLERS]


def normalize(text: str) -> str:
    return " ".join(words(text))
