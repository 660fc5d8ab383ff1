"""Held-out forecast evaluation: AgentTally against statsforecast and the spend-tracker rules.

    python -m bench.bench_forecast_eval [--quick] [--out bench/out/forecast_eval.md]

The series: every fleet of ``bench.forecast_series.EVAL_FLEETS`` (every shipped simulator
profile and the regime-change profiles: a team onboarding mid-series, an Opus-to-Sonnet
migration, a price-book change, a holiday dip, a runaway agent), each simulated with held-out
seeds and rated; per fleet the organisation's daily cost and its largest teams. The model was
tuned on other series (reports/ets.py says on which); these seeds were never looked at while
tuning.

Rolling origins every ``STEP`` days from day ``FIRST_ORIGIN``, horizons 7 and 30 days; at each
origin every method sees only the days before it. Methods: AgentTally (reports.forecast: the
median of its sample paths as the point forecast, its 80%/95% intervals), statsforecast
AutoETS, AutoARIMA, AutoTheta and MSTL (their mean and intervals, run in .venv-baselines: see
bench/baselines/), seasonal-naive and run-rate (points only). Metrics: MASE (scaled by the
in-sample seasonal-naive MAE at the origin), MAPE, coverage of the 80% and 95% intervals and
the scaled interval score (MSIS, lower is better), averaged over every (series, origin).

Budget calibration: at origins on the 10th and 20th of a month whose end lies in the data,
budgets at 80%..130% of the previous month's spend for each series; AgentTally's probability
of overrun (actual month-to-date + the forecast's paths to month end) against what happened,
as a reliability table, and the Brier score against the naive run-rate rule (overrun iff
month-to-date / elapsed days x days in month > budget).

Targets (issue 19): MASE >= 20% below seasonal-naive and no worse than the best statsforecast
model; 80% coverage 75-85%, 95% coverage 90-98%.
"""

from __future__ import annotations

import argparse
import calendar
import json
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.forecast_metrics import coverage, mape, mase, scaled_interval_score
from bench.statsforecast_baselines import MODELS, Task, run_statsforecast
from reports.backtest import run_rate, seasonal_naive
from reports.forecast import forecast

HORIZONS = (7, 30)
FIRST_ORIGIN = 56  # eight weeks of history before the first forecast
STEP = 7
TEAMS_PER_FLEET = 3  # the largest teams of each fleet, beside its total
BUDGET_LEVELS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)  # x the previous month's spend
BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
N_PATHS = 1000
OUT = Path("bench/out/forecast_eval.md")


@dataclass(frozen=True)
class Point:
    """One forecast scored: a method at one (series, origin, horizon)."""

    method: str
    horizon: int
    mase: float
    mape: float
    cov80: float | None = None
    cov95: float | None = None
    msis80: float | None = None
    msis95: float | None = None


def _series(quick: bool) -> dict[str, pd.Series]:
    from bench.forecast_series import EVAL_FLEETS

    out: dict[str, pd.Series] = {}
    fleets = EVAL_FLEETS[:4] if quick else EVAL_FLEETS
    for fleet in fleets:
        seeds = fleet.seeds[:1] if quick else fleet.seeds
        for seed in seeds:
            start = time.perf_counter()
            frame = fleet.series(seed)
            teams = [c for c in frame.columns if c != "total"]
            teams.sort(key=lambda c: -float(frame[c].sum()))
            for column in ["total", *teams[:TEAMS_PER_FLEET]]:
                out[f"{fleet.name}#{seed}/{column}"] = frame[column].astype(float)
            print(f"  {fleet.name} #{seed}: {len(frame)} days, {len(teams)} teams, "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return out


def _origins(n: int, horizon: int) -> list[int]:
    return list(range(FIRST_ORIGIN, n - horizon + 1, STEP))


def _score(method: str, horizon: int, actual: np.ndarray, history: np.ndarray,
           point: np.ndarray, bands: dict[str, np.ndarray] | None) -> Point:
    kw: dict[str, float] = {}
    if bands is not None:
        kw = dict(cov80=coverage(actual, bands["lo80"], bands["hi80"]),
                  cov95=coverage(actual, bands["lo95"], bands["hi95"]),
                  msis80=scaled_interval_score(actual, bands["lo80"], bands["hi80"], 80,
                                               history),
                  msis95=scaled_interval_score(actual, bands["lo95"], bands["hi95"], 95,
                                               history))
    return Point(method, horizon, mase(actual, point, history), mape(actual, point).value, **kw)


def evaluate(series: dict[str, pd.Series], workers: int) -> tuple[list[Point], dict[str, float]]:
    points: list[Point] = []
    tasks: list[Task] = []
    truth: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
    seconds: dict[str, float] = defaultdict(float)
    for name, s in series.items():
        values = s.to_numpy()
        for horizon in HORIZONS:
            for pos in _origins(len(values), horizon):
                history, actual = values[:pos], values[pos:pos + horizon]
                if seasonal_naive_scale_ok(history):
                    task_id = f"{name}@{pos}h{horizon}"
                    truth[task_id] = (horizon, actual, history)
                    start = time.perf_counter()
                    fc = forecast(s.iloc[:pos], horizon, n_paths=N_PATHS, seed=pos)
                    seconds["AgentTally"] += time.perf_counter() - start
                    d = fc.daily
                    points.append(_score("AgentTally", horizon, actual, history,
                                         d["median"].to_numpy(),
                                         {k: d[k].to_numpy() for k in ("lo80", "hi80", "lo95",
                                                                       "hi95")}))
                    points.append(_score("seasonal-naive", horizon, actual, history,
                                         seasonal_naive(s.iloc[:pos], horizon), None))
                    points.append(_score("run-rate", horizon, actual, history,
                                         run_rate(s.iloc[:pos], horizon), None))
                    tasks.append(Task(id=task_id, history=history, horizon=horizon))
    print(f"  AgentTally: {len(tasks)} forecasts in {seconds['AgentTally']:.1f} s; "
          f"statsforecast on the same {len(tasks)} tasks ...", file=sys.stderr)
    run = run_statsforecast(tasks, workers=workers)
    for task_id, by_model in run.forecasts.items():
        horizon, actual, history = truth[task_id]
        for model, f in by_model.items():
            seconds[model] += f.seconds
            if not f.ok:
                continue
            points.append(_score(model, horizon, actual, history, f.mean,
                                 {"lo80": f.lo80, "hi80": f.hi80, "lo95": f.lo95,
                                  "hi95": f.hi95}))
    failed = defaultdict(int)
    for line in run.failures:
        failed[line.split("/")[-1].split(":")[0]] += 1
    seconds.update({f"{m} failures": float(failed.get(m, 0)) for m in MODELS})
    return points, dict(seconds)


def seasonal_naive_scale_ok(history: np.ndarray) -> bool:
    """MASE needs a non-zero in-sample seasonal-naive error."""
    return len(history) > 7 and float(np.mean(np.abs(history[7:] - history[:-7]))) > 0


# --- budget calibration ------------------------------------------------------------------


def calibration(series: dict[str, pd.Series]) -> pd.DataFrame:
    """One row per (series, origin, budget): AgentTally's p(overrun), the run-rate rule's
    verdict (0/1) and whether the month overran."""
    rows = []
    for name, s in series.items():
        for pos in range(FIRST_ORIGIN, len(s)):
            origin = s.index[pos]
            if origin.day not in (10, 20):
                continue
            days_in_month = calendar.monthrange(origin.year, origin.month)[1]
            to_end = days_in_month - origin.day + 1
            if pos + to_end > len(s):
                continue
            month = s[(s.index.year == origin.year) & (s.index.month == origin.month)]
            previous_end = origin - pd.Timedelta(days=origin.day)
            previous = s[(s.index.year == previous_end.year)
                         & (s.index.month == previous_end.month)]
            if len(previous) < previous_end.day:  # the previous month must be complete
                continue
            mtd = float(month[month.index < origin].sum())
            actual_total = float(month.sum())
            fc = forecast(s.iloc[:pos], to_end, n_paths=N_PATHS, seed=pos)
            ends = mtd + fc.paths.sum(axis=1)
            projection = mtd / (origin.day - 1) * days_in_month
            for level in BUDGET_LEVELS:
                budget = level * float(previous.sum())
                rows.append({"series": name, "origin": origin.date(), "budget": budget,
                             "p": float((ends > budget).mean()),
                             "rule": float(projection > budget),
                             "overran": float(actual_total > budget)})
    return pd.DataFrame(rows)


def reliability(frame: pd.DataFrame) -> pd.DataFrame:
    cut = pd.cut(frame["p"], BINS, include_lowest=True)
    table = frame.groupby(cut, observed=True).agg(budgets=("p", "size"),
                                                  predicted=("p", "mean"),
                                                  observed=("overran", "mean"))
    return table.reset_index().rename(columns={"p": "bin"})


# --- report ------------------------------------------------------------------------------


def _table(points: list[Point], horizon: int) -> pd.DataFrame:
    frame = pd.DataFrame([p.__dict__ for p in points if p.horizon == horizon])
    table = frame.groupby("method").agg(
        MASE=("mase", "mean"), MAPE=("mape", "mean"), cov80=("cov80", "mean"),
        cov95=("cov95", "mean"), MSIS80=("msis80", "mean"), MSIS95=("msis95", "mean"),
        forecasts=("mase", "size"))
    order = ["AgentTally", *MODELS, "seasonal-naive", "run-rate"]
    return table.reindex([m for m in order if m in table.index])


def _markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [head, rule]
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if v != v else f"{v:.{digits}f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(points: list[Point], seconds: dict[str, float], calib: pd.DataFrame,
           n_series: int) -> str:
    lines = [f"Held-out evaluation, {datetime.now(UTC):%Y-%m-%d}, {platform.processor() or ''}"
             f" {platform.machine()}, Python {platform.python_version()}: {n_series} series "
             f"(fleet totals and their {TEAMS_PER_FLEET} largest teams), origins every {STEP} "
             f"days from day {FIRST_ORIGIN}.", ""]
    for horizon in HORIZONS:
        table = _table(points, horizon)
        sn = table.loc["seasonal-naive", "MASE"]
        best_sf = table.loc[[m for m in MODELS if m in table.index], "MASE"].min()
        ours = table.loc["AgentTally", "MASE"]
        lines += [f"**Horizon {horizon} days** (MASE and MSIS: lower is better; coverage in "
                  f"percent)", "", _markdown(table.reset_index()), "",
                  f"AgentTally MASE {100 * (1 - ours / sn):.1f}% below seasonal-naive "
                  f"(target >= 20%), {100 * (ours / best_sf - 1):+.1f}% against the best "
                  f"statsforecast model (target <= 0).", ""]
    lines += ["**Time per forecast** (seconds, mean): " + ", ".join(
        f"{m} {seconds.get(m, 0) / max(1, sum(1 for p in points if p.method == m)):.4f}"
        for m in ["AgentTally", *MODELS]) + "; failures: " + ", ".join(
        f"{m} {int(seconds.get(f'{m} failures', 0))}" for m in MODELS), ""]
    if not calib.empty:
        brier = float(((calib["p"] - calib["overran"]) ** 2).mean())
        naive = float(((calib["rule"] - calib["overran"]) ** 2).mean())
        lines += [f"**Budget calibration**: {len(calib)} budgets (80-130% of the previous "
                  f"month's spend, origins on the 10th and 20th). Brier score AgentTally "
                  f"{brier:.3f}, run-rate rule {naive:.3f} (lower is better).", "",
                  _markdown(reliability(calib).astype({"bin": str})), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="four fleets, one seed each")
    p.add_argument("--workers", type=int, default=2, help="statsforecast processes (2)")
    p.add_argument("--out", type=Path, default=OUT, help=f"markdown report ({OUT})")
    args = p.parse_args(argv)
    start = time.perf_counter()
    series = _series(args.quick)
    points, seconds = evaluate(series, args.workers)
    calib = calibration(series)
    text = report(points, seconds, calib, len(series))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"points": [p.__dict__ for p in points], "seconds": seconds,
         "calibration": calib.astype({"origin": str}).to_dict("records")}, default=float),
        encoding="utf-8")
    print(f"({time.perf_counter() - start:.0f} s; written to {args.out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
