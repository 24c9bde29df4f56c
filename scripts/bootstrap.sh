#!/usr/bin/env bash
# Idempotent machine + venv setup for interview-recorder (Debian, Python 3.11, root).
# Fast when already done: apt runs only if a tool is missing, pip only if requirements.lock or
# pyproject.toml changed. Python packages come from requirements.lock only (pinned, hashed;
# `make lock` re-solves it).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="ffmpeg redis-server espeak-ng postgresql chromium chromium-driver sox festival festvox-us-slt-hts"
need_apt=0
for bin in ffmpeg redis-server espeak-ng chromium sox text2wave; do
  command -v "$bin" >/dev/null 2>&1 || need_apt=1
done
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt=1
if [ "$need_apt" = 1 ]; then
  echo "bootstrap: installing Debian packages: $APT_PKGS"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $APT_PKGS >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv from requirements.lock"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q --require-hashes -r requirements.lock
  .venv/bin/pip install -q --no-deps -e .
  # a dependency added to pyproject.toml but not to the lock would only show up as an ImportError
  missing="$(.venv/bin/pip check 2>&1 | grep -i '^interview-recorder ' || true)"
  if [ -n "$missing" ]; then
    echo "$missing" >&2
    echo "bootstrap: requirements.lock does not cover pyproject.toml: run 'make lock'" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "bootstrap: ok"
