# Everything a developer or CI needs, installed by the project itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install system-packages tools fmt lint typecheck test test-crash bench schemas demo clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv with the pinned dependencies

# The AsyncAPI CLI that validates schemas/asyncapi.yaml, at the versions tools/asyncapi/ pins,
# installed into .tools/ (git-ignored), never globally. --ignore-scripts: the CLI's postinstall
# appends shell completion to ~/.bashrc, and a dependency's reports the install to a tracker;
# validating needs neither.
ASYNCAPI_DIR := .tools/asyncapi
ASYNCAPI_STAMP := $(ASYNCAPI_DIR)/.installed

$(ASYNCAPI_STAMP): tools/asyncapi/package.json tools/asyncapi/package-lock.json
	@command -v npm >/dev/null || { echo "make tools needs npm (make system-packages installs it): the AsyncAPI CLI checks schemas/asyncapi.yaml" >&2; exit 1; }
	rm -rf $(ASYNCAPI_DIR)
	mkdir -p $(ASYNCAPI_DIR)
	cp tools/asyncapi/package.json tools/asyncapi/package-lock.json $(ASYNCAPI_DIR)/
	cd $(ASYNCAPI_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

tools: $(ASYNCAPI_STAMP) ## the AsyncAPI CLI (npm, into .tools/) that validates schemas/asyncapi.yaml

fmt: $(STAMP) ## format and fix imports
	$(VENV)/bin/ruff format service tests bench
	$(VENV)/bin/ruff check --fix service tests bench

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check service tests bench
	$(VENV)/bin/ruff format --check service tests bench

typecheck: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

system-packages: ## Debian packages the end-to-end tests use (kcat, prometheus, java, maven, nodejs, npm)
	scripts/install-system-packages

test: $(STAMP) system-packages $(ASYNCAPI_STAMP) ## the whole test suite (what CI runs); starts its own Kafka
	$(PY) -m pytest

test-crash: $(STAMP) system-packages ## only the crash-recovery tests: SIGKILL, refused sends, the short fault campaign (also part of make test)
	$(PY) -m pytest -m crash

schemas: $(STAMP) ## regenerate schemas/ from the models
	$(VENV)/bin/reciprocity schemas --out schemas

bench: $(STAMP) ## benchmarks (not part of the tests): replay speed, worker vs Faust baselines on Kafka, scrapers, detection quality (the fault campaign is python -m bench.chaos)
	$(PY) -m bench
	$(PY) -m bench.speed
	$(PY) -m bench.scrape
	$(PY) -m bench.quality

demo: $(STAMP) system-packages ## local Kafka + worker + generated traffic, alerts as they happen
	$(VENV)/bin/reciprocity demo $(DEMO_ARGS)

clean: ## remove the venv, the installed tools and caches
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
