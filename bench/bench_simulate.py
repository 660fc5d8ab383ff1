"""Simulator benchmark (issue 4): generate N events of a profile, then write them to a store.

Timed separately, in one process:
1. generation: `Simulation.batches()` into memory (vectorised numpy, no writing);
2. direct store writes: `write_store` of those batches into a fresh store file, including
   the final CHECKPOINT (where DuckDB compresses what the inserts left in memory);
3. for comparison, on a sample of the same run: writing it as JSONL and ingesting that file
   with `meter.ingest.ingest_path`, the way any other source reaches the store.

Process CPU seconds (all threads) are printed beside wall time: on a shared machine the wall
clock depends on the neighbours, CPU time much less. Target: >= 1M events/s written.

    python -m bench.bench_simulate [--events 10000000] [--profile large] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import date
from pathlib import Path

from agenttally._simulation import build_simulation
from bench.common import fmt_rate, load_line, machine_line, out_dir, peak_rss_gib, table
from meter.ingest import ingest_path
from meter.simulator import write_jsonl, write_store
from meter.store import connect

PROFILES = Path(__file__).resolve().parent.parent / "data" / "profiles"
TARGET_WRITTEN_PER_S = 1_000_000
FUTURE_OK = 10**13


def _fresh(path: Path) -> Path:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    return path


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_simulate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=10_000_000,
                        help="events to generate and write (10M)")
    parser.add_argument("--sample", type=float, default=1_000_000,
                        help="events of the JSONL + ingest comparison (1M)")
    parser.add_argument("--profile", default="large", help="profile name or TOML path (large)")
    parser.add_argument("--start", default="2026-10-01", help="first simulated day")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="500k events, 200k sample")
    args = parser.parse_args(argv)
    target = 500_000 if args.quick else int(args.events)
    sample_target = 200_000 if args.quick else int(args.sample)
    profile = Path(args.profile)
    if not profile.suffix:
        profile = PROFILES / f"{args.profile}.toml"
    print(machine_line())
    print(load_line())

    sim = build_simulation(profile, start=date.fromisoformat(args.start), days=366,
                           seed=args.seed)
    wall, cpu = _clock()
    batches, events = [], 0
    for batch in sim.batches():
        batches.append(batch)
        events += batch.n_events
        if events >= target:
            break
    gen_s, gen_cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.collect()

    store = _fresh(out_dir() / "simulate.duckdb")
    con = connect(store)
    wall, cpu = _clock()
    written = write_store(con, sim, batches=batches)
    con.execute("CHECKPOINT")
    write_s, write_cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    con.close()
    size_mb = store.stat().st_size / 1e6

    # The other way in, on a sample: the same run's first days as JSONL, then ingested.
    days, n = 0, 0
    for batch in batches:
        days, n = days + 1, n + batch.n_events
        if n >= sample_target:
            break
    sample = build_simulation(profile, start=date.fromisoformat(args.start), days=days,
                              seed=args.seed)
    jsonl = _fresh(out_dir() / "simulate.jsonl")
    wall, cpu = _clock()
    as_file = write_jsonl(jsonl, sample)
    json_s, json_cpu = time.perf_counter() - wall, time.process_time() - cpu
    con = connect(_fresh(out_dir() / "simulate_ingest.duckdb"))
    wall, cpu = _clock()
    ingested = ingest_path(con, jsonl, max_future_ms=FUTURE_OK)
    con.execute("CHECKPOINT")
    ingest_s, ingest_cpu = time.perf_counter() - wall, time.process_time() - cpu
    con.close()

    print(f"profile {sim.profile.name}: {len(batches)} days, {written.sessions:,} sessions, "
          f"{events:,} events; store {size_mb:,.0f} MB; peak RSS {peak_rss_gib():.1f} GiB")
    rows = [
        ("generate (in memory)", events, gen_s, gen_cpu),
        ("write_store (direct, typed rows)", written.events, write_s, write_cpu),
        ("write_jsonl (sample)", as_file.events, json_s, json_cpu),
        ("ingest_path of that JSONL (sample)", ingested.new_events, ingest_s, ingest_cpu),
    ]
    print(table(["step", "events", "wall s", "events/s", "CPU s", "CPU us/event"],
                [(name, f"{n:,}", f"{s:.2f}", fmt_rate(n / s), f"{c:.2f}", f"{c / n * 1e6:.2f}")
                 for name, n, s, c in rows]))
    rate = written.events / write_s
    verdict = "met" if rate >= TARGET_WRITTEN_PER_S else "missed"
    print(f"written: {fmt_rate(rate)} events/s (target {fmt_rate(TARGET_WRITTEN_PER_S)}: "
          f"{verdict}); end to end {fmt_rate(events / (gen_s + write_s))} events/s")

    for scratch in ("simulate.duckdb", "simulate.jsonl", "simulate_ingest.duckdb"):
        _fresh(out_dir() / scratch)  # nothing here is worth keeping: runs regenerate it

    ok = stored == written.events == events and ingested.quarantined == 0 \
        and ingested.new_events == as_file.events
    if not ok:
        print(f"WRONG RESULTS: stored {stored:,} of {events:,} events; sample quarantined "
              f"{ingested.quarantined:,}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
