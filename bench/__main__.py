"""`python -m bench [--quick] [NAME ...]`: run every benchmark present, one after another.

Each runs in its own process, so that one's memory (tens of millions of rows) is given back
before the next starts and a failure in one does not stop the others. The exit status is
non-zero if any benchmark failed (wrong results), not when a speed target was missed.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time

# The order in which they run; a module that does not exist (yet) is skipped.
BENCHMARKS = ("ingest", "rate", "simulate", "collect", "dashboard", "forecast",
              "forecast_speed", "forecast_eval", "spark")


def _present(name: str) -> bool:
    return importlib.util.find_spec(f"bench.bench_{name}") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"run only these (of: {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run in well under a minute each")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}")
    chosen = [n for n in (args.names or BENCHMARKS) if _present(n)]
    skipped = [n for n in (args.names or BENCHMARKS) if not _present(n)]

    results: list[tuple[str, int, float]] = []
    for name in chosen:
        command = [sys.executable, "-m", f"bench.bench_{name}"] + (["--quick"] if args.quick
                                                                   else [])
        start = time.perf_counter()
        code = subprocess.call(command)
        results.append((name, code, time.perf_counter() - start))
        print(flush=True)

    print("== bench summary ==")
    for name, code, seconds in results:
        print(f"  {name:<10} {'ok' if code == 0 else f'FAILED (exit {code})':<16} "
              f"{seconds:6.0f} s")
    if skipped:
        print(f"  not present: {', '.join(skipped)}")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
