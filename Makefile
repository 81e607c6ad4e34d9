# Two commands do all set-up on a fresh machine:
#   make demo   the embedded default: dev server + worker + SMTP sink + sample portfolio
#   make test   the test suite (what .ci/run runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo demo-keep test test-fast record-histories worker portal clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,demo]"
	@touch $@

demo: install
	$(BIN)/collections demo $(DEMO_ARGS)

demo-keep: install
	$(BIN)/collections demo --keep-running $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Record the current code's histories into tests/histories/<newest feature>/, beside every older
# folder: histories are never deleted, they protect loans in flight (docs/versioning.md).
GENERATION = $(shell $(BIN)/python -c "from domain.book import FEATURES; print(FEATURES[-1])")
record-histories: install
	COLLECTIONS_RECORD_HISTORIES=tests/histories/$(GENERATION) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_workflow_*.py

worker: install
	$(BIN)/python -m worker

portal: install
	$(BIN)/python -m portal

clean:
	rm -rf var .pytest_cache .hypothesis
