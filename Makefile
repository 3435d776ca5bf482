# Every target builds/uses the local virtualenv, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench bench-compare bench-quick bench-setup package-edge clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/interlock up

lint: $(STAMP)
	$(VENV)/bin/ruff check edge core shared tests infra
	$(VENV)/bin/ruff format --check edge core shared tests infra
	$(VENV)/bin/mypy

# pytest exit 5 means "no tests collected": with a test suite in the tree that is a breakage, not a pass.
unit: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; fi; exit $$rc

test: lint unit

bench: $(STAMP)
	$(PY) -m tests.bench.run

# Issue 17: + one- and two-hop floors, interlock with every feature on, Portkey (needs node + npm), LiteLLM,
# the feature ladder and the edge's cold start; ratio targets PASS/FAIL (~21 min on a quiet
# 2-vCPU box, ~13 min more per re-run when the noise check fails).
bench-compare: $(STAMP)
	$(PY) -m tests.bench.run --compare

bench-quick: $(STAMP)
	$(PY) -m tests.bench.run --quick

bench-setup: $(STAMP)
	$(PY) -m tests.bench.run --setup --compare

# The edge's Lambda zip (dist/interlock-edge-lambda.zip); e.g. PACKAGE_ARGS='--arch x86_64'.
# Defaults match infra/lambda/template.yaml (arm64, Python 3.12).
package-edge: $(STAMP)
	$(PY) infra/lambda/package.py --arch arm64 --python 3.12 $(PACKAGE_ARGS)

clean:
	rm -rf dist $(VENV) .mypy_cache .ruff_cache tests/bench/.litellm-venv tests/bench/.portkey
	rm -f tests/bench/results/bench-* tests/bench/results/latest.*
