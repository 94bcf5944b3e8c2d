# The README's two commands are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-smoke system-deps mutation clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,prometheus,services,bench]'
	touch $(STAMP)

# The Prometheus server the end-to-end tests start on loopback (Debian's package).
system-deps:
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus package for the end-to-end tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q prometheus; }

demo: $(STAMP)
	$(PY) -m services.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check otel_aspects services tests benchmarks conftest.py
	$(VENV)/bin/ruff format --check otel_aspects services tests benchmarks conftest.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy services

unit: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck bench-smoke unit

bench: $(STAMP)
	$(PY) -m benchmarks.run

bench-smoke: $(STAMP)
	$(PY) -m benchmarks.run --smoke

# Mutation testing (cosmic-ray, installed here only: not in the test extras CI uses, not in
# `make test`). Tens of minutes; results in build/mutation/<module>/survivors.txt, the
# verdicts in docs/MUTATION.md. MUTATION_ARGS e.g. --modules config,_warn --cap-minutes 20
mutation: $(STAMP)
	$(PY) -m pip install -q 'cosmic-ray>=8.3,<9'
	$(PY) tests/mutation/run.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .hypothesis .mypy_cache .ruff_cache
