"""Continuation blobs must continue their track's stream before they are stored (issue #11).

The pure check on hand-built bytes, on ffmpeg-made streams cut at arbitrary offsets and
on real Chromium `start(timeslice)` blobs; then through the API: every continuation of a
real recording is stored (and the stored bytes join back into the recording), anything
else answers 422 `not_a_continuation`, goes to quarantine and onto the ledger, and
nothing stored changes.
"""
from __future__ import annotations

import random
import struct
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlmodel import select

from core.db import session_scope
from core.errors import InvalidMedia
from core.models import Chunk
from ingest import ebml, isobmff
from ingest.continuation import (
    MAX_FLUSH,
    MAX_LEAD,
    check_continuation,
    first_cluster,
    first_moof,
    flush_start,
)
from ingest.media import probe_file
from tests.conftest import auth
from tests.ingest.conftest import T0, create_recording, put, sha, snapshot
from tests.media import chromium_chunks, ffprobe

STREAM = frozenset({1, 2})
PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)


def verdict(blob: bytes, tracks: frozenset[int] | set[int] | None = STREAM, container: str = "webm") -> str:
    """"ok", or the message of the `not_a_continuation` refusal."""
    try:
        check_continuation(blob, None if tracks is None else set(tracks), container)
    except InvalidMedia as exc:
        assert exc.code == "not_a_continuation", exc.message
        return exc.message
    return "ok"


# ---------------------------------------------------------------- hand-built EBML

def _size(n: int) -> bytes:
    if n < 0x7F:
        return bytes([0x80 | n])
    return (0x4000 | n).to_bytes(2, "big") if n < 0x3FFF else b"\x01" + n.to_bytes(7, "big")


def el(eid: int, payload: bytes) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + _size(len(payload)) + payload


def block(track: int, rel: int = 0, n: int = 40, payload: bytes = b"") -> bytes:
    """A SimpleBlock: track number, 16-bit relative timecode, keyframe flag, then data."""
    return el(ebml.SIMPLE_BLOCK, bytes([0x80 | track]) + struct.pack(">hB", rel, 0x80) + (payload or bytes(n)))


def cluster(timecode: int, *children: bytes, known: bool = False) -> bytes:
    body = el(ebml.TIMECODE, timecode.to_bytes(2, "big")) + b"".join(children)
    if known:
        return el(ebml.CLUSTER, body)
    return ebml.CLUSTER.to_bytes(4, "big") + b"\x01\xff\xff\xff\xff\xff\xff\xff" + body  # unknown size


CUT = block(2, n=300)[1:]  # a SimpleBlock cut right after its id byte, as Chromium cuts blobs


def test_the_cut_block_then_clusters_of_the_streams_tracks_continue_it() -> None:
    blob = (CUT + block(1) + block(2) + cluster(1000, block(1), block(2, 33))
            + cluster(2000, block(2), block(1), known=True) + cluster(3000, block(1), block(2)))
    assert first_cluster(blob) == len(CUT) + len(block(1)) + len(block(2))
    for end in (len(blob), len(blob) - 20, len(blob) - 44, len(blob) - 45):  # cut in a block, a header
        assert verdict(blob[:end]) == "ok"
    assert verdict(blob, tracks=None) == "ok"


def test_blocks_of_other_tracks_are_refused_unless_the_stream_is_unknown() -> None:
    blob = CUT + cluster(0, block(1), block(3, 20))
    assert "track(s) [3]" in verdict(blob)
    assert verdict(blob, tracks={1, 3}) == "ok"
    assert verdict(blob, tracks=None) == "ok"  # header chunk not known yet: structure only


def test_bad_ids_and_sizes_inside_the_walk_are_refused() -> None:
    body = el(ebml.TIMECODE, b"\0") + block(1)
    cases = {
        "EBML header inside an unknown-size Cluster": CUT + cluster(0, block(1), el(ebml.EBML, b"\x42\x82\x84webm")),
        "block running past its known-size Cluster": CUT + ebml.CLUSTER.to_bytes(4, "big") + _size(len(body) - 10)
        + body + cluster(9, block(2)),
        "reserved element id": CUT + cluster(0, block(1), b"\xff\x81\x00", block(2)),
        "8-byte-plus size": CUT + cluster(0, block(1), b"\xa3\x00\x00", block(2)),
        "block before the Timecode": CUT + el(ebml.CLUSTER, el(0xEC, b"") + block(1) + el(ebml.TIMECODE, b"\0")),
        "Tracks between Clusters with an unknown size": CUT + cluster(0, block(1), known=True)
        + ebml.TRACKS.to_bytes(4, "big") + b"\x01\xff\xff\xff\xff\xff\xff\xff" + bytes(20),
    }
    for name, blob in cases.items():
        assert verdict(blob) != "ok", name
    assert verdict(CUT + cluster(0, block(1))) == "ok"


def test_a_cluster_id_inside_a_block_payload_is_not_a_cluster() -> None:
    fake = block(1, payload=ebml.CLUSTER.to_bytes(4, "big") + b"\x85" + bytes(20))
    blob = CUT + fake + cluster(0, block(1), block(2))
    assert first_cluster(blob) == len(CUT) + len(fake)
    assert verdict(blob) == "ok"


def test_a_blob_without_a_cluster_may_only_end_the_one_in_progress() -> None:
    whole = CUT + block(1) + block(2, 20)
    assert flush_start(whole, set(STREAM)) == len(CUT)
    assert verdict(whole) == "ok"            # Chromium's stop() blob: whole blocks to its end
    assert verdict(whole + b"\xa3") == "ok"  # ... or into the next element's first byte (its cut)
    for blob in (whole[:-7],                 # truncated inside a block's payload
                 CUT + b"\xa3",              # a block's tail alone: nothing to check
                 CUT + block(1) + block(5),  # whole blocks of another stream
                 bytes(MAX_FLUSH + 1 - len(whole)) + whole):  # longer than a Cluster's end can be
        assert "no Cluster within" in verdict(blob)
    assert verdict(bytes(MAX_FLUSH - len(whole)) + whole) == "ok"


def test_the_first_cluster_must_start_within_the_bound() -> None:
    clusters = cluster(0, block(1), block(2))
    assert verdict(bytes(MAX_LEAD - 1) + clusters) == "ok"  # the lead (a cut block's tail) is not checked
    assert "no Cluster within" in verdict(bytes(MAX_LEAD) + clusters)


# ---------------------------------------------------------------- hand-built fragmented MP4

def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def moof(seq: int, *tracks: int) -> bytes:
    trafs = [box(b"traf", box(b"tfhd", b"\0\x02\0\0" + struct.pack(">I", t)) + box(b"tfdt", bytes(8)))
             for t in tracks]
    return box(b"moof", box(b"mfhd", bytes(4) + struct.pack(">I", seq)) + b"".join(trafs))


def fragment(seq: int, *tracks: int) -> bytes:
    return moof(seq, *tracks) + box(b"mdat", bytes(500))


def test_fragments_of_the_streams_tracks_continue_an_mp4() -> None:
    lead = box(b"mdat", bytes(900))[300:]  # the rest of the previous blob's cut mdat
    ok = [fragment(1, 1, 2) + fragment(2, 1, 2), lead + fragment(1, 1, 2) + fragment(2, 2)[:-100],
          fragment(1, 1, 2) + box(b"mfra", bytes(8)), fragment(1, 1) + moof(2, 1)]
    for blob in ok:
        assert verdict(blob, container="mp4") == "ok"
    assert first_moof(lead + fragment(1, 1)) == len(lead)
    refused = {fragment(1, 1, 3): "track 3", moof(1, 1) + moof(2, 1): "b'moof' where",
               fragment(1, 1) + box(b"moov", bytes(40)): "b'moov' where", box(b"mdat", bytes(900)): "no moof",
               fragment(1, 1)[:50]: "no whole moof",
               box(b"ftyp", b"iso5" + bytes(4)) + box(b"moov", bytes(40)) + fragment(1, 1): "a whole file"}
    for blob, why in refused.items():
        assert why in verdict(blob, container="mp4")
    assert verdict(fragment(1, 1, 3), tracks=None, container="mp4") == "ok"


@hsettings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_continuations_get_a_verdict_and_never_crash_the_check(data) -> None:
    blob = bytearray(CUT + cluster(0, block(1), block(2, 9)) + cluster(40, block(2), known=True) + fragment(1, 1, 2))
    for _ in range(data.draw(st.integers(0, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    end = data.draw(st.integers(0, len(blob)))
    for container in ("webm", "mp4"):
        verdict(bytes(blob[:end]), container=container)  # "ok" or not_a_continuation, nothing else


@pytest.mark.parametrize("container", ["webm", "mp4"])
def test_garbage_is_refused(container) -> None:
    rng = random.Random(11)
    for blob in (rng.randbytes(30_000), rng.randbytes(MAX_FLUSH - 10), rng.randbytes(MAX_LEAD + 10),
                 bytes(30_000), PNG, b"", b"\xa3"):
        assert verdict(blob, container=container) != "ok"
    assert sum(verdict(rng.randbytes(rng.randint(1, 4000))) == "ok" for _ in range(2000)) == 0


# ---------------------------------------------------------------- streams cut at arbitrary offsets

def _sync_points(data: bytes, find) -> list[int]:
    out, pos = [], 0
    while (at := find(data[pos:], len(data))) is not None:
        out.append(pos + at)
        pos += at + 1
    return out


def _cut(data: bytes, starts: list[int], rng: random.Random, skip: int = 16) -> list[bytes]:
    """Blobs cut at random offsets, one inside each stretch between sync points (past the
    first `skip` bytes: a Cluster's id + size + Timecode, a moof), as a recorder's blobs."""
    cuts = [rng.randrange(a + skip, b) for a, b in pairwise(starts)]
    return [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)])]


def renumber(blob: bytes, mapping: dict[int, int], container: str = "webm") -> bytes:
    """The blob with the track numbers of its blocks after the lead (1-byte track numbers),
    or of its tfhd boxes, rewritten: a valid continuation of another stream."""
    out = bytearray(blob)
    if container == "mp4":
        at = blob.find(b"tfhd")
        while at != -1:
            track = int.from_bytes(blob[at + 8:at + 12], "big")
            out[at + 8:at + 12] = mapping.get(track, track).to_bytes(4, "big")
            at = blob.find(b"tfhd", at + 1)
        return bytes(out)
    at = first_cluster(blob)
    at = flush_start(blob, None) if at is None else at
    assert at is not None
    while (head := ebml.element_header_or_cut(blob, at)) is not None and at + head[2] < len(blob):
        eid, size, n = head
        if eid in (ebml.SIMPLE_BLOCK, ebml.BLOCK):
            out[at + n] = 0x80 | mapping[blob[at + n] & 0x7F]
        at += n if eid in (ebml.CLUSTER, ebml.BLOCK_GROUP) else n + (size or 0)
    return bytes(out)


def _tracks_of(path: Path, container: str) -> set[int]:
    return set(probe_file(str(path), container).track_numbers)


def test_a_live_webm_cut_anywhere_continues_and_another_streams_blobs_do_not(live_webm, tmp_path) -> None:
    starts = _sync_points(live_webm, first_cluster)
    assert len(starts) >= 8
    for seed in range(4):
        blobs = _cut(live_webm, starts, random.Random(seed))
        (tmp_path / "head.webm").write_bytes(blobs[0])
        tracks = _tracks_of(tmp_path / "head.webm", "webm")  # what the header chunk's probe stores
        assert tracks == STREAM
        for blob in blobs[1:]:
            assert verdict(blob, tracks) == "ok"
            assert "blocks of track(s) [" in verdict(renumber(blob, {1: 3, 2: 4}), tracks)
            assert verdict(renumber(blob, {1: 2, 2: 1}), tracks) == "ok"  # same numbers, swapped
    # A blob inside one Cluster: the end of it (whole blocks) continues it, a truncated one not.
    _, size, n = ebml.element_header(live_webm, starts[2])
    bounds, pos = [], starts[2] + n
    while pos < starts[2] + n + size:
        bounds.append(pos)
        pos += sum(ebml.element_header(live_webm, pos)[1:])
    start, end = bounds[3] + 5, bounds[-3]
    assert verdict(live_webm[start:end], tracks) == "ok"
    assert verdict(live_webm[start:end + 1], tracks) == "ok"
    assert "no Cluster within" in verdict(live_webm[start:end - 3], tracks)


def test_a_fragmented_mp4_cut_anywhere_continues_and_another_streams_blobs_do_not(fragmented_mp4,
                                                                                   tmp_path) -> None:
    starts = _sync_points(fragmented_mp4, first_moof)
    assert len(starts) >= 4
    (tmp_path / "head.mp4").write_bytes(fragmented_mp4[:starts[1]])  # ftyp + moov + the first fragment
    tracks = _tracks_of(tmp_path / "head.mp4", "mp4")
    assert tracks == STREAM
    moof_size = struct.unpack(">I", fragmented_mp4[starts[1]:starts[1] + 4])[0]
    for seed in range(4):
        blobs = _cut(fragmented_mp4, starts[1:], random.Random(seed), skip=moof_size + 8)
        for blob in [fragmented_mp4[starts[1]:starts[2]], *blobs[1:]]:
            assert verdict(blob, tracks, "mp4") == "ok"
            assert "a fragment of track 3" in verdict(renumber(blob, {1: 3, 2: 4}, "mp4"), tracks, "mp4")


# ---------------------------------------------------------------- through the API

NOT_A_CONTINUATION = "not_a_continuation"


def _upload_all(client, tok: str, rec: str, blobs: list[bytes], ctype: str) -> None:
    for seq, blob in enumerate(blobs):
        extra = {"X-Chunk-Continuation": "1"} if seq else {}
        resp = put(client, tok, rec, "cam-a", seq, blob, T0 + 1000 * seq, ctype, **extra)
        assert resp.status_code == 201, (seq, resp.text)


def _refuse_all(client, store, tok: str, rec: str, bad: dict[str, bytes], ctype: str, first_seq: int) -> list[str]:
    """Each bad blob answers 422 not_a_continuation, lands in quarantine and on the ledger;
    the stored chunks do not change. Returns the ledger's reasons."""
    before = snapshot(store)
    for seq, (name, blob) in enumerate(bad.items(), start=first_seq):
        resp = put(client, tok, rec, "cam-a", seq, blob, T0 + 1000 * seq, ctype, **{"X-Chunk-Continuation": "1"})
        assert resp.status_code == 422, (name, resp.text)
        assert resp.json()["code"] == NOT_A_CONTINUATION, (name, resp.json())
    after = snapshot(store)
    assert {k: v for k, v in after.items() if "/quarantine/" not in k} == before
    assert sorted(v[1] for k, v in after.items() if "/quarantine/" in k) == sorted(sha(b) for b in bad.values())
    track = client.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()["tracks"][0]
    assert [r["seq"] for r in track["rejected"]] == list(range(first_seq, first_seq + len(bad)))
    assert all("not a continuation" in r["reason"] for r in track["rejected"])
    return [r["reason"] for r in track["rejected"]]


def _stored_join(client, store, rec: str) -> bytes:
    with session_scope(client.app.state.ingest.engine) as s:
        keys = [c.object_key for c in s.exec(select(Chunk).where(Chunk.recording_id == rec, Chunk.status == "stored")
                                             .order_by(Chunk.seq)).all()]
    return b"".join(store.get_bytes(k) for k in keys)


def _header_probe(client, rec: str) -> dict:
    with session_scope(client.app.state.ingest.engine) as s:
        chunk = s.exec(select(Chunk).where(Chunk.recording_id == rec, Chunk.seq == 0)).one()
        return dict(chunk.probe or {})


def _bad_webm(good: bytes, header: bytes) -> dict[str, bytes]:
    """Other tracks first: after a rejected seq the stream's tracks are no longer assumed."""
    at = first_cluster(good)
    assert at is not None and at > 8
    return {"other tracks": renumber(good, {1: 3, 2: 4}), "random": random.Random(1).randbytes(30_000),
            "png": PNG, "zeros": bytes(20_000), "truncated before its Cluster": good[:at - 3],
            "a whole file": header}


def test_api_stores_every_continuation_and_quarantines_the_rest(client, token_for, store, live_webm) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok, key="cont-webm")
    blobs = _cut(live_webm, _sync_points(live_webm, first_cluster), random.Random(3))
    _upload_all(client, tok, rec, blobs, "video/webm")
    assert _header_probe(client, rec)["track_numbers"] == [1, 2]
    reasons = _refuse_all(client, store, tok, rec, _bad_webm(blobs[2], blobs[0]), "video/webm", len(blobs))
    assert "blocks of track(s) [" in reasons[0] and "the stream has [1, 2]" in reasons[0]
    assert _stored_join(client, store, rec) == live_webm  # the byte-join is the stream again


def test_api_mp4_continuations(client, token_for, store, fragmented_mp4) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok, key="cont-mp4")
    starts = _sync_points(fragmented_mp4, first_moof)
    moof_size = struct.unpack(">I", fragmented_mp4[starts[1]:starts[1] + 4])[0]
    blobs = [fragmented_mp4[:starts[1]],
             *_cut(fragmented_mp4[starts[1]:], [s - starts[1] for s in starts[1:]], random.Random(2),
                   skip=moof_size + 8)]
    _upload_all(client, tok, rec, blobs, "video/mp4")
    assert _header_probe(client, rec)["track_numbers"] == [1, 2]
    bad = {"other tracks": renumber(blobs[2], {1: 3, 2: 4}, "mp4"), "random": random.Random(4).randbytes(30_000),
           "png": PNG, "zeros": bytes(20_000), "a whole file": blobs[0]}
    reasons = _refuse_all(client, store, tok, rec, bad, "video/mp4", len(blobs))
    assert "a fragment of track 3" in reasons[0]
    assert _stored_join(client, store, rec) == fragmented_mp4


# ---------------------------------------------------------------- real Chromium blobs

@pytest.mark.browser
def test_every_real_chromium_continuation_continues_its_stream(timeslice_webm, tmp_path) -> None:
    recordings = {"1 s": timeslice_webm,
                  "250 ms": chromium_chunks(tmp_path / "q", mode="timeslice", seconds=5.0, chunk_ms=250),
                  "audio": chromium_chunks(tmp_path / "a", mode="timeslice", seconds=4.0, chunk_ms=1000,
                                           mime="audio/webm;codecs=opus")}
    for name, blobs in recordings.items():
        assert [b["continuation"] for b in blobs] == [False] + [True] * (len(blobs) - 1), name
        tracks = _tracks_of(blobs[0]["path"], "webm")
        assert tracks == ({1} if name == "audio" else STREAM)
        for b in blobs[1:]:
            data = b["path"].read_bytes()
            assert verdict(data, tracks) == "ok", (name, b["seq"])
            assert verdict(renumber(data, {1: 3, 2: 4}), tracks) != "ok", (name, b["seq"])
            at = first_cluster(data)
            if at is not None and at > 8:
                assert "no Cluster within" in verdict(data[:at - 3], tracks), (name, b["seq"])


@pytest.mark.browser
def test_real_chromium_mp4_continuations(tmp_path) -> None:
    blobs = chromium_chunks(tmp_path, mode="timeslice", seconds=4.0, chunk_ms=1000, mime="video/mp4")
    assert len(blobs) >= 2 and blobs[0]["path"].read_bytes()[4:8] == b"ftyp"
    # Chromium's header blob is ftyp + moov only; its track_IDs straight from the walk.
    tracks = set(isobmff.read_mp4(str(blobs[0]["path"])).tracks)
    assert tracks == STREAM
    for b in blobs[1:]:
        data = b["path"].read_bytes()
        assert data[4:8] == b"moof"
        assert verdict(data, tracks, "mp4") == "ok"
        assert "a fragment of track 3" in verdict(renumber(data, {1: 3, 2: 4}, "mp4"), tracks, "mp4")


@pytest.mark.browser
def test_api_real_chromium_recording(client, token_for, store, timeslice_webm, tmp_path) -> None:
    tok = token_for(role="service")
    rec = create_recording(client, tok, key="cont-chromium")
    blobs = [b["path"].read_bytes() for b in timeslice_webm]
    _upload_all(client, tok, rec, blobs, "video/webm")
    assert _header_probe(client, rec)["track_numbers"] == [1, 2]
    reasons = _refuse_all(client, store, tok, rec, _bad_webm(blobs[1], blobs[0]), "video/webm", len(blobs))
    assert "blocks of track(s) [" in reasons[0]
    joined = _stored_join(client, store, rec)
    assert joined == b"".join(blobs)
    path = tmp_path / "joined.webm"
    path.write_bytes(joined)
    info = ffprobe(path)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["opus", "vp8"]
