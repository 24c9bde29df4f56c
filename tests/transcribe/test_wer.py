"""English normalizer and WER (pure)."""
from __future__ import annotations

import pytest

from transcribe.normalize import normalize, ordinal_suffix
from transcribe.wer import align_counts, wer


@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", "hello world"),
    ("Twenty-one PostgreSQL clusters.", "21 postgresql clusters"),
    ("21 postgresql clusters", "21 postgresql clusters"),
    ("two thousand and twenty four", "2024"),
    ("one hundred and five", "105"),
    ("a hundred people", "100 people"),
    ("1,000,000 users", "1000000 users"),
    ("one million users", "1000000 users"),
    ("forty million titles", "40000000 titles"),
    ("40 million titles", "40000000 titles"),  # how the model writes it
    ("2.5 billion rows", "2500000000 rows"),
    ("1.25 thousand", "1250"),
    ("0.0005 thousand", "0.5"),
    ("three point five percent", "3.5 percent"),
    ("3.5%", "3.5 percent"),
    ("the twenty first century", "the 21st century"),
    ("the 21st century", "the 21st century"),
    ("five six seven", "5 6 7"),
    ("It's done, isn't it? I'm sure we'll see.", "it is done is not it i am sure we will see"),
    ("Um, the Kubernetes-based set-up", "the kubernetes based set up"),
    ("OK, alright", "okay all right"),
    ("$5 fee", "5 dollars fee"),
    ("“Quoted” — text…", "quoted text"),
])
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_ordinal_suffixes() -> None:
    assert [ordinal_suffix(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["st", "nd", "rd", "th", "th", "th", "th", "st", "nd", "st", "th"]


def test_alignment_counts_each_kind_of_error() -> None:
    r = align_counts("the cat sat on the mat".split(), "the cat sit on mat mat too".split())
    assert (r.substitutions, r.deletions, r.insertions, r.reference_words) == (2, 0, 1, 6)
    assert r.wer == pytest.approx(0.5)
    r = align_counts("a b c d".split(), "a d".split())
    assert (r.substitutions, r.deletions, r.insertions) == (0, 2, 0)


def test_wer_is_insensitive_to_case_punctuation_numbers_and_hyphens() -> None:
    assert wer("We run twenty-one Kubernetes clusters.", "we run 21 kubernetes clusters").wer == 0.0
    assert wer("It costs 5 percent.", "It costs five %").wer == 0.0


def test_wer_of_empty_texts_and_sums() -> None:
    assert wer("", "").wer == 0.0 and wer("", "hello").wer == 1.0 and wer("hello", "").wer == 1.0
    total = wer("a b c d", "a b c x") + wer("e f", "e f")
    assert total.errors == 1 and total.reference_words == 6
