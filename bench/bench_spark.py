"""DuckDB and Spark side by side: the same rating (pricing.rating's SQL; on Spark through
pricing.dialect) over the same events, at growing sizes; and proof they agree.

For each size the large profile is scaled (bench_ledger's store builder) and exported to a
lake; the DuckDB engine rates the store, Spark (local mode, 1 and 2 cores) rates the lake.
Each engine runs in a process of its own, so its peak memory is its own (the largest process:
for Spark, the JVM). Charges must be equal per session x day x SKU to the atto-dollar; any
difference fails the benchmark. The demo and midsize profiles are checked for equality too.

    python -m bench.bench_spark [--sizes 1,10] [--cores 1,2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from bench.common import machine_line, out_dir

AS_OF = "2026-11-09T00:00:00Z"  # the ledger bench's window: 10 Sep + 60 days
# size label -> (profile, scale, days); ~events as the simulator counts them (all types)
SIZES = {
    "0.2": ("large", 0.004, 60), "1": ("large", 0.02, 60), "10": ("large", 0.2, 60),
    "50": ("large", 1.0, 60), "demo": ("demo", 1.0, 60), "midsize": ("midsize", 1.0, 60),
}
SPARK_CONF = {"spark.driver.memory": "14g"}
COLUMNS = ("period, day, session_id, agent_id, environment_id, meter, model, token_class, "
           "tier, quantity, unit, unit_price, price_unit, amount_exact, "
           "CAST(amount_units AS HUGEINT) AS amount_units, book, book_version, provisional")


def build(label: str) -> tuple[Path, Path, int]:
    """(store, lake, events) for a size, built once and kept in bench/out."""
    from bench.bench_ledger import build_store_of
    profile, scale, days = SIZES[label]
    store = build_store_of(profile, scale, days)
    lake = out_dir() / f"lake-{store.stem}"
    con = duckdb.connect(str(store), read_only=True)
    events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    if not (lake / "_lake.json").exists():
        from meter.lake import export_lake
        from pricing.pricebook import default_pricebook_dir
        began = time.perf_counter()
        export_lake(con, lake, sorted(default_pricebook_dir().glob("*.toml")))
        print(f"exported {lake.name} in {time.perf_counter() - began:.1f} s", flush=True)
    con.close()
    return store, lake, events


def run_one(engine: str, source: str, master: str, out: str) -> None:
    """In a child process: rate with one engine and write its charges to `out` (Parquet)."""
    from meter.vocabulary import parse_instant
    from pricing.pricebook import load_pricebooks
    from pricing.rating import RatingOptions
    options = RatingOptions(as_of_ms=parse_instant(AS_OF))
    books = load_pricebooks()
    began = time.perf_counter()
    peak_kb = 0
    if engine == "duckdb":
        from meter.store import connect
        from pricing.rating import rate
        con = connect(source, read_only=True)
        rate(con, books, options)
        con.execute("SELECT count(*) FROM charges").fetchall()  # (the view is read once)
        seconds = time.perf_counter() - began
        con.execute(f"COPY (SELECT {COLUMNS} FROM charges) TO '{out}' (FORMAT parquet)")
    else:
        from meter.lake import open_lake
        from pricing.spark import rate_lake, spark_session
        rate_lake(open_lake(source), books, options, master=master, conf=SPARK_CONF)
        seconds = time.perf_counter() - began
        peak_kb = _tree_peak_kb(spark_session(master).sparkContext._gateway.proc.pid)
        con = duckdb.connect()
        con.execute(f"COPY (SELECT {COLUMNS} FROM read_parquet('{source}/charges/*/*.parquet', "
                    f"hive_partitioning = true, hive_types = {{'period': VARCHAR}})) "
                    f"TO '{out}' (FORMAT parquet)")
    # (VmHWM, not getrusage: ru_maxrss survives fork and exec, so a child would report the
    # peak of the parent that built the store)
    peak_kb = max(peak_kb, _tree_peak_kb(os.getpid()))
    print(json.dumps({"seconds": seconds, "peak_kb": peak_kb}))


def _tree_peak_kb(pid: int) -> int:
    """The largest peak RSS (VmHWM) among process `pid` and its descendants (Spark's JVM)."""
    peak, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            peak = max(peak, next(int(line.split()[1]) for line in status.splitlines()
                                  if line.startswith("VmHWM")))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return peak


def measured(engine: str, source: Path, master: str, out: Path) -> dict[str, float]:
    """Run one engine in a child process: its seconds and the peak RSS of its largest
    process (Python, or Spark's JVM)."""
    done = subprocess.run([sys.executable, "-m", "bench.bench_spark", "--one", engine,
                           str(source), master, str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{engine} {master} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_mb"] = result.pop("peak_kb") / 1024  # the child's own, or its JVM's
    return result


def differences(left: Path, right: Path) -> tuple[int, int, str, str]:
    """(lines, lines differing, total left, total right) of two charges files."""
    con = duckdb.connect()
    lines = con.execute(f"SELECT count(*) FROM '{left}'").fetchall()[0][0]
    differ = con.execute(f"SELECT count(*) FROM ((SELECT * FROM '{left}' EXCEPT ALL SELECT * "
                         f"FROM '{right}') UNION ALL (SELECT * FROM '{right}' EXCEPT ALL "
                         f"SELECT * FROM '{left}'))").fetchall()[0][0]
    totals = [str(con.execute(f"SELECT sum(amount_exact) FROM '{f}'").fetchall()[0][0])
              for f in (left, right)]
    return lines, differ, totals[0], totals[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_spark", description=__doc__)
    parser.add_argument("--sizes", default="demo,midsize,1,10",
                        help="comma list of: " + ", ".join(SIZES))
    parser.add_argument("--cores", default="1,2", help="Spark local cores to try (1,2)")
    parser.add_argument("--quick", action="store_true", help="one small size, 2 cores")
    parser.add_argument("--one", nargs=4, metavar=("ENGINE", "SOURCE", "MASTER", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        run_one(*args.one)
        return 0
    sizes = ["0.2"] if args.quick else args.sizes.split(",")
    cores = ["2"] if args.quick else args.cores.split(",")
    print(machine_line(), flush=True)
    rows, failed = [], False
    for label in sizes:
        store, lake, events = build(label)
        duck_out = out_dir() / f"charges-duckdb-{label}.parquet"
        duck = measured("duckdb", store, "", duck_out)
        rows.append((label, events, "duckdb", "2 threads", duck["seconds"], duck["peak_mb"],
                     "reference"))
        print(rows[-1], flush=True)
        for n in cores:
            spark_out = out_dir() / f"charges-spark{n}-{label}.parquet"
            spark = measured("spark", lake, f"local[{n}]", spark_out)
            lines, differ, left, right = differences(duck_out, spark_out)
            equal = differ == 0 and left == right
            failed |= not equal
            rows.append((label, events, "spark", f"local[{n}]", spark["seconds"],
                         spark["peak_mb"], f"{lines:,} lines, {differ} differ, "
                         f"total {right} {'==' if left == right else '!='} {left}"))
            print(rows[-1], flush=True)
    print("\nsize | events | engine | cores | seconds | peak MB | equal to DuckDB")
    for label, events, engine, where, seconds, peak, equal in rows:
        print(f"{label} | {events:,} | {engine} | {where} | {seconds:.1f} | {peak:,.0f} | "
              f"{equal}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
