# The two commands a fresh clone needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test bench lint install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The bench extra (LiteLLM, a rating baseline) on top of the dev install, for `make bench` only.
$(BENCH_STAMP): $(STAMP) bench/constraints.txt
	$(BIN)/pip install -q -e '.[dev,bench]' -c bench/constraints.txt
	touch $(BENCH_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/agenttally serve

test: $(STAMP)
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check agenttally meter pricing reports tests bench app.py pages
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache
