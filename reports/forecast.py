"""Daily cost series and forecasts with 80% and 95% prediction intervals.

The model, and why (the README copies this note):

    Daily spend is a positive series whose weekly cycle is *multiplicative* (a quiet Sunday is
    a fraction of a Tuesday, whatever the level) and whose growth compounds. We therefore fit
    exponential smoothing (ETS, statsmodels 0.15 ``ETSModel``, pinned in pyproject) to the
    logarithm of daily cost: additive errors, additive weekly seasonality (period 7) and either
    no trend or an additive damped trend, whichever has the lower AICc. On the log scale this is
    ETS(M,Md,M)-like behaviour with positive forecasts by construction. Damped trend is the
    robust default of the forecasting literature (Gardner & McKenzie; the M3/M4 results): it
    follows growth without extrapolating a short surge for a month. ETS is a state-space model,
    so prediction intervals come from the model itself: we simulate sample paths (2,000 by
    default), exponentiate them, and read daily intervals, period totals and budget crossing
    dates off the same paths, so a month total's interval accounts for correlated days.
    Fits take ~0.1 s per series, cheap enough for a rolling-origin backtest on every group.

    With fewer than 14 days (two weekly cycles) the seasonal model cannot be estimated
    honestly; the fallback is a flat daily level (mean of the last 7 days) with lognormal
    intervals from the observed day-to-day spread, and the forecast says so.

Statistics run on floats; money leaves this module rounded half-even to the cent as Decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from meter.errors import UsageError
from meter.vocabulary import GROUP_SQL, tags_first
from pricing.money import install_sql_macros, round_cents
from pricing.pricebook import PriceBook
from reports import ets
from reports.prices_ahead import PriceChange, PricesAhead, prices_ahead, revalued_view

__all__ = [
    "MIN_HISTORY",
    "Forecast",
    "GroupForecasts",
    "Interval",
    "daily_series",
    "forecast",
    "forecast_groups",
    "forecast_store",
    "reconcile",
    "to_cents",
]

SEASON = ets.SEASON
INFLATE = 1.0  # interval width factor on the bootstrapped innovations
MIN_HISTORY = ets.MIN_DAYS  # two weekly cycles
DAYS_PER_MONTH = 365.25 / 12
LEVELS = {"lo95": 2.5, "lo80": 10.0, "hi80": 90.0, "hi95": 97.5}


def to_cents(value: float) -> Decimal:
    """A float statistic as money: half-even to the cent."""
    return round_cents(Decimal(repr(float(value))))


# --- series ------------------------------------------------------------------------------


def daily_series(
    con: duckdb.DuckDBPyConnection,
    by: str = "total",
    *,
    table: str = "charges",
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """Cost per UTC day (rows, every day present, zero-filled) and group (columns), in USD.

    ``by`` is a key of ``GROUP_SQL`` (total, team, project, meter, model, agent, environment);
    ``start`` is inclusive, ``end`` exclusive (defaults: the first and last charged day). The
    sums are exact in DuckDB; only the small day x group table reaches pandas as floats.
    """
    if by not in GROUP_SQL:
        raise UsageError(f"unknown group {by!r}; choose from {', '.join(GROUP_SQL)}")
    install_sql_macros(con)
    rows = con.execute(f"""
        SELECT day, {GROUP_SQL[by]} AS grp, units_usd(sum(amount_units))::DOUBLE AS usd
        FROM {tags_first(table, by)}
        WHERE ($start IS NULL OR day >= $start) AND ($end IS NULL OR day < $end)
        GROUP BY ALL ORDER BY day, grp
    """, {"start": start, "end": end}).fetchall()
    frame = pd.DataFrame(rows, columns=["day", "group", "usd"])
    if start is None and not frame.empty:
        start = frame["day"].min()
    if end is None and not frame.empty:
        end = frame["day"].max() + timedelta(days=1)
    index = pd.date_range(start, end - timedelta(days=1), freq="D", name="day") \
        if start is not None and end is not None and end > start \
        else pd.DatetimeIndex([], name="day", freq="D")
    if frame.empty:
        return pd.DataFrame(index=index, columns=pd.Index([], name="group"), dtype=float)
    frame["day"] = pd.to_datetime(frame["day"])
    wide = frame.pivot_table(index="day", columns="group", values="usd", aggfunc="sum")
    wide = wide.reindex(index, fill_value=0.0).fillna(0.0)
    wide.columns.name = "group"
    return wide.astype(float)


# --- forecasts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A money forecast: the mean and the 80% and 95% prediction intervals, in cents."""

    mean: Decimal
    lo80: Decimal
    hi80: Decimal
    lo95: Decimal
    hi95: Decimal

    @classmethod
    def of(cls, sample: np.ndarray, offset: float = 0.0) -> Interval:
        q = np.percentile(sample, list(LEVELS.values()))
        return cls(mean=to_cents(sample.mean() + offset), lo95=to_cents(q[0] + offset),
                   lo80=to_cents(q[1] + offset), hi80=to_cents(q[2] + offset),
                   hi95=to_cents(q[3] + offset))


@dataclass(frozen=True)
class Forecast:
    """Daily forecasts from ``origin`` on, with the sample paths they were read from.

    ``daily`` has columns mean, lo95, lo80, hi80, hi95 (USD floats, one row per day);
    ``paths`` is (n_paths, horizon): totals over any window are read from it.
    """

    group: str
    method: str
    note: str
    history_days: int
    origin: date
    daily: pd.DataFrame
    paths: np.ndarray

    @property
    def horizon(self) -> int:
        return self.paths.shape[1]

    def total(self, days: int | None = None) -> Interval:
        """The forecast sum of the first ``days`` days (default: the whole horizon)."""
        return Interval.of(self.paths[:, : days or self.horizon].sum(axis=1))


def _paths_frame(paths: np.ndarray, origin: date) -> pd.DataFrame:
    index = pd.date_range(origin, periods=paths.shape[1], freq="D", name="day")
    # one partial sort for every quantile (a separate percentile per level costs 4x)
    q = np.quantile(paths, [0.5, *(p / 100 for p in LEVELS.values())], axis=0)
    columns = {"mean": paths.mean(axis=0), "median": q[0]}
    columns.update({name: q[i + 1] for i, name in enumerate(LEVELS)})
    return pd.DataFrame({c: columns[c] for c in ("mean", "median", "lo95", "lo80", "hi80",
                                                 "hi95")}, index=index)


def _fallback(y: np.ndarray, horizon: int, n_paths: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, str, str]:
    n = len(y)
    if n == 0 or not np.any(y > 0):
        return (np.zeros((n_paths, horizon)), "none",
                "no cost history: the forecast is zero")
    recent = y[-min(n, SEASON):]
    level = float(recent.mean())
    positive = y[y > 0]
    offset = 0.05 * float(positive.mean())
    sigma = float(np.std(np.log(y + offset), ddof=1)) if n >= 3 else 0.5
    sigma = max(sigma, 0.05)
    paths = level * np.exp(sigma * rng.standard_normal((n_paths, horizon)) - sigma**2 / 2)
    return (paths, f"fallback: mean of the last {len(recent)} days",
            f"only {n} days of history (< {MIN_HISTORY}): a flat daily level without weekly "
            f"seasonality; intervals from the day-to-day spread (lognormal, sigma {sigma:.2f})")


def forecast(
    series: pd.Series,
    horizon: int,
    *,
    n_paths: int = 2000,
    seed: int = 0,
    growth_per_month: float | None = None,
    min_history: int = MIN_HISTORY,
    group: str | None = None,
    origin: date | None = None,
    draw_days: np.ndarray | None = None,
) -> Forecast:
    """Forecast the ``horizon`` days after the last day of ``series`` (daily USD, complete
    days, consecutive), or from ``origin``. ``growth_per_month`` (percent, e.g. from a
    scenario) compounds on top of the fitted model from the first forecast day.

    ``draw_days`` (n_paths x horizon, positions in ``series``) says which day's one-step
    error each simulated innovation is: series forecast with the same draw days keep the
    correlation of their errors (see :func:`forecast_groups`)."""
    if horizon < 1:
        raise UsageError(f"a horizon must be at least 1 day, got {horizon}")
    series = series.astype(float)
    name = group if group is not None else str(series.name or "total")
    if origin is None:
        if not len(series):
            raise ValueError("an empty series needs an explicit origin (the first day to forecast)")
        origin = (series.index[-1] + pd.Timedelta(days=1)).date()
    y = series.to_numpy()
    nonzero = np.flatnonzero(y > 0)
    y = y[nonzero[0]:] if len(nonzero) else y[:0]
    rng = np.random.default_rng(seed)
    history = len(y)
    # the fitted model's paths, or None until the fallback below fills them in
    paths: np.ndarray | None = None
    method = note = ""
    if history >= min_history:
        positive = y[y > 0]
        offset = 0.05 * float(positive.mean())
        log_y = np.log(y + offset)
        if np.ptp(log_y) < 1e-9:
            paths = np.full((n_paths, horizon), float(y[-1]))
            method, note = "constant", "the history is constant: the forecast repeats it"
        else:
            model = ets.fit(log_y)
            picks = None if draw_days is None else draw_days - (nonzero[0] + ets.burn_in(history))
            sim = ets.simulate(model, horizon, n_paths, rng, inflate=INFLATE, picks=picks)
            paths = np.clip(np.exp(sim) - offset, 0.0, None)
            method = "comb(" + ", ".join(m.name for m in model.members) + ")"
            note = (f"{method} on log daily cost, weekly seasonality, {history} days; "
                    f"intervals from {model.best.name}")
    if paths is None:
        paths, method, fallback_note = _fallback(y, horizon, n_paths, rng)
        note += fallback_note
    gaps = int((y == 0).sum())
    if gaps and history >= min_history:
        note = (f"{note}; {gaps} day{'s' if gaps > 1 else ''} without cost inside the history "
                f"(gaps or quiet days) counted as zero")
    if growth_per_month:
        steps = np.arange(1, horizon + 1) / DAYS_PER_MONTH
        paths = paths * (1 + growth_per_month / 100) ** steps
        note += f"; grown {growth_per_month:g}%/month (scenario)"
    return Forecast(group=name, method=method, note=note, history_days=history,
                    origin=origin, daily=_paths_frame(paths, origin), paths=paths)


# --- coherent forecasts of a hierarchy ---------------------------------------------------


@dataclass(frozen=True)
class GroupForecasts:
    """Forecasts of the organisation and of each group of one dimension that add up: on
    every sample path and every day, the groups' paths sum to the organisation's."""

    by: str
    total: Forecast
    groups: dict[str, Forecast]
    note: str
    price_changes: tuple[PriceChange, ...] = ()  # books taking effect within the horizon

    def get(self, group: str) -> Forecast:
        return self.total if self.by == "total" else self.groups[group]


def reconcile(top: np.ndarray, bottom: np.ndarray, *, top_fixed: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """MinT with variance scaling (Wickramasuriya, Athanasopoulos & Hyndman 2019, "wls_var")
    for a two-level hierarchy, applied path by path.

    ``top`` is (n_paths, horizon), ``bottom`` (groups, n_paths, horizon). The discrepancy
    ``top - sum(bottom)`` is shared among the groups in proportion to their forecast variance
    on that day, the top taking its own share (so the reconciled top is a variance-weighted
    average of the top forecast and the groups' sum); with ``top_fixed`` the top keeps its
    paths and the groups take all of it. Groups are clipped at zero (spend is never negative)
    and the top is then their sum, so the result is coherent exactly."""
    if bottom.shape[0] == 0:
        return top, bottom
    w = bottom.var(axis=1)  # (groups, horizon)
    w0 = np.zeros(top.shape[1]) if top_fixed else top.var(axis=0)
    total_w = w.sum(axis=0) + w0
    share = np.divide(w, total_w, out=np.full_like(w, 1 / len(w)), where=total_w > 0)
    gap = top - bottom.sum(axis=0)
    adjusted = np.clip(bottom + share[:, None, :] * gap[None], 0.0, None)
    return adjusted.sum(axis=0), adjusted


def forecast_groups(
    history: pd.DataFrame,
    total: pd.Series,
    horizon: int,
    *,
    by: str = "team",
    anchor: Forecast | None = None,
    n_paths: int = 2000,
    seed: int = 0,
    growth_per_month: float | None = None,
    origin: date | None = None,
    prices: PricesAhead | None = None,
) -> GroupForecasts:
    """Forecast ``total`` and every column of ``history`` (the groups of one dimension, same
    days), with common draw days so that the groups' errors keep their correlation, then
    reconcile them (:func:`reconcile`) so the groups add up to the total.

    The organisation's forecast is reconciled with its teams; pass that reconciled total as
    ``anchor`` to make any other dimension (project, meter, model) add up to the same
    organisation forecast (``top_fixed``). ``prices``: the history is usage valued at the
    origin's prices and each group's paths are priced day by day with the books in force
    (reports.prices_ahead)."""
    if horizon < 1:
        raise UsageError(f"a horizon must be at least 1 day, got {horizon}")
    rng = np.random.default_rng(seed)
    n = len(total)
    draw_days = rng.integers(min(ets.burn_in(n), max(n - 1, 0)), max(n, 1),
                             size=(n_paths, horizon))

    def priced_forecast(series: pd.Series, group: str) -> Forecast:
        """One series' forecast with the arguments every series shares (the draw days above
        keep their errors correlated), priced with the books in force."""
        return _priced(forecast(series, horizon, group=group, n_paths=n_paths, seed=seed,
                                growth_per_month=growth_per_month, origin=origin,
                                draw_days=draw_days), prices)

    top = anchor if anchor is not None else priced_forecast(total, "total")
    if by == "total" or history.shape[1] == 0:
        return GroupForecasts(by=by, total=top, groups={}, note="")
    history = history.reindex(total.index, fill_value=0.0)
    names = [str(c) for c in history.columns]
    raw = [priced_forecast(history[c], str(c)) for c in history.columns]
    top_paths, bottom = reconcile(top.paths[:, :horizon], np.stack([f.paths for f in raw]),
                                  top_fixed=anchor is not None)
    note = (f"reconciled: {by} forecasts add up to the organisation's on every path "
            f"(MinT, variance-weighted)")
    groups = {name: _with_paths(f, paths, note)
              for name, f, paths in zip(names, raw, bottom, strict=True)}
    reconciled_top = top if anchor is not None else _with_paths(top, top_paths, note)
    return GroupForecasts(by=by, total=reconciled_top, groups=groups, note=note)


def _priced(fc: Forecast, prices: PricesAhead | None) -> Forecast:
    if prices is None:
        return fc
    factor = prices.factor(fc.group)[: fc.horizon]
    if not prices.changes:
        return fc
    changes = ", ".join(f"{c.book} {c.version} from {c.day}" for c in prices.changes)
    return _with_paths(fc, fc.paths * factor[None, :],
                       f"usage priced with the books in force each day ({changes})")


def _with_paths(fc: Forecast, paths: np.ndarray, note: str) -> Forecast:
    return Forecast(group=fc.group, method=fc.method, note=f"{fc.note}; {note}",
                    history_days=fc.history_days, origin=fc.origin,
                    daily=_paths_frame(paths, fc.origin), paths=paths)


def forecast_store(
    con: duckdb.DuckDBPyConnection,
    by: str,
    horizon: int,
    *,
    end: date,
    table: str = "charges",
    n_paths: int = 2000,
    seed: int = 0,
    growth_per_month: float | None = None,
    books: Sequence[PriceBook] | None = None,
    series_cache: dict[tuple[str, str], pd.DataFrame] | None = None,
) -> GroupForecasts:
    """Coherent forecasts from ``end`` (the first forecast day; history is every complete day
    before it) of the organisation and of each group of ``by``: the organisation reconciled
    with its teams (also when ``by`` is "total"), any other dimension reconciled to that same
    organisation forecast.

    With ``books``, usage is forecast at the origin's prices and priced with the book in
    force on each future day (reports.prices_ahead): a scheduled price change moves the
    forecast on its effective date. ``series_cache`` keeps the daily series read, by (relation,
    dimension), for the next call on the same connection and as-of (budgets make several)."""
    cache = series_cache if series_cache is not None else {}

    def series_of(dimension: str, relation: str) -> pd.DataFrame:
        if (relation, dimension) not in cache:
            cache[(relation, dimension)] = daily_series(con, dimension, table=relation, end=end)
        return cache[(relation, dimension)]

    prices: dict[str, PricesAhead] = {}
    if books:
        for dimension in {"total", "team", by}:
            prices[dimension] = prices_ahead(con, books, dimension, end, horizon, table=table)
        table = revalued_view(con, books, end, table=table)
    total = series_of("total", table)
    series = total["total"] if "total" in total.columns else pd.Series(0.0, index=total.index)
    common: dict[str, Any] = dict(n_paths=n_paths, seed=seed,
                                  growth_per_month=growth_per_month, origin=end)
    changes = tuple(prices["total"].changes) if prices else ()
    # the organisation's forecast is always the one reconciled with its teams, whatever `by`
    teams = forecast_groups(series_of("team", table), series, horizon,
                            by="team", prices=prices.get("team"), **common)
    if by == "total":
        result = GroupForecasts(by="total", total=teams.total, groups={}, note=teams.note)
    elif by == "team":
        result = teams
    else:
        result = forecast_groups(series_of(by, table), series, horizon,
                                 by=by, anchor=teams.total, prices=prices.get(by), **common)
    return replace(result, price_changes=changes)
