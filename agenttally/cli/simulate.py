"""`agenttally simulate`: a workload profile in, Managed Agents events out (file, store or
lake). The building blocks (the simulation priced from the books, the writing of its events,
late arrivals included, the demo store) live in `agenttally._simulation`; this verb parses its
flags, calls them and reports."""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import agenttally
from agenttally._simulation import DEFAULT_BOOK, profile_path
from meter.errors import UsageError
from meter.vocabulary import iso_ms

if TYPE_CHECKING:
    from agenttally._simulation import SimulationRun

EXAMPLES = """\
examples:
  agenttally simulate --profile data/profiles/demo.toml --start 2026-10-01 --days 60 \\
      --seed 7 --out demo.jsonl
  agenttally simulate --profile data/profiles/large.toml --start 2026-10-01 --days 30 \\
      --into data/large.duckdb
  agenttally simulate --profile data/profiles/demo.toml --days 60 --until-now
  agenttally simulate --profile large --start 2026-08-10 --days 150 --scale 0.05 \\
      --into /tmp/large-small.duckdb   # a twentieth of the fleet: seconds, not minutes
"""


def cmd_simulate(args: argparse.Namespace) -> int:
    from meter.simulator.late import LateArrivalsError

    if args.days < 1:
        raise UsageError(f"--days must be at least 1, got {args.days}")
    if not (args.scale > 0 and math.isfinite(args.scale)):
        raise UsageError(f"--scale must be a number > 0 (0.05 = a twentieth of the "
                         f"profile's sessions), got {args.scale}")
    start = date.fromisoformat(args.start) if args.start else \
        datetime.now(UTC).date() - timedelta(days=args.days - 1)
    # Without --start the window ends today: stop at the present, as a live store would.
    as_of = int(time.time() * 1000) if args.until_now or not args.start else None
    progress = _Progress(args.days)
    try:
        run = agenttally.simulate(
            args.profile, start=start, days=args.days, seed=args.seed, as_of_ms=as_of,
            book=args.book, scale=args.scale, out=args.out, into=args.into, db=args.db,
            late_share=args.late_share, late_delay_hours=args.late_delay_hours,
            late_out=args.late_out, progress=progress)
    except LateArrivalsError as exc:  # the library names no flag: say which one
        if exc.field == "late_out":
            raise UsageError("--late-share needs --late-out FILE: where the late events "
                             "go") from exc
        flag = {"share": "--late-share"}.get(exc.field, "--late-delay-hours")
        raise UsageError(f"{flag}: {exc.detail}") from exc
    finally:
        progress.close()
    if run.late is not None:
        return _print_late(args, run, start)
    if run.lake_skipped:
        print(f"  lake: {run.lake_skipped:,} events were already in {run.target} and were "
              "skipped")
    if run.overlap is not None:
        _warn_overlap(run)
    rate = run.events / run.seconds if run.seconds > 0 else 0.0
    scaled = f", scale {args.scale:g}" if args.scale != 1 else ""
    print(f"{run.profile}: {run.sessions:,} sessions, {run.events:,} events "
          f"({start} + {args.days} days, seed {args.seed}{scaled}) -> {run.target} "
          f"in {run.seconds:.1f} s ({rate:,.0f} events/s)")
    if run.kind != "file":
        print(f"  {run.events:,} new, {run.duplicates:,} already stored (skipped)")
    return 0


def _warn_overlap(run: SimulationRun) -> None:
    """A simulated window overlapping usage the store already held: unless it is the same
    fleet again (then every event is a duplicate), its usage adds to what is there."""
    assert run.overlap is not None
    first, last = run.overlap
    print(f"warning: {run.target} already held events from {iso_ms(first)} to "
          f"{iso_ms(last)}; this simulated window ({iso_ms(run.start_ms)} .. "
          f"{iso_ms(run.end_ms)}) overlaps it, so its usage adds to theirs (simulate into a "
          "scratch store to compare instead: --into /tmp/scratch.duckdb)", file=sys.stderr)


def _print_late(args: argparse.Namespace, run: SimulationRun, start: date) -> int:
    """The run with late arrivals: the on-time part and where the late events went."""
    split = run.late
    assert split is not None
    if run.duplicates:
        print(f"  {run.duplicates:,} events were already in the store and were skipped")
    print(f"{run.profile}: {run.sessions:,} sessions, {run.on_time_events:,} events on "
          f"time ({start} + {args.days} days, seed {args.seed}) -> {run.target} "
          f"in {run.seconds:.1f} s")
    window = ("" if split.first_arrival_ms is None else
              f", arriving {iso_ms(split.first_arrival_ms)} .. "
              f"{iso_ms(split.last_arrival_ms or 0)}")
    print(f"  late: {split.late_events:,} events of {split.late_sessions:,} sessions -> "
          f"{run.late_out}{window}")
    return 0


class _Progress:
    """Days done, on one line of stderr when it is a terminal."""

    def __init__(self, total: int):
        self.total, self.done, self.enabled = total, 0, sys.stderr.isatty()

    def __call__(self, events: int) -> None:
        self.done += 1
        if self.enabled:
            print(f"\rsimulating: day {self.done}/{self.total}", end="", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.enabled and self.done:
            print(file=sys.stderr)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from agenttally.cli import _add_common, date_arg

    p = sub.add_parser(
        "simulate", help="generate a realistic workload from a profile",
        description="Simulate Managed Agents sessions from a workload profile: the same "
                    "events and records the API returns, seeded and reproducible.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    p.add_argument("--profile", required=True, type=profile_path,
                   help="a profile TOML, or the name of a shipped one: demo, midsize, large, "
                        "or with a regime change: onboarding, migration, holiday, runaway")
    p.add_argument("--start", type=date_arg,
                   help="first day, YYYY-MM-DD, e.g. 2026-10-01 (default: the last --days days, "
                        "up to the present instant)")
    p.add_argument("--days", type=int, default=60, help="days to simulate (60)")
    p.add_argument("--seed", type=int, default=7, help="random seed; same seed, same bytes (7)")
    p.add_argument("--scale", type=float, default=1.0, metavar="X",
                   help="multiply every team's sessions per day by X, e.g. 0.05 for a cheap "
                        "run of a large profile (1)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--out", help="write JSONL to this file instead of a store")
    target.add_argument("--into", help="write into this store (default: --db), or into a lake "
                                       "when it is a directory (or a path with no suffix)")
    p.add_argument("--until-now", action="store_true",
                   help="stop at the present instant (no events in the future)")
    p.add_argument("--late-share", type=float, default=0.0, metavar="S",
                   help="share of sessions whose events arrive late (0..1; default 0)")
    p.add_argument("--late-delay-hours", type=float, default=24.0, metavar="H",
                   help="median delay of a late session, log-normal, sigma 1 (default 24)")
    p.add_argument("--late-out", metavar="FILE.jsonl",
                   help="where events arriving after the cut-off go, in order of arrival")
    p.add_argument("--book", default=DEFAULT_BOOK,
                   help=f"price book name for list_cost and budgets ({DEFAULT_BOOK})")
    p.set_defaults(func=cmd_simulate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agenttally.cli.simulate")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
