# The two commands a fresh clone needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test bench lint install clean java

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,spark]'
	touch $(STAMP)

# The bench extra (LiteLLM, a rating baseline) on top of the dev install, for `make bench` only.
$(BENCH_STAMP): $(STAMP) bench/constraints.txt
	$(BIN)/pip install -q -e '.[dev,spark,bench]' -c bench/constraints.txt
	touch $(BENCH_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/agenttally serve

# Spark (the scale-out tests) runs on Java 17; say how to get it rather than fail deep inside.
java:
	@java -version 2>&1 | grep -Eq 'version "(17|21)' || { echo "Java 17 is needed \
	for the Spark tests; install it with: sudo apt-get install -y openjdk-17-jre-headless"; \
	exit 1; }

test: $(STAMP) java
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check agenttally meter pricing reports tests bench app.py pages
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache
