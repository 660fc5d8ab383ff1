"""Forecast & budgets page data: daily history, forecast bands, budgets and the backtest.

The statistics are reports.forecast, reports.backtest and reports.budgets; this module feeds
them the filtered daily series (complete UTC days before the rating's as-of) and turns their
results into small frames for the charts. Forecasts start on the as-of day: the day in
progress is forecast, not extrapolated from a partial day.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pandas as pd

from reports.dashboard.chargeback import narrow_charges
from reports.dashboard.filters import Filters

__all__ = ["MonthEnd", "backtest", "daily_history", "forecast_frame", "month_end"]


def as_of_day(as_of_ms: int) -> date:
    return datetime.fromtimestamp(as_of_ms / 1000, UTC).date()


def month_end_day(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def daily_history(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int,
                  by: str = "total") -> pd.DataFrame:
    """Cost per complete day before the as-of day (rows) and group (columns), USD floats."""
    from reports.forecast import daily_series

    narrow_charges(con, f)
    return daily_series(con, by, end=as_of_day(as_of_ms))


@dataclass(frozen=True)
class MonthEnd:
    """The as-of month's spend at its end: actual so far plus the forecast of the rest."""

    period: str
    actual: Decimal  # complete days before the as-of day, exact sum rounded to the cent
    mean: Decimal
    lo80: Decimal
    hi80: Decimal
    lo95: Decimal
    hi95: Decimal
    method: str
    note: str
    history_days: int


def forecast_frame(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int,
                   horizon: int | None = None, by: str = "total",
                   growth_per_month: float | None = None) -> dict[str, Any]:
    """History and forecast of the daily total: {"history": day, usd; "forecast": day, mean,
    lo95, lo80, hi80, hi95; "method", "note", "history_days", "month_end": MonthEnd,
    "paths": the sample paths (for budgets)}. The horizon defaults to the end of the month
    after the as-of month, so the chart always shows the next period too."""
    from reports.forecast import Interval, forecast

    history = daily_history(con, f, as_of_ms, by)
    series = history.sum(axis=1) if len(history.columns) else pd.Series(
        0.0, index=history.index)
    day = as_of_day(as_of_ms)
    if horizon is None:
        nxt = month_end_day(day) + timedelta(days=1)
        horizon = (month_end_day(nxt) - day).days + 1
    fc = forecast(series.rename("total"), horizon, growth_per_month=growth_per_month)
    # Forecast days start the day after the last history day; align to the as-of day.
    period = f"{day.year:04d}-{day.month:02d}"
    in_month = series[(series.index >= pd.Timestamp(day.replace(day=1)))
                      & (series.index < pd.Timestamp(day))]
    actual = _exact_before(con, period, day)
    rest = (month_end_day(day) - day).days + 1
    offset_days = max((day - fc.origin).days, 0) if len(series) else 0
    window = fc.paths[:, offset_days:offset_days + rest].sum(axis=1)
    total = Interval.of(window, float(actual))
    month_end = MonthEnd(period=period, actual=actual, mean=total.mean, lo80=total.lo80,
                         hi80=total.hi80, lo95=total.lo95, hi95=total.hi95, method=fc.method,
                         note=fc.note, history_days=fc.history_days)
    hist = series.rename("usd").rename_axis("day").reset_index()
    fcf = fc.daily.reset_index()
    _ = in_month
    return {"history": hist, "forecast": fcf, "method": fc.method, "note": fc.note,
            "history_days": fc.history_days, "month_end": month_end, "paths": fc.paths,
            "origin": fc.origin}


def _exact_before(con: duckdb.DuckDBPyConnection, period: str, day: date) -> Decimal:
    """The period's spend on days before `day`: invoice lines rounded once, then summed."""
    value = con.execute("""
        SELECT coalesce(sum(cents_half_even(amount)), 0) FROM (
            SELECT sum(amount_exact) AS amount FROM charges
            WHERE period = $period AND day < $day GROUP BY meter, model, token_class)
    """, {"period": period, "day": day}).fetchall()[0][0]
    return Decimal(value)


def month_end(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int) -> MonthEnd:
    """Just the month-end forecast (the Overview's card)."""
    day = as_of_day(as_of_ms)
    return forecast_frame(con, f, as_of_ms, horizon=(month_end_day(day) - day).days + 1
                          )["month_end"]


def backtest(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int) -> dict[str, Any]:
    """Rolling-origin backtest of the daily total: scores per method and notes."""
    from reports.backtest import run_backtest

    history = daily_history(con, f, as_of_ms)
    series = history.sum(axis=1) if len(history.columns) else pd.Series(
        0.0, index=history.index)
    result = run_backtest(series.rename("total"), n_paths=500)
    scores = pd.DataFrame([{
        "method": {"model": "forecast model", "seasonal_naive": "seasonal naive",
                   "run_rate": "run rate"}.get(s.method, s.method),
        "daily MAPE %": s.mape, "sMAPE %": s.smape, "month-end MAPE %": s.period_end_mape,
        "80% coverage %": s.coverage80, "95% coverage %": s.coverage95, "points": s.points,
    } for s in result.scores])
    return {"scores": scores, "notes": list(result.notes), "origins": len(result.origins),
            "horizon": result.horizon, "improvement": result.improvement}


def budgets(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int) -> dict[str, Any] | None:
    """Budget status from reports.budgets, or None while that module is not there."""
    try:
        import reports.budgets  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "reports.budgets":
            raise
        return None
    return _budget_status(con, f, as_of_ms)


def _budget_status(con: duckdb.DuckDBPyConnection, f: Filters,
                   as_of_ms: int) -> dict[str, Any] | None:  # pragma: no cover - wired later
    return None
