import pytest

from core.errors import InvalidInput
from core.keys import chunk_key, check_id
from core.timeline import Span, find_gaps, merge_spans, ms_to_timestamp, windows_overlapping


def test_merge_and_gaps() -> None:
    spans = [Span(30_000, 60_000), Span(0, 30_010), Span(90_000, 120_000)]
    assert merge_spans(spans) == [Span(0, 60_000), Span(90_000, 120_000)]
    assert find_gaps(spans, 0, 130_000) == [Span(60_000, 90_000), Span(120_000, 130_000)]
    assert find_gaps([Span(0, 29_980), Span(30_000, 60_000)], 0, 60_000, tolerance_ms=50) == []


def test_windows_and_timestamps() -> None:
    assert list(windows_overlapping(Span(29_000, 61_000), 30_000)) == [0, 1, 2]
    assert list(windows_overlapping(Span(30_000, 60_000), 30_000)) == [1]
    assert ms_to_timestamp(3_723_004) == "01:02:03.004"
    assert ms_to_timestamp(1_500, ",") == "00:00:01,500"


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "", "x" * 200, "a\x00b", "a..b", "-x"])
def test_ids_that_escape_prefixes_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_id(bad, "track")


def test_chunk_key_is_deterministic() -> None:
    assert chunk_key("acme", "rec_1", "cam", 7, "webm") == "acme/recordings/rec_1/chunks/cam/000007.webm"
