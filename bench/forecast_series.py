"""Daily cost series of simulated fleets: the data of the held-out forecast evaluation (issue 19).

    python -m bench.forecast_series               # build (or find cached) all EVAL_FLEETS series
    python -m bench.forecast_series --jobs 2 --rebuild
    python -m bench.forecast_series --profile holiday --seed 5 --scale 0.2 --days 150

A series is what a store would show: the profile simulated (meter.simulator) into a
throwaway in-memory store, rated by pricing.rating with the shipped price books (plus, for a
price-change fleet, the books of an extra directory), and summed per UTC day by
reports.forecast.daily_series. :func:`profile_series` returns it as a DataFrame (USD floats:
this is statistics, not billing) and caches it as Parquet under ``bench/out/series/``, keyed
by everything it depends on: the profile's and the books' bytes, the simulator's and the
rater's code, and the arguments. A second run of the evaluation reads the cache.

:data:`EVAL_FLEETS` lists the fleets the evaluation scores, each with its held-out seeds.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from bench.common import OUT_DIR

__all__ = [
    "EVAL_FLEETS",
    "EVAL_PRICEBOOKS",
    "HELD_OUT_SEEDS",
    "SERIES_DAYS",
    "SERIES_START",
    "Built",
    "EvalFleet",
    "build_fleets",
    "profile_series",
]

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = OUT_DIR / "series"
EVAL_PRICEBOOKS = Path(__file__).resolve().parent / "forecast_data" / "pricebooks"

# A Monday just after the 2026-08-07 book took effect (every model the profiles name is
# priced), 150 days: to 2027-01-06, through Thanksgiving and the year-end holidays.
SERIES_START = date(2026, 8, 10)
SERIES_DAYS = 150

# The seeds of the evaluation. Held out: no forecasting code was tuned on a series drawn with
# them (tuning used bench/bench_forecast.py's synthetic series, seeds 0-1; the simulator's
# tests and demos use 3, 7 and 8). Do not tune on them: pick other seeds to look at while
# tuning, and let these score the result once.
HELD_OUT_SEEDS = (101, 102, 103)

# Code a series depends on: a change to any of these files, or to the source of the functions
# below (whose modules others edit for other reasons: the forecaster lives beside
# daily_series), makes every cached series stale.
_CODE = ("meter/simulator/*.py", "meter/store.py", "meter/schema*.sql", "pricing/rating.py",
         "pricing/pricebook.py", "pricing/money.py")
_FORMAT = 1  # bump when the cached frame's layout changes


def _profile_path(profile: str) -> Path:
    from agenttally._simulation import profile_path

    return profile_path(profile)


def _book_files(pricebooks_dir: Path | None) -> list[Path]:
    from pricing.pricebook import default_pricebook_dir

    shipped = sorted(default_pricebook_dir().glob("*.toml"))
    extra = sorted(Path(pricebooks_dir).glob("*.toml")) if pricebooks_dir is not None else []
    return shipped + extra


@functools.cache
def _code_digest() -> str:
    from agenttally import _simulation as simulate
    from reports.forecast import daily_series

    digest = hashlib.sha256()
    for pattern in _CODE:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    for function in (daily_series, simulate.build_simulation, simulate.schedule_for,
                     simulate.card_from_book, _simulate_and_rate, _daily_index):
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()


def cache_path(profile: str, seed: int, *, days: int, start: date, scale: float,
               pricebooks_dir: Path | None, by: str) -> Path:
    """Where the series of these arguments is cached: a readable name and a digest of every
    input (profile, books, code), so that a changed input is a cache miss, never stale."""
    path = _profile_path(profile)
    digest = hashlib.sha256(_code_digest().encode())
    digest.update(f"{_FORMAT}|{seed}|{days}|{start.isoformat()}|{scale!r}|{by}".encode())
    digest.update(path.read_bytes())
    for book in _book_files(pricebooks_dir):
        digest.update(book.name.encode())
        digest.update(book.read_bytes())
    books = "" if pricebooks_dir is None else f"-books-{Path(pricebooks_dir).name}"
    name = (f"{path.stem}-s{seed}-{start.isoformat()}-{days}d-x{scale:g}-{by}{books}-"
            f"{digest.hexdigest()[:12]}.parquet")
    return CACHE_DIR / name


def profile_series(profile: str, seed: int, *, days: int = SERIES_DAYS,
                   start: date = SERIES_START, scale: float = 1.0,
                   pricebooks_dir: Path | None = None, by: str = "team",
                   cache: bool = True) -> pd.DataFrame:
    """The rated daily cost in USD of one simulated fleet.

    ``profile`` is a shipped profile's name (demo, midsize, large, onboarding, migration,
    holiday, runaway) or a TOML path; ``seed``, ``days``, ``start`` and ``scale`` (every
    team's sessions per day times it) go to the simulator; ``pricebooks_dir`` holds price
    books rated beside the shipped ones (where two of a name overlap, the later one applies).
    Returns one row per UTC day from ``start`` (a consecutive DatetimeIndex named ``day``,
    ``days`` rows) and the columns ``total`` then one per ``by`` group, by name (``team``:
    every team of the profile, zero on days it had no charges; or ``meter``, ``model``...),
    the groups adding up to ``total`` (to float rounding). Cached under bench/out/series/
    unless ``cache`` is false.
    """
    path = cache_path(profile, seed, days=days, start=start, scale=scale,
                      pricebooks_dir=pricebooks_dir, by=by) if cache else None
    if path is not None and path.exists():
        return _daily_index(pd.read_parquet(path))
    frame = _simulate_and_rate(profile, seed, days=days, start=start, scale=scale,
                               pricebooks_dir=pricebooks_dir, by=by)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        frame.to_parquet(scratch)
        scratch.replace(path)  # atomic: a parallel reader never sees half a file
    return frame


def _simulate_and_rate(profile: str, seed: int, *, days: int, start: date, scale: float,
                       pricebooks_dir: Path | None, by: str) -> pd.DataFrame:
    from agenttally._simulation import build_simulation
    from meter.simulator import write_store
    from meter.store import connect
    from pricing.pricebook import load_pricebooks
    from pricing.rating import RatingOptions, rate
    from reports.forecast import daily_series

    books = load_pricebooks()
    if pricebooks_dir is not None:
        books += load_pricebooks(pricebooks_dir)
    sim = build_simulation(_profile_path(profile), start=start, days=days, seed=seed,
                           scale=scale, books=books)
    end = start + timedelta(days=days)
    end_ms = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp() * 1000)
    con = connect(":memory:")
    try:
        write_store(con, sim)
        # As a store would show it at the end of the window: what ran by then, rated.
        rate(con, books, RatingOptions(as_of_ms=end_ms))
        total = daily_series(con, "total", start=start, end=end)
        groups = daily_series(con, by, start=start, end=end) if by != "total" else None
    finally:
        con.close()
    frame = pd.DataFrame({"total": total["total"] if "total" in total else 0.0},
                         index=total.index)
    if groups is not None:
        names = set(groups.columns)
        if by == "team":  # a team with no charges in the window is still a team: zeros
            names |= {t.name for t in sim.profile.teams}
        for name in sorted(names):
            frame[str(name)] = groups[name] if name in groups.columns else 0.0
    frame.columns.name = None
    return _daily_index(frame.astype(float))


def _daily_index(frame: pd.DataFrame) -> pd.DataFrame:
    """The same index whether built or read back from Parquet: days at ns, freq D."""
    frame.index = pd.DatetimeIndex(frame.index.as_unit("ns"), freq="D", name="day")
    return frame


@dataclass(frozen=True)
class EvalFleet:
    """One fleet of the evaluation: a profile at a scale, rated with some extra price books,
    drawn with each of ``seeds``."""

    name: str
    profile: str
    scale: float = 1.0
    seeds: tuple[int, ...] = HELD_OUT_SEEDS
    pricebooks: Path | None = None
    regime: str = ""

    def series(self, seed: int, *, by: str = "team") -> pd.DataFrame:
        """The fleet's daily cost (``total`` and a column per ``by`` group) for ``seed``."""
        return profile_series(self.profile, seed, days=SERIES_DAYS, start=SERIES_START,
                              scale=self.scale, pricebooks_dir=self.pricebooks, by=by)


# Scales put each fleet at a few hundred sessions a day (~40-90k over the 150 days): a
# realistic company's daily cost, seconds to simulate. Large at 4% keeps its twelve teams (the
# smallest with ~2-3 sessions a day: the spiky small-team case); midsize at a quarter.
EVAL_FLEETS: list[EvalFleet] = [
    EvalFleet("demo", "demo", 1.0, regime="steady growth; runaway, burst, model switch"),
    EvalFleet("midsize", "midsize", 0.25, regime="five teams; two model switches"),
    EvalFleet("large", "large", 0.04, regime="twelve teams, some tiny at this scale"),
    EvalFleet("onboarding", "onboarding", 1.0,
              regime="a team onboards on day 70 (3-week ramp), another on day 112"),
    EvalFleet("migration", "migration", 1.0, regime="Opus 5.5 -> Sonnet 5.5 on days 75-89"),
    EvalFleet("pricebook", "midsize", 0.25, pricebooks=EVAL_PRICEBOOKS,
              regime="from 2026-11-02 (day 84) Opus 5.5 tokens +25%, Sonnet 5.5 +20%"),
    EvalFleet("holiday", "holiday", 1.0,
              regime="US Thanksgiving dip, all teams at 25% 2026-12-21..2027-01-03"),
    EvalFleet("runaway", "runaway", 1.0,
              regime="runaway sessions on days 64-66 and 117-119, a burst on day 95"),
]


@dataclass(frozen=True)
class Built:
    """One series built (or read from the cache): its wall and CPU seconds, its total."""

    fleet: str
    seed: int
    wall: float
    cpu: float
    cached: bool
    usd: float


def _build(fleet: EvalFleet, seed: int) -> Built:
    wall, cpu = time.perf_counter(), time.process_time()  # CPU: all threads (DuckDB's too)
    cached = cache_path(fleet.profile, seed, days=SERIES_DAYS, start=SERIES_START,
                        scale=fleet.scale, pricebooks_dir=fleet.pricebooks, by="team").exists()
    frame = fleet.series(seed)
    return Built(fleet.name, seed, time.perf_counter() - wall, time.process_time() - cpu,
                 cached, float(frame["total"].sum()))


def build_fleets(fleets: Sequence[EvalFleet] = tuple(EVAL_FLEETS), *, jobs: int = 1,
                 rebuild: bool = False, progress: bool = True) -> tuple[float, list[Built]]:
    """Build (or find in the cache) every series of ``fleets``, ``jobs`` at a time; returns
    the wall seconds of it all and each series' times. ``rebuild`` deletes their cached
    files first. On a shared machine wall time includes waiting for a core; CPU does not."""
    tasks = [(f, s) for f in fleets for s in f.seeds]
    if rebuild:
        for fleet, seed in tasks:
            cache_path(fleet.profile, seed, days=SERIES_DAYS, start=SERIES_START,
                       scale=fleet.scale, pricebooks_dir=fleet.pricebooks,
                       by="team").unlink(missing_ok=True)
    began = time.perf_counter()
    done: list[Built] = []

    def report(row: Built) -> None:
        done.append(row)
        if progress:
            print(f"  {row.fleet} #{row.seed}: {row.wall:.1f} s wall, {row.cpu:.1f} s CPU"
                  f"{' (cached)' if row.cached else ''}, ${row.usd:,.0f} over {SERIES_DAYS} "
                  "days", file=sys.stderr, flush=True)

    if jobs <= 1:
        for fleet, seed in tasks:
            report(_build(fleet, seed))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for row in pool.map(_build, *zip(*tasks, strict=True)):
                report(row)
    return time.perf_counter() - began, done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1, help="fleets built in parallel (1)")
    p.add_argument("--rebuild", action="store_true", help="ignore and replace cached series")
    p.add_argument("--profile", help="one series of this profile instead of EVAL_FLEETS")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--days", type=int, default=SERIES_DAYS)
    p.add_argument("--by", default="team")
    args = p.parse_args(argv)
    if args.profile:
        frame = profile_series(args.profile, args.seed, days=args.days, scale=args.scale,
                               by=args.by)
        print(frame.round(2).to_string())
        return 0
    seconds, built = build_fleets(jobs=args.jobs, rebuild=args.rebuild)
    cpu = sum(b.cpu for b in built)
    print(f"{len(EVAL_FLEETS)} fleets, {len(built)} series of {SERIES_DAYS} days in "
          f"{seconds:.1f} s wall, {cpu:.1f} s CPU (jobs={args.jobs}; "
          f"{sum(b.cached for b in built)} cached) -> {CACHE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
