"""Forecast & budgets page data: daily history, forecast bands, budgets and the backtest.

The statistics are reports.forecast, reports.backtest and reports.budgets; this module feeds
them the filtered daily series (complete UTC days before the rating's as-of) and turns their
results into small frames for the charts. Forecasts start on the as-of day; the month's
outlook is reports.budgets.outlook's (spend to the as-of instant, the rest of the as-of day
pro rata), so the Overview's forecast card and the budgets table agree.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from meter.settings import setting
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
    actual: Decimal  # spend to the as-of instant, exact sum rounded to the cent
    mean: Decimal
    lo80: Decimal
    hi80: Decimal
    lo95: Decimal
    hi95: Decimal
    method: str
    note: str
    history_days: int


N_PATHS = 1000  # sample paths per forecast: the budgets table uses the same, so they agree


def _series(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int,
            by: str = "total") -> pd.Series:
    history = daily_history(con, f, as_of_ms, by)
    series = history.sum(axis=1) if len(history.columns) else pd.Series(
        0.0, index=history.index)
    return series.rename("total")


def month_outlook(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int,
                  series: pd.Series | None = None,
                  growth_per_month: float | None = None) -> dict[str, Any]:
    """The as-of month's outlook: {"month_end": MonthEnd, "month_cum": cumulative spend from
    the as-of day on (day, mean, lo95, lo80, hi80, hi95), "month_actual" (float),
    "month_invoiced" (Decimal: the month's invoice lines so far)}.

    The numbers are reports.budgets.outlook's (spend to the as-of instant plus the sample
    paths of the rest, the as-of day pro rata), exactly as the budgets table reads them.
    """
    from reports.budgets import outlook
    from reports.forecast import LEVELS

    if series is None:
        series = _series(con, f, as_of_ms)
    out = outlook(con, "total", "total", as_of_ms, "monthly", history=series.to_frame(),
                  n_paths=N_PATHS, growth_per_month=growth_per_month)
    total = out.total()
    running = out.cumulative
    month_cum = pd.DataFrame({"day": pd.to_datetime(out.days), "mean": running.mean(axis=0)})
    for name, q in LEVELS.items():
        month_cum[name] = np.percentile(running, q, axis=0) if running.size else []
    invoiced = con.execute("""
        SELECT coalesce(sum(amount), 0) FROM (
            SELECT units_cents(sum(amount_units)) AS amount FROM charges
            WHERE period = $period GROUP BY meter, model, token_class, tier)
    """, {"period": out.label}).fetchall()[0][0]
    return {
        "month_end": MonthEnd(period=out.label, actual=out.actual, mean=total.mean,
                              lo80=total.lo80, hi80=total.hi80, lo95=total.lo95,
                              hi95=total.hi95, method=out.forecast.method,
                              note=out.forecast.note, history_days=out.forecast.history_days),
        "month_cum": month_cum, "month_actual": float(out.actual_exact),
        "month_invoiced": Decimal(invoiced),
    }


def forecast_frame(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int,
                   horizon: int | None = None, by: str = "total",
                   growth_per_month: float | None = None) -> dict[str, Any]:
    """History and forecast of the daily total, with the as-of month's outlook.

    Returns month_outlook's keys plus {"history": (day, usd), "forecast": (day, mean, lo95,
    lo80, hi80, hi95, ...), "method", "note", "history_days", "price_changes" (price books
    taking effect within the horizon: day, book, effect on the usage mix)}. The horizon
    defaults to the end of the month after the as-of month.
    """
    from pricing.pricebook import default_pricebook_dir, load_pricebooks
    from reports.forecast import forecast_store

    series = _series(con, f, as_of_ms, by)
    day = as_of_day(as_of_ms)
    if horizon is None:
        horizon = (month_end_day(month_end_day(day) + timedelta(days=1)) - day).days + 1
    # usage priced with the book in force on each future day: a scheduled price change
    # (a book with a future effective date) moves the forecast on its date
    priced = forecast_store(con, "total", horizon, end=day, n_paths=N_PATHS,
                            growth_per_month=growth_per_month,
                            books=load_pricebooks(default_pricebook_dir()))
    fc = priced.total
    return {**month_outlook(con, f, as_of_ms, series, growth_per_month),
            "history": series.rename("usd").rename_axis("day").reset_index(),
            "forecast": fc.daily.reset_index(), "method": fc.method, "note": fc.note,
            "history_days": fc.history_days,
            "price_changes": [{"day": c.day, "book": f"{c.book} {c.version}",
                               "effect": c.effect} for c in priced.price_changes]}


def month_end(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int) -> MonthEnd:
    """Just the month-end forecast (the Overview's card)."""
    return month_outlook(con, f, as_of_ms)["month_end"]


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


BUDGETS_ENV = "AGENTTALLY_BUDGETS"
DEFAULT_BUDGETS = Path("data") / "budgets.toml"


def budgets_path() -> Path | None:
    """$AGENTTALLY_BUDGETS, else data/budgets.toml (as `agenttally budgets`) when present."""
    env = setting(BUDGETS_ENV)
    if env:
        return Path(env)
    return DEFAULT_BUDGETS if DEFAULT_BUDGETS.exists() else None


def _selected(budgets: list[Any], f: Filters) -> Any | None:
    """The budget that matches the selection: the total when nothing is filtered, a team's
    when exactly that team is; monthly before quarterly."""
    if f.agents or f.models or len(f.teams) > 1:
        return None
    group, value = ("team", f.teams[0]) if f.teams else ("total", None)
    matches = [b for b in budgets if b.group == group and b.value == value]
    matches.sort(key=lambda b: b.period != "monthly")
    return matches[0] if matches else None


def budgets(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int,
            only_selected: bool = False) -> dict[str, Any] | None:
    """Every budget's status as of the rating (reports.budgets, on all charges: a budget is
    for its own group, whatever the filters), and the one matching the selection;
    `only_selected` computes that one alone (the Overview's card).

    None when there is no budgets file (or no reports.budgets). Returns {"file", "table"
    (one row per budget), "selected": {"label", "delta", "help", "caption", "lines":
    [{"label", "amount"}], "period"} or None}.
    """
    try:
        from reports.budgets import budget_status, load_budgets
    except ModuleNotFoundError as exc:
        if exc.name != "reports.budgets":
            raise
        return None
    path = budgets_path()
    if path is None:
        return None
    narrow_charges(con, Filters())
    every = load_budgets(path)
    wanted = _selected(every, f)
    if only_selected:
        every = [wanted] if wanted is not None else []
    statuses = budget_status(con, every, as_of_ms, n_paths=N_PATHS)
    rows = []
    for s in statuses:
        cross = s.crossing
        if cross is None:
            crossing = ""
        elif cross.crossed_on:
            crossing = f"crossed {cross.crossed_on:%d %b}"
        elif cross.median:
            crossing = (f"{cross.median:%d %b} (80%: {_day(cross.p10)} – {_day(cross.p90)})")
        else:
            crossing = f"not before {s.end:%d %b} ({cross.probability:.0%} chance)"
        rows.append({
            "budget": s.budget.name,
            "group": "total" if s.budget.group == "total" else
                     f"{s.budget.group}: {s.budget.value}",
            "period": s.period, "amount": float(s.budget.amount), "actual": float(s.actual),
            "used %": float(s.used_percent), "forecast": float(s.forecast_end.mean),
            "forecast 80%": f"{s.forecast_end.lo80:,.0f} – {s.forecast_end.hi80:,.0f}",
            "overrun odds": s.p_overrun, "100% crossed": crossing,
        })
    chosen = next((s for s in statuses if s.budget == wanted), None)
    selected = None
    if chosen is not None:
        amount = chosen.budget.amount
        cross = chosen.crossing
        if cross is not None and cross.crossed_on:
            when = f"exceeded on {cross.crossed_on:%d %b}"
        elif cross is not None and cross.median:
            when = f"likely exceeded {cross.median:%d %b}"
        else:
            when = "not expected to be exceeded"
        selected = {
            "label": f"{chosen.used_percent}% used",
            "delta": f"{float(chosen.forecast_end.mean / amount):.0%} forecast",
            "help": f"{chosen.budget.name}: {chosen.budget.period} budget of ${amount:,.0f} "
                    f"for {chosen.period}. {chosen.note}.",
            "caption": f"of ${amount:,.0f} · {chosen.p_overrun:.0%} chance of overrun · {when}",
            "period": chosen.period, "monthly": chosen.budget.period == "monthly",
            "lines": [{"label": f"{t.percent}% of budget", "amount": float(t.amount)}
                      for t in chosen.thresholds],
        }
    return {"file": str(path), "table": pd.DataFrame(rows), "selected": selected}


def _day(value: date | None) -> str:
    return "after the period" if value is None else f"{value:%d %b}"
