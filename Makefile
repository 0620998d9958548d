# The project's vocabulary. Every target sets up what it needs (venv, packages, Kafka jars).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA_STATE := .cache/kafka-state.json
BROKERS ?= 1

.DEFAULT_GOAL := help
NATIVE := router/native-manifest.json
# the modules router/native.py compiles (its MODULES entries)
NATIVE_SOURCES := $(shell sed -n 's/^    "\(.*\.py\)",$$/\1/p' router/native.py)

.PHONY: help install native dist image demo test test-unit test-integration test-chaos bench lint typecheck kafka kafka-stop kafka-status schemas clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 required (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,fast,native]'
	touch $(STAMP)

install: $(STAMP) ## create the venv and install the project with dev tools

$(NATIVE): $(STAMP) router/native.py router/native_build.py $(NATIVE_SOURCES)
	@$(PY) -m router.native_build build

native: $(NATIVE) ## compile the SLA, rule and stage hot paths with mypyc (every target below does it; ~1.5 min)

dist: $(STAMP) $(NATIVE) ## dist/: a wheel with this platform's compiled modules, and the sdist (sources only)
	rm -rf dist build/lib build/bdist.* *.egg-info  # nothing from an earlier build leaks in
	$(PY) -m build --no-isolation --sdist --outdir dist . >/dev/null
	$(PY) -m build --no-isolation --wheel --outdir dist . >/dev/null
	@ls -1 dist

image: dist ## the container image from the wheel (podman, deploy/Containerfile); prints its tag
	@deploy/container/build-image

demo: $(STAMP) $(NATIVE) ## throwaway Kafka + engine + 30 s of marketplace traffic, verified summary
	$(PY) -m router demo

test: $(STAMP) $(NATIVE) ## every test: unit, integration and chaos (starts the Kafka it needs)
	ROUTER_REQUIRE_NATIVE=1 $(PY) -m pytest

test-unit: $(STAMP) $(NATIVE) ## only the tests that need no broker
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) $(NATIVE) ## tests on a real broker
	$(PY) -m pytest -m "integration and not chaos"

test-chaos: $(STAMP) $(NATIVE) ## crash and fault scenarios (SIGKILL, restart)
	$(PY) -m pytest -m chaos

bench: $(STAMP) $(NATIVE) ## benchmarks: figures and ratios against in-run baselines (not tests)
	$(PY) tests/bench/bench_core.py
	$(PY) tests/bench/bench_pipeline.py --compare split-faust
	@if [ -f tests/bench/bench_rules.py ]; then $(PY) tests/bench/bench_rules.py; fi
	@if [ -f tests/bench/bench_sla.py ]; then $(PY) tests/bench/bench_sla.py; fi
	$(PY) tests/bench/bench_scores.py
	$(PY) tests/bench/bench_gateway.py
	$(PY) tests/bench/bench_email.py

lint: $(STAMP) ## ruff on everything, mypy (strict) on schemas, rules, router and streams
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

typecheck: lint ## alias of lint

kafka: $(STAMP) ## start a background Kafka (BROKERS=3: a cluster); prints KAFKA_BOOTSTRAP_SERVERS=...
	@$(PY) -m streams.local.broker start --state-file $(KAFKA_STATE) --brokers $(BROKERS)

kafka-stop: $(STAMP) ## stop the background Kafka started by `make kafka`
	@$(PY) -m streams.local.broker stop --state-file $(KAFKA_STATE)

kafka-status: $(STAMP) ## is the background Kafka up?
	@$(PY) -m streams.local.broker status --state-file $(KAFKA_STATE)

schemas: $(STAMP) ## export JSON Schema files to schemas/json/
	$(PY) -m router schemas export schemas/json

clean: ## remove caches and the venv (keeps the Maven jar cache in ~/.m2)
	-$(PY) -m streams.local.broker stop --state-file $(KAFKA_STATE) 2>/dev/null
	-$(PY) -m router.native_build clean 2>/dev/null
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
