"""Test media: the synthetic generators of `recorder.synth`, plus real Chromium chunks.

    chromium_chunks(out_dir, mode, ...)    -> [dict]                real MediaRecorder blobs
                                                                    from headless Chromium
    fake_capture(out_dir, ...)             -> FakeCapture           y4m + wav for Chromium's fake
                                                                    camera and microphone (beeps
                                                                    on flashes, frame numbers)
"""
from __future__ import annotations

import base64
import json
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recorder.synth import (SAMPLE_RATE, av_clip, chunk_spans_ms, espeak_wav, ffprobe, participant_clip,
                            place_segments, probe_duration_s, speech_track, split_chunks)

__all__ = [
    "SAMPLE_RATE", "CHROMIUM", "CHROMIUM_ARGS", "espeak_wav", "speech_track", "place_segments", "av_clip",
    "split_chunks", "chunk_spans_ms", "ffprobe", "probe_duration_s", "chromium_chunks", "participant_clip",
    "FakeCapture", "fake_capture", "frame_number",
]

# ---------------------------------------------------------------- real browser chunks

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
CHUNK_CACHE = Path("/tmp/recorder-chromium-chunks")
_RECORD_PAGE = """<!doctype html><meta charset=utf-8><title>record</title><script>
const now = () => Math.round(performance.timeOrigin + performance.now());
const sleep = ms => new Promise(r => setTimeout(r, ms));
async function b64(blob) {
  const b = new Uint8Array(await blob.arrayBuffer()); let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s);
}
function recorder(stream, mime, parts) {
  const rec = new MediaRecorder(stream, {mimeType: mime});
  rec.ondataavailable = e => { if (e.data.size) parts(e.data, now()); };
  rec.started = new Promise(r => rec.onstart = () => r(now()));
  rec.stopped = new Promise(r => rec.onstop = () => r(now()));
  return rec;
}
async function stopstart(stream, mime, total, chunkMs) {   // each blob a complete file
  const out = [];
  for (let seq = 0; seq * chunkMs < total; seq++) {
    const parts = [], rec = recorder(stream, mime, d => parts.push(d));
    rec.start(); const t0 = await rec.started;
    await sleep(Math.min(chunkMs, total - seq * chunkMs));
    rec.stop(); const t1 = await rec.stopped;
    out.push({seq, start: t0, dur: t1 - t0, blob: new Blob(parts, {type: rec.mimeType}), cont: false});
  }
  return out;
}
async function timeslice(stream, mime, total, chunkMs) {  // first blob has the header
  const out = []; let last;
  const rec = recorder(stream, mime, (d, t) => {
    out.push({seq: out.length, start: last, dur: t - last, blob: d, cont: out.length > 0}); last = t; });
  rec.start(chunkMs); last = await rec.started;
  await sleep(total); rec.stop(); await rec.stopped;
  return out;
}
window.record = async ({mode, seconds, chunkMs, mime}) => {
  if (!MediaRecorder.isTypeSupported(mime)) throw new Error("unsupported mime " + mime);
  const video = !mime.startsWith("audio/") && {width: 320, height: 180, frameRate: 30};
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video});
  const run = mode === "stopstart" ? stopstart : timeslice;
  const blobs = await run(stream, mime, seconds * 1000, chunkMs);
  stream.getTracks().forEach(t => t.stop());
  return Promise.all(blobs.map(async c => ({seq: c.seq, start_ms: c.start, duration_ms: c.dur,
    mime: c.blob.type || mime, continuation: c.cont, b64: await b64(c.blob)})));
};
</script>"""


class _PageServer:
    """Serves one HTML page at http://127.0.0.1:PORT/ (a secure context for getUserMedia)."""

    def __init__(self, html: str) -> None:
        import http.server
        import threading

        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_PageServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _record_in_chromium(args: dict, audio_wav: Path | None, timeout_s: float) -> list[dict]:
    from playwright.sync_api import sync_playwright

    flags = CHROMIUM_ARGS + ([f"--use-file-for-fake-audio-capture={audio_wav}"] if audio_wav else [])
    with _PageServer(_RECORD_PAGE) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags, timeout=60_000)
        try:
            page = browser.new_page()
            page.goto(server.url)
            page.set_default_timeout(timeout_s * 1000)
            return page.evaluate(
                f"a => Promise.race([window.record(a), new Promise((_, no) =>"
                f" setTimeout(() => no(new Error('record timed out')), {int(timeout_s * 1000)}))])", args)
        finally:
            browser.close()


def _ext_for(mime: str) -> str:
    return "mp4" if mime.split(";")[0].strip().endswith("mp4") else "webm"


def chromium_chunks(
    out_dir: str | Path,
    mode: str = "stopstart",
    seconds: float = 4.0,
    chunk_ms: int = 1000,
    mime: str = "video/webm;codecs=vp8,opus",
    audio_wav: str | Path | None = None,
) -> list[dict]:
    """Record the fake camera+mic in headless Chromium with a real `MediaRecorder`.

    mode "stopstart": a recorder stopped and restarted every `chunk_ms` (each blob a
    complete file); "timeslice": one recorder `start(chunk_ms)` (blob 0 has the header,
    later blobs are continuations). An "audio/…" mime records the microphone only.
    `audio_wav` feeds a WAV as the microphone (Chromium loops it).
    Returns `{path, seq, start_ms (epoch ms the blob's recording began), duration_ms,
    mime, continuation}` per blob, files `out_dir/{seq:06d}.{webm|mp4}`. Results are cached
    under /tmp/recorder-chromium-chunks per arguments, then copied to `out_dir`.
    """
    import hashlib
    import shutil
    import tempfile

    if mode not in ("stopstart", "timeslice"):
        raise ValueError(f"mode must be stopstart or timeslice, not {mode!r}")
    wav_sha = hashlib.sha256(Path(audio_wav).read_bytes()).hexdigest() if audio_wav else ""
    key = hashlib.sha256(json.dumps([_RECORD_PAGE, mode, seconds, chunk_ms, mime, wav_sha]).encode()).hexdigest()[:20]
    cache = CHUNK_CACHE / key
    if not (cache / "manifest.json").exists():
        CHUNK_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=CHUNK_CACHE))
        args = {"mode": mode, "seconds": seconds, "chunkMs": chunk_ms, "mime": mime}
        blobs = _record_in_chromium(args, Path(audio_wav) if audio_wav else None, seconds + 60)
        for blob in blobs:
            name = f"{blob['seq']:06d}.{_ext_for(mime)}"
            (tmp / name).write_bytes(base64.b64decode(blob.pop("b64")))
            blob["file"] = name
        (tmp / "manifest.json").write_text(json.dumps(blobs, indent=1))
        try:
            tmp.rename(cache)
        except OSError:  # another session cached the same arguments meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = []
    for blob in json.loads((cache / "manifest.json").read_text()):
        path = out_dir / blob.pop("file")
        shutil.copyfile(cache / path.name, path)
        result.append({"path": path, **blob})
    return result


# ---------------------------------------------------------------- fake camera + microphone files

CODE_BITS = 8  # frame numbers 0..255, drawn as a row of black/white blocks at the bottom


@dataclass(frozen=True)
class FakeCapture:
    """Files for `--use-file-for-fake-video-capture` / `--use-file-for-fake-audio-capture`.

    Chromium loops each file on its own, and its y4m reader shows frame 0 twice at every wrap
    (it rewinds without advancing), so the camera's loop lasts one frame more than the file:
    the WAV ends with one frame of silence, so both loops last `loop_s` = (frames + 1) / fps
    and a beep stays on its flash in every loop. At each event a 1 kHz beep starts in the
    audio and the picture turns white for `flash_frames` frames. Events are
    spaced by different gaps (the loop's wrap-around included), so a beep can only pair with
    its own flash for any offset under half the shortest gap. Every frame carries its number
    (`frame_number` reads it back), which places a flash whose first frames were dropped.
    """

    y4m: Path
    wav: Path
    fps: int
    loop_s: float
    event_frames: tuple[int, ...]
    flash_frames: int

    @property
    def events_s(self) -> tuple[float, ...]:
        return tuple(f / self.fps for f in self.event_frames)

    def gaps_s(self) -> list[float]:
        """Event to event, around the loop (the last gap wraps to the next loop's first event)."""
        ev = self.events_s
        return [b - a for a, b in zip(ev, ev[1:] + (ev[0] + self.loop_s,))]


def _code_picture(number: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    block = w // CODE_BITS
    row = np.concatenate([np.full(block, 235 if number >> (CODE_BITS - 1 - b) & 1 else 16, np.uint8)
                          for b in range(CODE_BITS)])
    return np.tile(np.pad(row, (0, w - row.size), constant_values=16), (h // 9, 1))


def frame_number(gray: np.ndarray) -> int:
    """The number `fake_capture` drew into a (decoded, possibly rescaled) luma plane."""
    h, w = gray.shape
    code = gray[h - h // 18 - 1, :]  # the middle line of the code row
    block = w // CODE_BITS
    bits = [code[b * block + block // 4: (b + 1) * block - block // 4].mean() > 128 for b in range(CODE_BITS)]
    return int("".join("1" if bit else "0" for bit in bits), 2)


def fake_capture(out_dir: str | Path, loop_s: float = 10.0, fps: int = 24, size: tuple[int, int] = (320, 180),
                 event_frames: tuple[int, ...] = (12, 38, 67, 99, 134, 172, 213), flash_frames: int = 3,
                 beep_s: float = 0.1) -> FakeCapture:
    """Write `camera.y4m` (I420, `fps`, `loop_s` seconds) and `mic.wav` (48 kHz mono s16).

    Between flashes the picture is grey with a bar moving across it (live, not frozen);
    the bottom ninth is the frame number. Event frames are chosen so each event starts on a
    frame boundary (and on a sample: 48 kHz is a multiple of the frame rates used).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w, h = size
    frames = round(loop_s * fps)
    if w % CODE_BITS or h % 18 or w % 2 or frames > 1 << CODE_BITS or max(event_frames) >= frames:
        raise ValueError("fake_capture: size must fit the code row; events within the loop")
    flashing = {e + i for e in event_frames for i in range(flash_frames)}
    y4m = out_dir / "camera.y4m"
    chroma = np.full(w * h // 2, 128, np.uint8).tobytes()
    with y4m.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            luma = np.full((h, w), 235 if n in flashing else 90, np.uint8)
            if n not in flashing:
                x = n * 4 % w
                luma[: h - h // 9, x: x + 16] = 150
            luma[h - h // 9:] = _code_picture(n, size)
            f.write(b"FRAME\n" + luma.tobytes() + chroma)
    t = np.arange(round((frames + 1) / fps * SAMPLE_RATE)) / SAMPLE_RATE  # + the frame shown twice
    on = np.zeros(t.size, bool)
    for e in event_frames:
        start = round(e / fps * SAMPLE_RATE)
        on[start: start + round(beep_s * SAMPLE_RATE)] = True
    pcm = (np.sin(2 * np.pi * 1000 * t) * 0.5 * 32767 * on).astype("<i2")
    wav = out_dir / "mic.wav"
    with wave.open(str(wav), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(SAMPLE_RATE)
        wf.writeframes(pcm.tobytes())
    return FakeCapture(y4m, wav, fps, (frames + 1) / fps, tuple(event_frames), flash_frames)
