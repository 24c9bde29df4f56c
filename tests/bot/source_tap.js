// Injected before the call page's scripts (tests/bot/test_chromium_sync.py): taps the first
// getUserMedia stream with both tracks and records, on the page's performance clock where it can,
// what the fake devices produced. window.__source = {
//   beeps:  [capture ms of each beep's first loud sample],   (AudioData.timestamp: performance clock)
//   frames: [[frame number (drawn by tests.media.fake_capture), timestamp ms, delivered at (performance ms)]],
//   shown:  [requestVideoFrameCallback captureTime (performance ms)],  relates frames' timestamps
//   origin: performance.timeOrigin (epoch ms), error }
(() => {
  const src = window.__source = {beeps: [], frames: [], shown: [], origin: performance.timeOrigin, error: null};
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async c => {
    const s = await gum(c);
    if (!src.tapped && s.getAudioTracks().length && s.getVideoTracks().length) {
      src.tapped = true;
      try { tap(s); } catch (e) { src.error = String(e); }
    }
    return s;
  };
  const reader = t => new MediaStreamTrackProcessor({track: t.clone()}).readable.getReader();
  async function audio(r) {
    let last = -1e9;
    for (;;) {
      const {value: a, done} = await r.read();
      if (done) return;
      const n = a.numberOfFrames, x = new Float32Array(n), t0 = a.timestamp / 1000, rate = a.sampleRate;
      a.copyTo(x, {planeIndex: 0, format: 'f32-planar'});
      a.close();
      for (let i = 0; i < n; i++) if (Math.abs(x[i]) > 0.1) {
        const t = t0 + i * 1000 / rate;
        if (t - last > 300) src.beeps.push(t);
        last = t;
      }
    }
  }
  async function video(r) {
    for (;;) {
      const {value: f, done} = await r.read();
      if (done) return;
      const delivered = performance.now(), w = f.visibleRect.width, h = f.visibleRect.height;
      const y = new Uint8Array(f.allocationSize());
      await f.copyTo(y);
      const ts = f.timestamp / 1000;
      f.close();
      const row = (h - Math.floor(h / 18) - 1) * w, block = w / 8;
      let number = 0;
      for (let b = 0; b < 8; b++) {
        let s = 0;
        for (let i = Math.floor(b * block + block / 4); i < (b + 1) * block - block / 4; i++) s += y[row + i];
        number = number * 2 + (s / (block / 2) > 128 ? 1 : 0);
      }
      src.frames.push([number, ts, delivered]);
    }
  }
  function tap(s) {
    audio(reader(s.getAudioTracks()[0]));
    video(reader(s.getVideoTracks()[0]));
    const v = document.createElement('video');
    Object.assign(v, {muted: true, autoplay: true, playsInline: true});
    v.style.cssText = 'position:fixed;right:0;bottom:0;width:32px;height:18px';
    v.srcObject = new MediaStream([s.getVideoTracks()[0].clone()]);
    const shown = (now, m) => { src.shown.push(m.captureTime); v.requestVideoFrameCallback(shown); };
    v.requestVideoFrameCallback(shown);
    document.body.append(v);
  }
})();
