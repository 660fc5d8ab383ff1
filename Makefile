# The two commands a fresh clone needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
BASE_VENV := .venv-baselines
BASE_STAMP := $(BASE_VENV)/.installed

.PHONY: run test bench lint install clean java baselines

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	@echo "Installing AgentTally and its dependencies into $(VENV) (once; about a minute)..."
	$(BIN)/pip install -q -e '.[dev,spark]'
	touch $(STAMP)

# The bench extra (LiteLLM, a rating baseline) on top of the dev install, for `make bench` only.
$(BENCH_STAMP): $(STAMP) bench/constraints.txt
	$(BIN)/pip install -q -e '.[dev,spark,bench]' -c bench/constraints.txt
	touch $(BENCH_STAMP)

# statsforecast (the forecast bench's baselines) needs pandas<3, the project pins pandas 3: it
# gets its own environment, built from scratch whenever its pins change, and runs beside .venv
# (bench/statsforecast_baselines.py). `make test` builds it too: its test runs the real models.
$(BASE_STAMP): bench/baselines/pyproject.toml
	rm -rf $(BASE_VENV)
	$(PY) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/pip install -q ./bench/baselines
	rm -rf bench/baselines/build bench/baselines/*.egg-info
	touch $(BASE_STAMP)

baselines: $(BASE_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/agenttally serve

# Spark (the scale-out tests) runs on Java 17; say how to get it rather than fail deep inside.
java:
	@java -version 2>&1 | grep -Eq 'version "(17|21)' || { echo "Java 17 is needed \
	for the Spark tests; install it with: sudo apt-get install -y openjdk-17-jre-headless"; \
	exit 1; }

test: $(STAMP) $(BASE_STAMP) java
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(BENCH_STAMP) $(BASE_STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check agenttally meter pricing reports tests bench app.py pages
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(BASE_VENV) .pytest_cache
