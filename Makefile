# interview-recorder — the two commands: `make demo` and `make test`.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap demo test lint bench up clean lock model-base

bootstrap:  ## apt packages + .venv with the project (idempotent, fast when done)
	@bash scripts/bootstrap.sh

demo: bootstrap  ## start the local stack and play a two-person interview through it
	$(PY) -m recorder demo $(DEMO_ARGS)

test: bootstrap  ## run the whole test suite against real services
	$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	.venv/bin/lint-imports

up: bootstrap
	$(PY) -m recorder up

model-base: bootstrap  ## optional larger whisper model (Whisper base, CT2) → var/models/whisper-base-ct2
	@bash scripts/fetch_whisper_base.sh

bench: bootstrap model-base  ## every bench/ suite → bench/results/latest.{json,md} + README table (BENCH_QUICK=1: minutes)
	BENCH_QUICK=$(BENCH_QUICK) $(PY) -m bench

# requirements.lock pins every package (with the dev extra) by version and sha256 for Linux
# x86_64 / Python 3.11; bootstrap and the Dockerfile install only from it. `make lock` re-solves
# it from pyproject.toml on purpose: pins already in the lock are kept, packages added or
# dropped in pyproject are resolved; LOCK_ARGS=--upgrade moves everything to the newest
# allowed, LOCK_ARGS="--upgrade-package av" one package. Commit the lock when `make test` passes.
LOCK_ARGS ?=
lock:  ## re-solve requirements.lock from pyproject.toml (uv pip compile --generate-hashes)
	@test -x .venv/bin/uv || { test -x $(PY) || python3 -m venv .venv; .venv/bin/pip install -q uv; }
	.venv/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" \
	  --quiet -o requirements.lock $(LOCK_ARGS)

clean:
	rm -rf var .pytest_cache
