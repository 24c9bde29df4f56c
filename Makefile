# interview-recorder — the two commands: `make demo` and `make test`.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap demo test lint bench up clean

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

bench: bootstrap
	$(PY) -m bench.ingest --quick

clean:
	rm -rf var .pytest_cache
