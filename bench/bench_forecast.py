"""Forecast accuracy: rolling-origin backtests of the model against the two baselines.

    python -m bench.bench_forecast [--quick]             # synthetic profiles (~2 min)
    python -m bench.bench_forecast --db STORE --as-of 2026-12-10 --by team
    python -m bench.bench_forecast --profile data/profiles/demo.toml --days 130

Synthetic profiles draw daily costs the way the simulator does (weekly cycle, growth, daily
noise, heavy-tailed sessions); for them an *oracle* is also scored: the true median of each
day's cost (from 300 replicate draws), the best any forecast could do, so the model's MAPE
can be read against the noise floor as well as against the baselines. With --db or --profile
the series are the rated charges of a store (a simulated one for --profile).

Targets (issue 7): daily MAPE >= 20% lower than the better baseline; 80% interval coverage
75-85%.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from reports.backtest import run_backtest, synthetic_series

PROFILES = {
    "steady (400 sessions/day)": dict(sessions_per_day=400),
    "growing 10%/month": dict(sessions_per_day=400, growth_per_month=0.10),
    "demo-like team (160/day, +8%/month, noise 0.12)": dict(
        sessions_per_day=160, growth_per_month=0.08, daily_noise=0.12),
    "small team, heavy tail (50/day, sigma 1.5)": dict(sessions_per_day=50,
                                                       session_cost_sigma=1.5),
    "large org (3,000/day, noise 0.05)": dict(sessions_per_day=3000, daily_noise=0.05),
}


def _oracle_mape(kw: dict, days: int, seed: int, origins: list[date], horizon: int,
                 actual: pd.Series) -> float:
    replicas = np.stack([synthetic_series(days, seed=10_000 + r, **kw).to_numpy()
                         for r in range(300)])
    median = pd.Series(np.median(replicas, axis=0), index=actual.index)
    errors = []
    for origin in origins:
        window = slice(pd.Timestamp(origin), pd.Timestamp(origin) + pd.Timedelta(days=horizon - 1))
        a, m = actual[window].to_numpy(), median[window].to_numpy()
        keep = a > 0
        errors.extend(np.abs(a[keep] - m[keep]) / a[keep])
    return 100 * float(np.mean(errors))


def _row(name: str, result, oracle: float | None = None) -> list[str]:
    m, sn, rr = (result.score(x) for x in ("model", "seasonal_naive", "run_rate"))

    def f(x):
        return "" if x is None or x != x else f"{x:.1f}"

    return [name, f(m.mape), f(sn.mape), f(rr.mape), f(oracle), f(result.improvement),
            f(m.period_end_mape), f(sn.period_end_mape), f(rr.period_end_mape),
            f(m.coverage80), f(m.coverage95)]


COLUMNS = ["series", "MAPE model", "seas.naive", "run-rate", "oracle", "improv.%",
           "month-end model", "seas.naive", "run-rate", "cov80", "cov95"]


def _print(rows: list[list[str]]) -> None:
    from reports.render import render

    print(render(COLUMNS, rows))


def bench_synthetic(args: argparse.Namespace) -> None:
    rows = []
    for name, kw in PROFILES.items():
        for seed in range(args.seeds):
            t = time.time()
            series = synthetic_series(args.days, seed=seed, **kw)
            result = run_backtest(series, horizon=args.horizon, n_origins=args.origins,
                                  step=args.step, n_paths=args.paths)
            oracle = _oracle_mape(kw, args.days, seed, result.origins, args.horizon, series)
            rows.append(_row(f"{name} #{seed}", result, oracle))
            print(f"  {name} #{seed}: {time.time() - t:.1f}s", file=sys.stderr)
    _print(rows)


def _store_series(db: str, as_of: str, by: str) -> pd.DataFrame:
    from meter.store import open_store
    from meter.vocabulary import parse_instant
    from pricing.pricebook import load_pricebooks
    from pricing.rating import RatingOptions, rate
    from reports.forecast import daily_series

    as_of_ms = parse_instant(as_of)
    with open_store(db, read_only=True) as con:
        rate(con, load_pricebooks(), RatingOptions(as_of_ms=as_of_ms))
        day = datetime.fromtimestamp(as_of_ms / 1000, UTC).date()
        frame = daily_series(con, by, end=day)
        if by != "total":
            frame["(total)"] = daily_series(con, "total", end=day)["total"]
    return frame


def bench_store(args: argparse.Namespace, db: str, as_of: str) -> None:
    frame = _store_series(db, as_of, args.by)
    rows = []
    for group in frame.columns:
        t = time.time()
        result = run_backtest(frame[group], horizon=args.horizon, n_origins=args.origins,
                              step=args.step, n_paths=args.paths, group=str(group))
        rows.append(_row(str(group), result))
        print(f"  {group}: {time.time() - t:.1f}s", file=sys.stderr)
    _print(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", help="backtest the rated charges of this store")
    p.add_argument("--as-of", default=None, help="with --db/--profile: last instant of history")
    p.add_argument("--profile", help="simulate this profile into a temporary store first")
    p.add_argument("--start", default="2026-08-07", help="with --profile: first day")
    p.add_argument("--days", type=int, default=130, help="days of history (130)")
    p.add_argument("--by", default="team", help="with --db/--profile: group (team)")
    p.add_argument("--horizon", type=int, default=14)
    p.add_argument("--origins", type=int, default=30)
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--paths", type=int, default=800)
    p.add_argument("--seeds", type=int, default=2, help="synthetic draws per profile (2)")
    p.add_argument("--quick", action="store_true", help="one draw, 10 origins: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.origins, args.days, args.paths = 1, 10, 100, 400
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "sim.duckdb")
            subprocess.run([sys.executable, "-m", "agenttally.cli", "simulate", "--profile",
                            args.profile, "--start", args.start, "--days", str(args.days),
                            "--into", db], check=True)
            end = date.fromisoformat(args.start) + pd.Timedelta(days=args.days).to_pytimedelta()
            bench_store(args, db, args.as_of or end.isoformat())
    elif args.db:
        bench_store(args, args.db, args.as_of or datetime.now(UTC).isoformat())
    else:
        bench_synthetic(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
