"""The leak gate on synthetic microphones (pure): levels of two tracks → which frames of one
only carry the other's voice, where the other starts to speak, and what is turned down."""
from __future__ import annotations

import numpy as np
import pytest

from transcribe import leak
from transcribe.leak import Envelope, LeakOptions

SR = 16_000


def voice(seconds: float, rng: np.random.Generator, level_db: float = -20.0) -> np.ndarray:
    """Speech-like sound: noise with a 4-Hz syllable envelope (dips to −25 dB between syllables)."""
    t = np.arange(int(seconds * SR)) / SR
    syllables = 0.53 + 0.47 * np.cos(2 * np.pi * 4 * t)
    x = rng.standard_normal(t.size) * syllables
    return (x * 10 ** (level_db / 20) / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def place(total_s: float, parts: list[tuple[float, np.ndarray]]) -> np.ndarray:
    out = np.zeros(int(total_s * SR), np.float32)
    for at, x in parts:
        out[int(at * SR):int(at * SR) + x.size] += x
    return out


def mic(own: np.ndarray, other: np.ndarray, rng: np.random.Generator, leak_db: float = -30.0,
        late_ms: float = 20.0, floor_db: float = -50.0) -> np.ndarray:
    lag = int(late_ms * SR / 1000)
    heard = np.concatenate([np.zeros(lag, np.float32), other[:-lag]]) * 10 ** (leak_db / 20)
    return own + heard + (rng.standard_normal(own.size) * 10 ** (floor_db / 20)).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


@pytest.fixture(scope="module")
def call() -> dict[str, np.ndarray]:
    """Alice speaks 1–2.5 s, Bob 3–6 s; Alice says a short word over Bob at 4.5 s."""
    rng = np.random.default_rng(3)
    alice = place(8.0, [(1.0, voice(1.5, rng)), (4.5, voice(0.4, rng))])
    bob = place(8.0, [(3.0, voice(3.0, rng))])
    return {"alice_clean": alice, "bob_clean": bob, "alice": mic(alice, bob, rng), "bob": mic(bob, alice, rng)}


def frames(mask: np.ndarray, a_s: float, b_s: float) -> np.ndarray:
    return mask[int(a_s / 0.03):int(b_s / 0.03)]


def test_only_the_frames_that_carry_the_other_voice_are_gated(call) -> None:
    own = leak.envelope(call["alice"], 0).db
    other = leak.envelope(call["bob"], 0).on_grid(0, own.size, 30)
    mask = leak.leak_mask(own, other)
    assert frames(mask, 3.3, 4.2).all() and frames(mask, 5.2, 6.0).all()  # Bob's turn, heard faintly
    assert not frames(mask, 0.8, 2.7).any()  # Alice's own speech and its edges
    assert not frames(mask, 4.45, 4.95).any()  # her word over Bob's speech is kept (overlap)
    assert not frames(mask, 6.4, 8.0).any()  # nobody speaks: nothing to gate


def test_a_leak_that_arrives_late_is_still_lined_up() -> None:
    rng = np.random.default_rng(4)
    bob = place(4.0, [(1.0, voice(2.0, rng))])
    alice = mic(np.zeros_like(bob), bob, rng, late_ms=50.0)
    own = leak.envelope(alice, 0).db
    mask = leak.leak_mask(own, leak.envelope(bob, 0).on_grid(0, own.size, 30))
    assert frames(mask, 1.1, 3.04).all()  # up to the leak's own late tail


def test_frames_no_other_track_covers_are_never_gated(call) -> None:
    own = leak.envelope(call["alice"], 0).db
    part = Envelope(0.0, 30, leak.envelope(call["bob"], 0).db[:int(4.0 / 0.03)])  # Bob's chunk ends at 4 s
    mask = leak.leak_mask(own, part.on_grid(0, own.size, 30))
    assert frames(mask, 3.3, 3.9).all() and not frames(mask, 4.1, 8.0).any()


def test_gate_turns_the_leak_down_and_keeps_own_speech(call) -> None:
    g = leak.gate(call["alice"], 0.0, [leak.envelope(call["bob"], 0)])
    sec = slice(int(3.3 * SR), int(4.2 * SR))
    assert rms_db(g.samples[sec]) < rms_db(call["alice"][sec]) - 40
    for a, b in ((1.0, 2.5), (4.5, 4.9)):
        own = slice(int(a * SR), int(b * SR))
        assert np.array_equal(g.samples[own], call["alice"][own])
    assert 2.0 <= g.gated_s <= 4.5
    assert any(abs(t - 3000) <= 90 for t in g.onsets_ms), g.onsets_ms  # Bob starts at 3.0 s
    assert not any(900 <= t <= 2600 for t in g.onsets_ms)  # Alice's own speech is no one else's onset


def test_envelopes_line_up_on_the_timeline_across_chunk_cuts(call) -> None:
    """The other track arrives as chunks cut elsewhere: its envelopes still line up."""
    bob = call["bob"]
    chunks = [leak.envelope(bob[i:i + int(2.5 * SR)], i * 1000 / SR) for i in range(0, bob.size, int(2.5 * SR))]
    whole = leak.gate(call["alice"], 0.0, [leak.envelope(bob, 0)])
    cut = leak.gate(call["alice"][SR:], 1000.0, chunks)  # and our own block starts at 1 s
    x = call["alice"][SR:]
    turned_down = [np.abs(g) < 0.5 * np.abs(x) for g in (cut.samples, whole.samples[SR:])]
    assert np.mean(turned_down[0] == turned_down[1]) >= 0.97  # the floor estimates differ a little
    assert len(cut.onsets_ms) == len(whole.onsets_ms) == 1 and abs(cut.onsets_ms[0] - whole.onsets_ms[0]) <= 30


def test_disabled_or_alone_changes_nothing(call) -> None:
    x = call["alice"]
    assert leak.gate(x, 0, []).samples is x
    assert leak.gate(x, 0, [leak.envelope(call["bob"], 0)], LeakOptions(enabled=False)).samples is x


def test_two_people_in_one_loud_room_are_not_gated() -> None:
    """Each mic hears the other only 6 dB down: that is not a leak we can tell apart."""
    rng = np.random.default_rng(5)
    a = place(5.0, [(0.5, voice(1.5, rng))])
    b = place(5.0, [(2.5, voice(1.5, rng))])
    alice = mic(a, b, rng, leak_db=-6.0)
    own = leak.envelope(alice, 0).db
    assert not leak.leak_mask(own, leak.envelope(mic(b, a, rng, leak_db=-6.0), 0).on_grid(0, own.size, 30)).any()


def test_dilate_keeps_the_length_of_blocks_shorter_than_its_window() -> None:
    """A block of a few frames (a short chunk's tail) must not grow to the window's length."""
    import numpy as np

    from transcribe.leak import dilate

    for n in (1, 3, 10, 16, 17, 40):
        mask = np.zeros(n, bool)
        mask[n // 2] = True
        out = dilate(mask, 8)
        assert out.shape == (n,) and out[n // 2]
        assert out.sum() == min(n, n // 2 + 9) - max(0, n // 2 - 8)


def test_blocks_shorter_than_the_hold_window_keep_their_length() -> None:
    """A carried tail or a last chunk can be a few frames long (shorter than `hold_ms`)."""
    rng = np.random.default_rng(6)
    for seconds in (0.05, 0.1, 0.3):
        x = mic(place(seconds, []), voice(seconds, rng), rng)
        g = leak.gate(x, 0.0, [leak.envelope(voice(seconds, rng), 0)])
        assert g.samples.shape == x.shape
        talk = np.ones(int(seconds / 0.03), bool)
        assert leak.dilate(talk, 8).shape == talk.shape and leak.onsets(talk, 0.0) is not None
