"""Rolling-origin backtest of the forecast against the two baselines spend trackers use.

At each origin the model sees only the days before it and forecasts the next ``horizon``
days; so do the baselines:

- seasonal-naive: each day is the same weekday of the last observed week;
- run-rate: month-to-date / elapsed days, flat (on the 1st of a month: the previous month's
  daily mean), which is "month-to-date / elapsed fraction of the month" for the month total.

Scores per method: MAPE and sMAPE of the daily forecasts (the model's daily point forecast is
the median of its sample paths, which is what an absolute-percentage error rewards on skewed
daily costs; days with zero actual cost are left out of MAPE, and counted); the MAPE of the
month-end total forecast made at each origin (actual month-to-date + forecast of the rest of
the month, the model's being the mean of the summed paths, an unbiased total; origins whose
month end lies beyond the data are left out); and, for the model, how often the actual day
fell inside its 80% and 95% intervals (target: 75-85% and ~95%).

``synthetic_series`` draws daily costs the way the simulator builds them (Poisson sessions
with a weekly cycle, compounding growth, a lognormal daily factor, lognormal session costs),
so the backtest can be checked against a series whose seasonality is known.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from reports.forecast import MIN_HISTORY, SEASON, forecast

__all__ = [
    "BacktestResult",
    "Score",
    "run_backtest",
    "run_rate",
    "seasonal_naive",
    "synthetic_series",
]

METHODS = ("model", "seasonal_naive", "run_rate")
SIMULATOR_WEEKLY = (1.15, 1.2, 1.2, 1.15, 1.0, 0.35, 0.3)  # meter.simulator Calendar default


# --- baselines ---------------------------------------------------------------------------


def seasonal_naive(history: pd.Series, horizon: int) -> np.ndarray:
    """Each forecast day = the same weekday in the last observed week."""
    last_week = history.to_numpy(dtype=float)[-SEASON:]
    if len(last_week) < SEASON:
        return np.full(horizon, float(last_week.mean()) if len(last_week) else 0.0)
    return np.array([last_week[h % SEASON] for h in range(horizon)])


def run_rate(history: pd.Series, horizon: int) -> np.ndarray:
    """A flat daily rate: month-to-date / elapsed days of the origin's month."""
    origin = history.index[-1] + pd.Timedelta(days=1)
    in_month = history[(history.index.year == origin.year)
                       & (history.index.month == origin.month)]
    if len(in_month) == 0:  # the origin is the 1st: last month's daily mean
        previous = history[history.index >= origin - pd.DateOffset(months=1)]
        in_month = previous if len(previous) else history
    return np.full(horizon, float(in_month.mean()) if len(in_month) else 0.0)


# --- scores ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    method: str
    mape: float  # percent
    smape: float  # percent
    period_end_mape: float | None  # percent, month-end total forecasts
    coverage80: float | None  # percent of actual days inside the 80% interval
    coverage95: float | None
    points: int
    zero_days: int  # left out of MAPE


@dataclass(frozen=True)
class BacktestResult:
    group: str
    horizon: int
    origins: list[date]
    scores: list[Score]
    notes: list[str] = field(default_factory=list)

    def score(self, method: str) -> Score:
        return next(s for s in self.scores if s.method == method)

    @property
    def improvement(self) -> float | None:
        """How much lower the model's daily MAPE is than the better baseline's (percent)."""
        best = min(self.score("seasonal_naive").mape, self.score("run_rate").mape)
        return None if not best else 100 * (1 - self.score("model").mape / best)

    @property
    def period_end_improvement(self) -> float | None:
        baselines = [self.score(m).period_end_mape for m in ("seasonal_naive", "run_rate")]
        model = self.score("model").period_end_mape
        values = [v for v in baselines if v is not None]
        if model is None or len(values) < len(baselines) or not min(values):
            return None
        return 100 * (1 - model / min(values))


def _mape(actual: np.ndarray, pred: np.ndarray) -> tuple[float, int]:
    keep = actual > 0
    if not keep.any():
        return float("nan"), int((~keep).sum())
    return float(100 * np.mean(np.abs(actual[keep] - pred[keep]) / actual[keep])), \
        int((~keep).sum())


def _smape(actual: np.ndarray, pred: np.ndarray) -> float:
    denom = np.abs(actual) + np.abs(pred)
    terms = np.where(denom > 0, 2 * np.abs(actual - pred) / np.where(denom > 0, denom, 1), 0.0)
    return float(100 * terms.mean()) if len(terms) else float("nan")


def run_backtest(
    series: pd.Series,
    *,
    horizon: int = 14,
    n_origins: int = 12,
    step: int = 2,
    min_train: int = 4 * SEASON,
    n_paths: int = 1000,
    seed: int = 0,
    group: str | None = None,
) -> BacktestResult:
    """Rolling-origin evaluation over the last ``n_origins`` origins, ``step`` days apart,
    each followed by ``horizon`` days of known actuals."""
    series = series.astype(float)
    name = group if group is not None else str(series.name or "total")
    n = len(series)
    last = n - horizon
    positions = [last - k * step for k in range(n_origins) if last - k * step >= min_train]
    positions.sort()
    notes: list[str] = []
    if not positions:
        notes.append(f"{n} days of history: the backtest needs at least "
                     f"{min_train + horizon} ({min_train} to train, {horizon} to score)")
    preds: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    month_err: dict[str, list[float]] = {m: [] for m in METHODS}
    actuals, inside80, inside95 = [], [], []
    values = series.to_numpy()
    for pos in positions:
        history = series.iloc[:pos]
        origin = series.index[pos]
        month_end = pd.Timestamp(origin.year, origin.month,
                                 calendar.monthrange(origin.year, origin.month)[1])
        to_month_end = (month_end - origin).days + 1
        reach = max(horizon, to_month_end)
        fc = forecast(history, reach, n_paths=n_paths, seed=seed + pos, group=name)
        actual = values[pos:pos + horizon]
        actuals.append(actual)
        model = fc.daily["median"].to_numpy()
        naive = seasonal_naive(history, reach)
        rate = run_rate(history, reach)
        preds["model"].append(model[:horizon])
        preds["seasonal_naive"].append(naive[:horizon])
        preds["run_rate"].append(rate[:horizon])
        inside80.append((actual >= fc.daily["lo80"].to_numpy()[:horizon])
                        & (actual <= fc.daily["hi80"].to_numpy()[:horizon]))
        inside95.append((actual >= fc.daily["lo95"].to_numpy()[:horizon])
                        & (actual <= fc.daily["hi95"].to_numpy()[:horizon]))
        if pos + to_month_end <= n:
            mtd = float(history[(history.index.year == origin.year)
                                & (history.index.month == origin.month)].sum())
            truth = mtd + float(values[pos:pos + to_month_end].sum())
            if truth > 0:
                for method, daily in (("model", fc.daily["mean"].to_numpy()),
                                      ("seasonal_naive", naive), ("run_rate", rate)):
                    guess = mtd + float(daily[:to_month_end].sum())
                    month_err[method].append(abs(guess - truth) / truth)
    flat_actual = np.concatenate(actuals) if actuals else np.zeros(0)
    scores = []
    for method in METHODS:
        flat = np.concatenate(preds[method]) if preds[method] else np.zeros(0)
        mape, zeros = _mape(flat_actual, flat)
        errors = month_err[method]
        is_model = method == "model"
        scores.append(Score(
            method=method, mape=mape, smape=_smape(flat_actual, flat),
            period_end_mape=100 * float(np.mean(errors)) if errors else None,
            coverage80=100 * float(np.concatenate(inside80).mean())
            if is_model and inside80 else None,
            coverage95=100 * float(np.concatenate(inside95).mean())
            if is_model and inside95 else None,
            points=len(flat_actual), zero_days=zeros))
    if positions and positions[0] < MIN_HISTORY:
        notes.append(f"origins with < {MIN_HISTORY} days of history use the flat fallback")
    return BacktestResult(group=name, horizon=horizon,
                          origins=[series.index[p].date() for p in positions],
                          scores=scores, notes=notes)


# --- synthetic data ----------------------------------------------------------------------


def synthetic_series(
    days: int,
    *,
    start: date = date(2026, 6, 1),
    sessions_per_day: float = 400.0,
    session_cost_median: float = 0.25,
    session_cost_sigma: float = 1.0,
    weekly: tuple[float, ...] = SIMULATOR_WEEKLY,
    growth_per_month: float = 0.0,
    daily_noise: float = 0.1,
    seed: int = 0,
    name: str = "total",
) -> pd.Series:
    """Daily USD cost: Poisson(sessions x weekday weight x growth x lognormal day factor)
    sessions, each costing a lognormal draw (the simulator's calendar and heavy-tailed sessions,
    without running a full simulation)."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=days, freq="D", name="day")
    w = np.asarray(weekly, dtype=float)
    w = w / w.mean()
    t = np.arange(days) / (365.25 / 12)
    noise = np.exp(daily_noise * rng.standard_normal(days) - daily_noise**2 / 2)
    rate = sessions_per_day * w[index.day_of_week] * (1 + growth_per_month) ** t * noise
    counts = rng.poisson(rate)
    costs = session_cost_median * np.exp(session_cost_sigma * rng.standard_normal(counts.sum()))
    owner = np.repeat(np.arange(days), counts)
    daily = np.bincount(owner, weights=costs, minlength=days)
    return pd.Series(daily, index=index, name=name)
