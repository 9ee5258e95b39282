# Every target that runs code first makes sure the virtualenv matches pyproject.toml,
# so `make demo` and `make test` each work as one command on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test test-fast bench check lint typecheck clean samples

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Ingest the bundled sample documents into ./var, list them and answer two questions
# (extractive mode until a model is built with `docqa model build`).
demo: venv
	$(BIN)/docqa ingest samples/docs --collection handbook
	$(BIN)/docqa collections
	$(BIN)/docqa docs --collection handbook
	$(BIN)/docqa ask "What is the hotel limit in London?"
	$(BIN)/docqa ask "带薪年假有几天？"

# The whole suite, including the slow tests (every file of the shared corpus, retrieval
# quality). This is what CI runs.
test: venv
	$(BIN)/pytest -q

# The quick loop while developing: everything but the tests marked slow.
test-fast: venv
	$(BIN)/pytest -m "not slow" -q

bench: venv
	$(BIN)/python -m tests.bench.run

check: lint typecheck

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

samples: venv
	$(BIN)/python samples/build_samples.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
