"""Playback: media outputs streamed from the real S3 server with HTTP Range, signed URLs.

A real H.264/AAC MP4 (tests.media.av_clip, remuxed with +faststart like composite.mp4),
a real JPEG and real HLS (MPEG-TS) segments are stored under the recording's output keys
and `Recording.outputs` is set the way `workers.media` sets it.
"""
from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core import keys
from core.auth import Principal
from core.db import session_scope
from core.models import Recording, RecordingGrant
from review_api.playback import (ByteRange, Unsatisfiable, etag_matches, mint_playback_token, parse_range,
                                 with_token)
from tests.conftest import auth
from tests.media import av_clip

ORG = "acme"


# ---------------------------------------------------------------- media + recordings (helpers)

def make_media(out: Path, seconds: float = 6, size: tuple[int, int] = (320, 180)) -> dict[str, Path]:
    """composite.mp4 (faststart), poster.jpg, thumbs/strip.jpg and an HLS playlist + segments."""
    clip = av_clip(out / "clip.mp4", seconds, container="mp4", size=size, label="REVIEW")
    ff = ["ffmpeg", "-v", "error", "-y", "-i", str(clip)]
    files = {"composite.mp4": out / "composite.mp4", "poster.jpg": out / "poster.jpg",
             "thumbs/strip.jpg": out / "strip.jpg", "hls/index.m3u8": out / "hls" / "index.m3u8"}
    subprocess.run([*ff, "-c", "copy", "-movflags", "+faststart", str(files["composite.mp4"])], check=True)
    subprocess.run([*ff, "-ss", "1", "-frames:v", "1", str(files["poster.jpg"])], check=True)
    subprocess.run([*ff, "-vf", "fps=1,scale=160:90,tile=6x1", "-frames:v", "1", str(files["thumbs/strip.jpg"])],
                   check=True)
    (out / "hls").mkdir(exist_ok=True)
    subprocess.run([*ff, "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
                    "-hls_segment_filename", str(out / "hls" / "w000000_%03d.ts"), str(files["hls/index.m3u8"])],
                   check=True)
    return files


def publish(store, engine, rec_id: str, files: dict[str, Path], org: str = ORG, status: str = "ready",
            title: str = "", gaps: dict | None = None, started_at: int = 1_735_689_600_000) -> Recording:
    """Upload the outputs under their keys and write the recording row with `outputs`."""
    types = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}
    for path in files["hls/index.m3u8"].parent.glob("*.ts"):
        store.put_file(keys.output_key(org, rec_id, f"hls/{path.name}"), str(path), types[".ts"])
    for name, path in files.items():
        store.put_file(keys.output_key(org, rec_id, name), str(path), types[path.suffix])
    outputs = {"composite": keys.output_key(org, rec_id, "composite.mp4"),
               "hls": keys.output_key(org, rec_id, "hls/index.m3u8"),
               "poster": keys.output_key(org, rec_id, "poster.jpg"),
               "thumbnails": keys.output_key(org, rec_id, "thumbs/strip.jpg"),
               "duration_ms": 6000, "windows": 1, "media_gaps": gaps or {}, "labels": True}
    rec = Recording(id=rec_id, org=org, client_key=rec_id, status=status, title=title or rec_id,
                    started_at_ms=started_at, outputs=outputs, created_by="tester")  # the `reader` below
    with session_scope(engine) as s:
        s.add(rec)
        s.flush()
        s.add(RecordingGrant(recording_id=rec_id, org=org, kind="group", subject="panel"))
    return rec


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_media(tmp_path_factory.mktemp("playback"))


@pytest.fixture
def app(client, store, media):
    engine = client.app.state.engine
    publish(store, engine, "rec_a", media)
    publish(store, engine, "rec_b", media)
    publish(store, engine, "rec_x", media, org="globex")
    with session_scope(engine) as s:
        s.add(Recording(id="rec_wip", org=ORG, client_key="rec_wip", status="processing", created_by="tester"))
        s.add(Recording(id="rec_gone", org=ORG, client_key="rec_gone", status="deleted"))
    return client


@pytest.fixture
def reader(token_for) -> dict[str, str]:
    return auth(token_for(role="interviewer", org=ORG))


def playback(app, reader, rec: str = "rec_a", **params) -> dict:
    r = app.get(f"/v1/recordings/{rec}/playback", headers=reader, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- pure range math

@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-99", 1000, ByteRange(0, 99)),
    ("bytes=100-", 1000, ByteRange(100, 999)),
    ("bytes=-300", 1000, ByteRange(700, 999)),
    ("bytes=-5000", 1000, ByteRange(0, 999)),        # suffix longer than the object: all of it
    ("bytes=990-5000", 1000, ByteRange(990, 999)),   # last byte past the end: clipped
    ("Bytes = 5 - 5", 1000, ByteRange(5, 5)),
    (None, 1000, None), ("", 1000, None),
    ("bytes=0-1,5-6", 1000, None),                   # several ranges: send it all
    ("bytes=9-3", 1000, None), ("items=0-1", 1000, None), ("bytes=-", 1000, None), ("bytes=a-b", 1000, None),
])
def test_parse_range(header, size, expected) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header, size", [("bytes=1000-", 1000), ("bytes=1000-1005", 1000), ("bytes=-0", 1000),
                                          ("bytes=0-", 0), ("bytes=-10", 0)])
def test_unsatisfiable_ranges(header, size) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_range_headers_etags_and_playlist_tokens() -> None:
    assert ByteRange(10, 19).length == 10 and ByteRange(10, 19).content_range(100) == "bytes 10-19/100"
    assert etag_matches('"abc"', "abc") and etag_matches('W/"abc", "x"', "abc") and etag_matches("*", "abc")
    assert not etag_matches('"abd"', "abc") and not etag_matches(None, "abc")
    text = "#EXTM3U\n#EXTINF:2.0,\nw000000_000.ts\n#EXTINF:2.0,\nw000000_001.ts?v=2\n#EXT-X-ENDLIST\n"
    assert with_token(text, "a.b+c") == ("#EXTM3U\n#EXTINF:2.0,\nw000000_000.ts?token=a.b%2Bc\n#EXTINF:2.0,\n"
                                         "w000000_001.ts?v=2&token=a.b%2Bc\n#EXT-X-ENDLIST\n")


# ---------------------------------------------------------------- HTTP

def test_playback_urls_stream_the_stored_mp4(app, reader, media) -> None:
    data = media["composite.mp4"].read_bytes()
    pb = playback(app, reader)
    assert pb["duration_ms"] == 6000 and pb["expires_in"] == 1800
    assert 0 < pb["expires_at"] / 1000 - time.time() <= 1800
    for field in ("mp4_url", "hls_url", "poster_url", "thumbs_url"):
        assert "/v1/recordings/rec_a/media/" in pb[field] and "token=" in pb[field]
    r = app.get(path_of(pb["mp4_url"]))  # no Authorization header: the query token is enough
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(data)) and r.headers["etag"].startswith('"')
    poster = app.get(path_of(pb["poster_url"]))
    assert poster.headers["content-type"] == "image/jpeg" and poster.content == media["poster.jpg"].read_bytes()
    strip = app.get(path_of(pb["thumbs_url"]))
    assert strip.status_code == 200 and strip.content[:2] == b"\xff\xd8"


def test_byte_ranges(app, reader, media) -> None:
    data = media["composite.mp4"].read_bytes()
    size, url = len(data), "/v1/recordings/rec_a/media/composite.mp4"
    cases = {"bytes=0-99": (0, 99), "bytes=0-": (0, size - 1), f"bytes={size // 2}-{size // 2 + 4095}":
             (size // 2, size // 2 + 4095), "bytes=-500": (size - 500, size - 1),
             f"bytes={size - 10}-{size + 100}": (size - 10, size - 1)}
    for header, (first, last) in cases.items():
        r = app.get(url, headers={**reader, "Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.headers["content-length"] == str(last - first + 1)
        assert r.content == data[first:last + 1], header
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        r = app.get(url, headers={**reader, "Range": header})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
        assert r.json()["code"] == "range_not_satisfiable"
    r = app.get(url, headers={**reader, "Range": "bytes=0-9,20-29"})
    assert r.status_code == 200 and r.content == data


def test_etag_conditionals_and_head(app, reader, media) -> None:
    data, url = media["composite.mp4"].read_bytes(), "/v1/recordings/rec_a/media/composite.mp4"
    etag = app.get(url, headers={**reader, "Range": "bytes=0-0"}).headers["etag"]
    assert app.get(url, headers={**reader, "If-None-Match": etag}).status_code == 304
    r = app.get(url, headers={**reader, "Range": "bytes=10-19", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[10:20]
    r = app.get(url, headers={**reader, "Range": "bytes=10-19", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data  # the client's copy changed: all of it
    r = app.head(url, headers={**reader, "Range": "bytes=100-199"})
    assert r.status_code == 206 and r.headers["content-length"] == "100" and r.content == b""
    assert r.headers["etag"] == etag


def test_hls_playlist_passes_the_token_to_its_segments(app, reader, media) -> None:
    pb = playback(app, reader)
    token = pb["hls_url"].split("token=", 1)[1]
    r = app.get(path_of(pb["hls_url"]))
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
    segments = [ln for ln in r.text.splitlines() if ln and not ln.startswith("#")]
    assert segments and all(ln.endswith(f"?token={token}") for ln in segments)
    first = segments[0]
    seg = app.get(f"/v1/recordings/rec_a/media/hls/{first}")
    stored = (media["hls/index.m3u8"].parent / first.split("?")[0]).read_bytes()
    assert seg.status_code == 200 and seg.headers["content-type"] == "video/mp2t" and seg.content == stored
    assert seg.content[0] == 0x47  # MPEG-TS sync byte
    r = app.get("/v1/recordings/rec_a/media/hls/index.m3u8", headers=reader)  # header auth: untouched
    assert "token=" not in r.text and "w000000_000.ts" in r.text


def test_direct_presigned_urls(app, reader, media) -> None:
    data = media["composite.mp4"].read_bytes()
    pb = playback(app, reader, direct=1)
    assert pb["direct"] and "X-Amz-Signature" in pb["mp4_url"] and "/v1/recordings/" in pb["hls_url"]
    req = urllib.request.Request(pb["mp4_url"], headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # straight from the S3 server
        assert resp.status == 206 and resp.read() == data[100:200]


def test_who_may_play(app, reader, token_for, settings) -> None:
    url = "/v1/recordings/{}/media/composite.mp4"
    assert app.get(url.format("rec_a")).status_code == 401
    other = app.get(url.format("rec_x"), headers=reader)
    assert other.status_code == 404 and other.json()["code"] == "unknown_recording"
    assert app.get("/v1/recordings/rec_x/playback", headers=reader).status_code == 404
    candidate = auth(token_for(role="candidate", org=ORG))
    assert app.get(url.format("rec_a"), headers=candidate).status_code == 403
    assert app.get("/v1/recordings/rec_a/playback", headers=candidate).status_code == 403
    upload = auth(token_for(role="recorder", org=ORG, scope="upload", recording_id="rec_a"))
    assert app.get(url.format("rec_a"), headers=upload).status_code == 403
    assessor = auth(token_for(role="assessor", org=ORG, sub="as-1"))
    assert app.get(url.format("rec_a"), headers=assessor).status_code == 404  # not granted to them
    granted = auth(token_for(role="assessor", org=ORG, sub="as-2", groups=["panel"]))
    assert app.get(url.format("rec_a"), headers=granted).status_code == 200  # granted to their group
    assert app.get(url.format("rec_a"), headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_playback_tokens_are_bound_to_one_recording_and_expire(app, reader, settings) -> None:
    token = playback(app, reader)["mp4_url"].split("token=", 1)[1]
    assert app.get("/v1/recordings/rec_a/media/poster.jpg", params={"token": token}).status_code == 200
    wrong = app.get("/v1/recordings/rec_b/media/composite.mp4", params={"token": token})
    assert wrong.status_code == 403 and wrong.json()["code"] == "wrong_recording"
    # Nothing else accepts it: not the recording detail, not the transcript, not another playback.
    assert app.get("/v1/recordings/rec_a", params={"token": token}).status_code == 401
    assert app.get("/v1/recordings/rec_a/transcript", params={"token": token}).status_code == 401
    assert app.get("/v1/recordings/rec_a/playback", params={"token": token}).status_code == 401
    who = Principal(sub="u", org=ORG, role="interviewer")
    expired = mint_playback_token(settings.jwt_secret, settings.jwt_issuer, who, "rec_a", 60, now=time.time() - 600)
    r = app.get("/v1/recordings/rec_a/media/composite.mp4", params={"token": expired})
    assert r.status_code == 401 and r.json()["code"] == "token_expired"
    forged = mint_playback_token("another-secret-0123456789abcdef!", settings.jwt_issuer, who, "rec_a", 600)
    r = app.get("/v1/recordings/rec_a/media/composite.mp4", params={"token": forged})
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


def test_unknown_and_unready(app, reader) -> None:
    for rec, code in (("rec_nope", "unknown_recording"), ("rec_gone", "unknown_recording"),
                      ("rec_wip", "output_not_ready")):
        r = app.get(f"/v1/recordings/{rec}/media/composite.mp4", headers=reader)
        assert r.status_code == 404 and r.json()["code"] == code, rec
        assert app.get(f"/v1/recordings/{rec}/playback", headers=reader).json()["code"] == code
    for name in ("secret.txt", "../composite.mp4", "hls/../../x.ts", "chunks/t1/000000.webm"):
        r = app.get(f"/v1/recordings/rec_a/media/{name}", headers=reader)
        assert r.status_code == 404 and r.json()["code"] in ("unknown_media", "not_found"), name
    r = app.get("/v1/recordings/rec_a/media/hls/w999999_000.ts", headers=reader)
    assert r.status_code == 404 and r.json()["code"] == "object_not_found"
