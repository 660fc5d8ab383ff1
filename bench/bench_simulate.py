"""Benchmark: generate N events of a profile, then write them into a fresh store.

    python -m bench.bench_simulate                 # 10M events of the large profile
    python -m bench.bench_simulate --events 1e6    # a quick run

Prints events/s generated and events/s written to the store (the target is >= 1M events/s
written), timed separately: generation into memory first, then the store writes alone.
Process CPU seconds (all threads) are printed beside wall time: on a shared machine the
wall clock depends on the neighbours, CPU time much less.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from datetime import date
from pathlib import Path

from meter.simulator.writers import write_store
from meter.store import connect
from reports.cli_simulate import build_simulation

PROFILES = Path(__file__).resolve().parent.parent / "data" / "profiles"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_simulate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=10_000_000,
                        help="events to generate (10M)")
    parser.add_argument("--profile", default="large", help="profile name or TOML path (large)")
    parser.add_argument("--start", default="2026-10-01", help="first simulated day")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", help="store file (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    target = int(args.events)
    profile = Path(args.profile)
    if not profile.suffix:
        profile = PROFILES / f"{args.profile}.toml"

    sim = build_simulation(profile, start=date.fromisoformat(args.start), days=366,
                           seed=args.seed)
    began, cpu = time.perf_counter(), time.process_time()
    batches, events = [], 0
    for batch in sim.batches():
        batches.append(batch)
        events += batch.n_events
        if events >= target:
            break
    generated_s, generated_cpu = time.perf_counter() - began, time.process_time() - cpu
    gc.collect()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.duckdb"
        con = connect(path)
        began, cpu = time.perf_counter(), time.process_time()
        result = write_store(con, sim, batches=batches)
        con.execute("CHECKPOINT")  # count the compression a later checkpoint would do
        written_s, written_cpu = time.perf_counter() - began, time.process_time() - cpu
        con.close()
        size_mb = path.stat().st_size / 1e6

    days = len(batches)
    print(f"profile {sim.profile.name}: {days} days, {result.sessions:,} sessions, "
          f"{events:,} events")
    print(f"generate: {generated_s:6.2f} s  {events / generated_s:>12,.0f} events/s"
          f"   (CPU {generated_cpu:.2f} s)")
    print(f"write:    {written_s:6.2f} s  {result.events / written_s:>12,.0f} events/s"
          f"   (CPU {written_cpu:.2f} s; store {size_mb:,.0f} MB; target >= 1,000,000/s)")
    total = generated_s + written_s
    print(f"total:    {total:6.2f} s  {events / total:>12,.0f} events/s end to end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
