# Two commands: `make label` (set up + run the main job on the shipped defaults) and
# `make test` (set up + run the whole test suite). Both create .venv/ when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lacy-installed
OUT ?= out/wiki
LIMIT ?= 300
LABEL_ARGS ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup system-deps label test test-fast lint docs flink-install flink-up flink-down

$(STAMP): requirements.txt requirements-assets.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-assets.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium renders report.html in the report test (root installs it; others skip it).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install Debian's chromium to run the report rendering test"; fi; }

label: setup
	$(BIN)/python -m pipelines.label --output $(OUT) --limit $(LIMIT) --overwrite $(LABEL_ARGS)

test: setup system-deps
	$(BIN)/python -m pytest -q

# The unit tier (tests/unit): minutes, no Java, no Chromium, no pipeline runs. tests/conftest.py
# fails a unit test that runs a pipeline, trains or loads the real reference model.
test-fast: setup
	$(BIN)/python -m pytest -q tests/unit

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Regenerate the reference tables in README.md and docs/*.md from the code.
docs: setup
	$(BIN)/python docs/generate.py

# A standalone Flink 1.19 cluster on loopback for `lacy-label --runner=FlinkRunner` (needs java and
# mvn). flink-install fetches Flink and builds Beam's job server once into ~/.cache/lacy/flink
# (flink-up does too); lacy-label only looks the jar up there. See docs/runners.md.
flink-install:
	deploy/flink/flink.sh install

flink-up:
	deploy/flink/flink.sh up

flink-down:
	deploy/flink/flink.sh down
