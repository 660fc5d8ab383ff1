"""Budgets: spend to date, the forecast at period end, and when each threshold is crossed.

A budgets file (TOML, pydantic-validated, e.g. ``data/budgets.toml``) lists budgets per group
(total, team, project, meter, model, agent, environment) and period (monthly or quarterly)
with alert thresholds in percent (default 50/80/100).

For each budget the period's outlook is read off the forecast's sample paths: spend to date
(exact, from the charges) plus each path's remaining days gives a distribution of the period
total (mean, 80% and 95% intervals, the probability of overrun) and, for each threshold not yet
reached, a distribution of the day it is crossed: the median and the 10th-90th percentile
range over all paths, where a path that never crosses counts as "after the period" (so the
median is a date only when crossing is more likely than not). A threshold already reached
reports the day it was crossed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from meter.errors import UsageError
from meter.vocabulary import GROUP_SQL, tags_first
from pricing.money import cents_of_units, usd_of_units
from pricing.pricebook import PriceBook
from pricing.scenario import describe_error, exact_decimal
from reports.forecast import (
    Forecast,
    GroupForecasts,
    Interval,
    daily_series,
    forecast,
    forecast_store,
)

__all__ = [
    "Budget",
    "BudgetError",
    "BudgetStatus",
    "Outlook",
    "ThresholdStatus",
    "budget_status",
    "load_budgets",
    "outlook",
    "period_bounds",
]

MS_PER_DAY = 86_400_000


class BudgetError(UsageError):
    """A budgets file that cannot be used; the message names the file, the field and the fix."""


Money = Annotated[Decimal, BeforeValidator(exact_decimal), Field(gt=0)]
Threshold = Annotated[int, Field(gt=0, le=1000)]


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    group: Literal["total", "team", "project", "meter", "model", "agent", "environment"] = \
        "total"
    value: str | None = None  # the team, model, ... (none for the total)
    period: Literal["monthly", "quarterly"] = "monthly"
    amount: Money
    thresholds: tuple[Threshold, ...] | None = None

    @property
    def column(self) -> str:
        return "total" if self.group == "total" else str(self.value)


class BudgetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: tuple[Threshold, ...] = (50, 80, 100)
    budgets: tuple[Budget, ...] = Field(min_length=1)


def load_budgets(path: str | Path) -> list[Budget]:
    """Budgets from a TOML file, each with its thresholds filled in from the file's default."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
        parsed = BudgetsFile.model_validate(raw)
    except FileNotFoundError:
        raise BudgetError(f"{path}: no such budgets file (see data/budgets.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise BudgetError("\n".join(f"{path}: {describe_error(e)}" for e in exc.errors())) from None
    out = []
    for i, budget in enumerate(parsed.budgets):
        if (budget.group == "total") != (budget.value is None):
            raise BudgetError(f"{path}: budgets[{i}].value: "
                              + ("a total budget takes no value" if budget.group == "total"
                                 else f"name the {budget.group} this budget is for"))
        thresholds = tuple(sorted(set(budget.thresholds or parsed.thresholds)))
        out.append(budget.model_copy(update={"thresholds": thresholds}))
    return out


# --- periods -----------------------------------------------------------------------------


def period_bounds(day: date, period: str) -> tuple[date, date, str]:
    """The period containing ``day``: first day, day after the last, and its label."""
    if period == "monthly":
        start = day.replace(day=1)
        label = f"{day.year}-{day.month:02d}"
        months = 1
    elif period == "quarterly":
        quarter = (day.month - 1) // 3
        start = date(day.year, 3 * quarter + 1, 1)
        label = f"{day.year}-Q{quarter + 1}"
        months = 3
    else:
        raise UsageError(f"period must be monthly or quarterly, got {period!r}")
    month = start.month - 1 + months
    end = date(start.year + month // 12, month % 12 + 1, 1)
    return start, end, label


# --- outlook -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outlook:
    """One group's spend over one period seen from ``as_of``: actual to date (exact, then
    to the cent), and sample paths of the cumulative spend for each remaining day."""

    group: str
    start: date
    end: date  # exclusive
    label: str
    actual_units: int  # exact spend to date in money units (pricing.money)
    forecast: Forecast
    cumulative: np.ndarray  # (n_paths, remaining days): spend to date + forecast, by day end

    @property
    def actual_exact(self) -> Decimal:
        return usd_of_units(self.actual_units)

    @property
    def actual(self) -> Decimal:
        return cents_of_units(self.actual_units)

    @property
    def days(self) -> list[date]:
        return [self.forecast.origin + timedelta(days=i) for i in range(self.cumulative.shape[1])]

    def total(self) -> Interval:
        if self.cumulative.shape[1] == 0:
            a = self.actual
            return Interval(a, a, a, a, a)
        return Interval.of(self.cumulative[:, -1])


# Spend per group and day of one grouping over one span of days, in money units: read once
# for every budget on that grouping and span (key: table, grouping, first day, last day).
Actuals = dict[tuple[str, str, date, date], dict[str, list[tuple[date, int]]]]


def _actual(con: duckdb.DuckDBPyConnection, table: str, by: str, value: str,
            start: date, through: date,
            read: Actuals | None = None) -> tuple[int, list[tuple[date, Decimal]]]:
    """Spend of one group from `start` to `through` inclusive: in all (exact, money units)
    and per day (USD). `read`: spend already read per group, filled on a miss."""
    read = {} if read is None else read
    key = (table, by, start, through)
    if key not in read:
        by_group: dict[str, list[tuple[date, int]]] = {}
        for group, day, units in con.execute(f"""
            SELECT {GROUP_SQL[by]} AS grp, day, sum(amount_units) FROM {tags_first(table, by)}
            WHERE day >= $start AND day <= $through GROUP BY ALL ORDER BY grp, day
        """, {"start": start, "through": through}).fetchall():
            by_group.setdefault(group, []).append((day, int(units or 0)))
        read[key] = by_group
    rows = read[key].get(value, [])
    return sum(u for _, u in rows), [(d, usd_of_units(u)) for d, u in rows]


def outlook(
    con: duckdb.DuckDBPyConnection,
    by: str,
    value: str,
    as_of_ms: int,
    period: str,
    *,
    table: str = "charges",
    history: pd.DataFrame | None = None,
    n_paths: int = 2000,
    seed: int = 0,
    growth_per_month: float | None = None,
    fc: Forecast | None = None,
    actuals: Actuals | None = None,
) -> Outlook:
    """The period (monthly/quarterly) containing ``as_of_ms`` for group ``by`` = ``value``.

    History is every complete UTC day before the as-of day (``history``: a
    :func:`daily_series` frame to reuse across budgets). The as-of day counts its actual spend
    so far plus the forecast for the rest of that day, pro rata. ``fc``: a forecast from the
    as-of day to use (e.g. reconciled, from :func:`forecast_store`) instead of fitting one.
    ``actuals``: spend already read per group (shared by the budgets of one grouping).
    """
    as_of_day = datetime.fromtimestamp(as_of_ms / 1000, UTC).date()
    fraction_left = 1 - (as_of_ms % MS_PER_DAY) / MS_PER_DAY
    start, end, label = period_bounds(as_of_day, period)
    if history is None:
        history = daily_series(con, by, table=table, end=as_of_day)
    if value in history.columns:
        series = history[value]
    else:
        series = pd.Series(0.0, index=history.index, name=value)
    actual_units, _ = _actual(con, table, by, value, start, as_of_day, actuals)
    actual_exact = usd_of_units(actual_units)
    remaining = (end - as_of_day).days
    if fc is None or fc.origin != as_of_day or fc.horizon < remaining:
        fc = forecast(series, max(remaining, 1), n_paths=n_paths, seed=seed,
                      growth_per_month=growth_per_month, group=value, origin=as_of_day)
    steps = fc.paths[:, :remaining].copy()
    if remaining:
        steps[:, 0] *= fraction_left
    cumulative = float(actual_exact) + np.cumsum(steps, axis=1)
    return Outlook(group=value, start=start, end=end, label=label, actual_units=actual_units,
                   forecast=fc, cumulative=cumulative)


# --- budget status -----------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdStatus:
    percent: int
    amount: Decimal
    crossed_on: date | None  # already crossed: the day the actual spend reached it
    probability: float  # of being reached by the end of the period (1 when crossed)
    median: date | None  # None: after the period (or already crossed)
    p10: date | None
    p90: date | None  # None: after the period


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period: str
    start: date
    end: date  # exclusive
    actual: Decimal
    forecast_end: Interval
    p_overrun: float
    thresholds: list[ThresholdStatus]
    method: str
    note: str
    notes: list[str] = field(default_factory=list)

    @property
    def used_percent(self) -> Decimal:
        return (self.actual * 100 / self.budget.amount).quantize(Decimal("0.1"))

    @property
    def crossing(self) -> ThresholdStatus | None:
        """The 100% threshold, if the budget has one."""
        return next((t for t in self.thresholds if t.percent == 100), None)


def _crossing(out: Outlook, level: float) -> tuple[float, date | None, date | None, date | None]:
    horizon = out.cumulative.shape[1]
    if horizon == 0:
        return 0.0, None, None, None
    reached = out.cumulative >= level
    index = np.where(reached.any(axis=1), reached.argmax(axis=1), horizon)
    q = np.quantile(index, [0.5, 0.1, 0.9], method="inverted_cdf")
    days = [None if int(i) >= horizon else out.forecast.origin + timedelta(days=int(i))
            for i in q]
    return float((index < horizon).mean()), days[0], days[1], days[2]


def budget_status(
    con: duckdb.DuckDBPyConnection,
    budgets: list[Budget],
    as_of_ms: int,
    *,
    table: str = "charges",
    n_paths: int = 2000,
    seed: int = 0,
    growth_per_month: float | None = None,
    books: Sequence[PriceBook] | None = None,
) -> list[BudgetStatus]:
    """Each budget's period as of ``as_of_ms``: actual, forecast at period end (80%/95%),
    probability of overrun, and per threshold the crossing day or its distribution.
    ``books``: price the forecast with the book in force on each future day."""
    as_of_day = datetime.fromtimestamp(as_of_ms / 1000, UTC).date()
    histories: dict[str, pd.DataFrame] = {}
    coherent: dict[str, GroupForecasts] = {}
    read: dict[tuple[str, str], pd.DataFrame] = {}  # daily series, shared by every budget
    actuals: Actuals = {}  # spend per group and day so far, shared likewise
    reach = max([(period_bounds(as_of_day, b.period)[1] - as_of_day).days for b in budgets],
                default=1)
    out = []
    for budget in budgets:
        by = budget.group
        if by not in histories:
            if (table, by) not in read:
                read[(table, by)] = daily_series(con, by, table=table, end=as_of_day)
            histories[by] = read[(table, by)]
            # every budget reads the same reconciled forecasts: teams add up to the total
            coherent[by] = forecast_store(con, by, max(reach, 1), end=as_of_day, table=table,
                                          n_paths=n_paths, seed=seed,
                                          growth_per_month=growth_per_month, books=books,
                                          series_cache=read)
        forecasts = coherent[by]
        fc = forecasts.total if by == "total" else forecasts.groups.get(budget.column)
        view = outlook(con, by, budget.column, as_of_ms, budget.period, table=table,
                       history=histories[by], n_paths=n_paths, seed=seed,
                       growth_per_month=growth_per_month, fc=fc, actuals=actuals)
        _, daily = _actual(con, table, by, budget.column, view.start, as_of_day, actuals)
        notes = []
        if budget.column not in histories[by].columns and not daily:
            notes.append(f"no charges for {by} {budget.column!r} so far")
        statuses = []
        for percent in budget.thresholds or (100,):
            level = budget.amount * percent / 100
            running, crossed_on = Decimal(0), None
            for day, amount in daily:
                running += amount
                if running >= level:
                    crossed_on = day
                    break
            if crossed_on is not None:
                statuses.append(ThresholdStatus(percent, level, crossed_on, 1.0, None, None,
                                                None))
            else:
                p, median, p10, p90 = _crossing(view, float(level))
                statuses.append(ThresholdStatus(percent, level, None, p, median, p10, p90))
        ends = view.cumulative[:, -1] if view.cumulative.shape[1] else \
            np.array([float(view.actual_exact)])
        out.append(BudgetStatus(
            budget=budget, period=view.label, start=view.start, end=view.end,
            actual=view.actual, forecast_end=view.total(),
            p_overrun=float((ends > float(budget.amount)).mean()),
            thresholds=statuses, method=view.forecast.method, note=view.forecast.note,
            notes=notes))
    return out
