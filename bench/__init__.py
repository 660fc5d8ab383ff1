"""Benchmarks, run by `make bench` (`python -m bench`), never by `make test`.

Each module `bench/bench_<name>.py` is runnable on its own (`python -m bench.bench_ingest`),
prints its own report, accepts `--quick` for small sizes, and exits non-zero when its results
are wrong (not when a speed target is missed: a missed target is reported, never hidden).
Generated inputs and stores go to `bench/out/`, which git ignores.
"""
