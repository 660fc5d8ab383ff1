"""Forecasts and budgets: what the store's spend is expected to be, and against what.

Like the billing functions, each takes an open `Store` and an `as_of` instant (RFC 3339 text,
epoch ms, or None for now), brings the ledger to that instant (agenttally._billing) and
returns a typed result. Forecasts start on the as-of day; history is every complete UTC day
before it. The price books, future versions included, price each forecast day. Under a
what-if `scenario` the history is the scenario's re-rated usage and its growth compounds from
the as-of day on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from agenttally._billing import _books, _contracts, _rated
from agenttally._store import Store
from meter.errors import UsageError
from meter.vocabulary import GROUP_SQL, Period, to_epoch_ms
from pricing.contracts import ContractSet
from pricing.pricebook import PriceBook
from pricing.rating import RatingOptions
from pricing.scenario import Scenario, load_scenario
from pricing.whatif import run_whatif
from reports.backtest import BacktestResult, run_backtest
from reports.budgets import (
    Budget,
    BudgetStatus,
    budget_status,
    load_budgets,
    outlook,
    period_bounds,
)
from reports.commitment import CommitmentOutlook, commitment_outlook
from reports.forecast import GroupForecasts, Interval, daily_series, forecast_store, to_cents

__all__ = ["DailyForecast", "ForecastLine", "ForecastReport", "budgets", "commitment",
           "forecast", "forecast_report"]

Instant = str | int | None
Books = str | Path | Sequence[PriceBook] | None
Horizon = int | Literal["month", "quarter"]


@dataclass(frozen=True)
class _Basis:
    """What a forecast reads: the as-of, the relation of rated charges, the scenario."""

    as_of_ms: int
    table: str
    scenario: Scenario | None

    @property
    def growth(self) -> float | None:
        if self.scenario is None or self.scenario.usage.session_growth_percent_per_month is None:
            return None
        return float(self.scenario.usage.session_growth_percent_per_month)

    @property
    def day(self) -> date:
        return datetime.fromtimestamp(self.as_of_ms / 1000, UTC).date()


def _basis(store: Store, as_of: Instant, pricebooks: Books, span_cache_ttl: str | None,
           scenario: Scenario | str | Path | None) -> _Basis:
    """Rate the store as of `as_of` (under `scenario` when given: its re-rated usage, with
    its growth left to the forecast, which compounds it from the as-of day)."""
    if scenario is None:
        return _Basis(_rated(store, as_of, pricebooks, span_cache_ttl), "charges", None)
    chosen = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    # growth of the history would be counted twice: the forecast grows from the as-of day
    chosen = chosen.model_copy(
        update={"usage": chosen.usage.model_copy(update={"growth_from": None})})
    as_of_ms = to_epoch_ms(as_of)
    result = run_whatif(store.connection, _books(pricebooks), chosen,
                        RatingOptions(as_of_ms=as_of_ms, span_cache_ttl=span_cache_ttl))
    return _Basis(as_of_ms, result.scenario_table, chosen)


def forecast(store: Store, *, by: str = "total", horizon: int = 30, as_of: Instant = None,
             pricebooks: Books = None, n_paths: int = 2000, seed: int = 0,
             scenario: Scenario | str | Path | None = None) -> GroupForecasts:
    """Daily forecasts of the organisation and of each group of `by` (a key of GROUP_SQL:
    total, team, project, meter, model, agent, environment) for `horizon` days from the as-of
    day, with 80%/95% intervals read from sample paths on which the groups add up to the
    organisation."""
    if by not in GROUP_SQL:
        raise UsageError(f"unknown group {by!r}; choose from {', '.join(GROUP_SQL)}")
    if horizon < 1:
        raise UsageError(f"a horizon must be at least 1 day, got {horizon}")
    basis = _basis(store, as_of, pricebooks, None, scenario)
    return forecast_store(store.connection, by, horizon, end=basis.day, table=basis.table,
                          n_paths=n_paths, seed=seed, growth_per_month=basis.growth,
                          books=_books(pricebooks))


@dataclass(frozen=True)
class ForecastLine:
    """One group's forecast over the horizon: for a month or quarter, the period's actual to
    the as-of instant plus the forecast of the rest (`actual_to_date` set)."""

    group: str
    window: str  # "YYYY-MM-DD..YYYY-MM-DD", or the period ("2026-12", "2026-Q4")
    actual_to_date: Decimal | None
    forecast: Interval
    history_days: int
    method: str


@dataclass(frozen=True)
class DailyForecast:
    day: date
    group: str
    median: Decimal
    mean: Decimal
    lo80: Decimal
    hi80: Decimal
    lo95: Decimal
    hi95: Decimal


@dataclass(frozen=True)
class ForecastReport:
    """What `agenttally forecast` shows: a line per group, the daily forecasts, the
    backtests when asked, and the notes (fallbacks, reconciliation, scheduled prices)."""

    as_of_ms: int
    by: str
    horizon: Horizon
    scenario: str | None
    lines: list[ForecastLine]
    daily: list[DailyForecast]
    backtests: list[BacktestResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def forecast_report(store: Store, *, by: str = "total", horizon: Horizon = 30,
                    as_of: Instant = None, pricebooks: Books = None,
                    span_cache_ttl: str | None = None,
                    scenario: Scenario | str | Path | None = None, n_paths: int = 2000,
                    seed: int = 0, backtest_horizon: int | None = None,
                    origins: int = 12) -> ForecastReport:
    """The forecast of every group of `by` for `horizon` days (or to the end of the as-of
    month / quarter), reconciled and priced as :func:`forecast`; with `backtest_horizon`, a
    rolling-origin backtest of each group against seasonal-naive and the run-rate."""
    if by not in GROUP_SQL:
        raise UsageError(f"unknown group {by!r}; choose from {', '.join(GROUP_SQL)}")
    if isinstance(horizon, int) and horizon < 1:
        raise UsageError(f"a horizon must be at least 1 day, got {horizon}")
    con = store.connection
    basis = _basis(store, as_of, pricebooks, span_cache_ttl, scenario)
    day = basis.day
    history = daily_series(con, by, table=basis.table, end=day)
    period = None if isinstance(horizon, int) else f"{horizon}ly"
    reach = horizon if isinstance(horizon, int) else \
        max((period_bounds(day, str(period))[1] - day).days, 1)
    coherent = forecast_store(con, by, reach, end=day, table=basis.table, n_paths=n_paths,
                              seed=seed, growth_per_month=basis.growth,
                              books=_books(pricebooks))
    notes = [f"price book {c.book} {c.version} takes effect on {c.day}: "
             f"{c.effect:+.1%} on the organisation's usage mix" for c in coherent.price_changes]
    if by != "total":
        notes.append(f"the {by} forecasts add up to the organisation's on every sample path "
                     f"(reconciled: MinT, variance-weighted)")
    lines, daily, backtests = [], [], []
    for group in [str(c) for c in history.columns] or ["total"]:
        fc = coherent.groups.get(group, coherent.total)
        if period is not None:
            view = outlook(con, by, group, basis.as_of_ms, period, table=basis.table,
                           history=history, n_paths=n_paths, seed=seed,
                           growth_per_month=basis.growth, fc=fc)
            fc, days = view.forecast, view.cumulative.shape[1]
            lines.append(ForecastLine(group, view.label, view.actual, view.total(),
                                      fc.history_days, fc.method))
        else:
            days = reach
            last = day + timedelta(days=reach - 1)
            lines.append(ForecastLine(group, f"{day}..{last}", None, fc.total(),
                                      fc.history_days, fc.method))
        for when, r in fc.daily.iloc[:days].iterrows():
            daily.append(DailyForecast(when.date(), group, *[to_cents(r[c]) for c in (
                "median", "mean", "lo80", "hi80", "lo95", "hi95")]))
        if fc.method.startswith(("fallback", "none")):
            notes.append(f"{group}: {fc.note}")
        if backtest_horizon is not None:
            series = history[group] if group in history.columns else history.sum(axis=1)
            backtests.append(run_backtest(series, horizon=backtest_horizon, n_origins=origins,
                                          group=group, seed=seed))
    return ForecastReport(as_of_ms=basis.as_of_ms, by=by, horizon=horizon,
                          scenario=basis.scenario.name if basis.scenario else None,
                          lines=lines, daily=daily, backtests=backtests, notes=notes)


def budgets(store: Store, budgets: str | Path | Sequence[Budget], *, as_of: Instant = None,
            pricebooks: Books = None, span_cache_ttl: str | None = None,
            scenario: Scenario | str | Path | None = None, n_paths: int = 2000,
            seed: int = 0) -> list[BudgetStatus]:
    """Each budget's period as of `as_of`: actual, forecast at its end (80%/95%), the
    probability of overrun and the crossing day of each threshold. `budgets`: a budgets TOML
    file (see data/budgets.toml) or the budgets themselves."""
    chosen = load_budgets(budgets) if isinstance(budgets, (str, Path)) else list(budgets)
    basis = _basis(store, as_of, pricebooks, span_cache_ttl, scenario)
    return budget_status(store.connection, chosen, basis.as_of_ms, table=basis.table,
                         n_paths=n_paths, seed=seed, growth_per_month=basis.growth,
                         books=_books(pricebooks))


def commitment(store: Store, levels: Sequence[Decimal], *,
               discount_percent: Decimal | None = None, per: str | None = None,
               meters: Sequence[str] | None = None, models: Sequence[str] | None = None,
               contract: ContractSet | str | Path | None = None, by: str = "team",
               as_of: Instant = None, pricebooks: Books = None,
               span_cache_ttl: str | None = None, n_paths: int = 2000,
               seed: int = 0) -> CommitmentOutlook:
    """For each commitment level: the expected net saving, its 80% range and the chance a
    true-up is paid over the next whole month (quarter, year), in total and per group of
    `by`, from the reconciled forecast. The discount, period and eligible meters/models come
    from the arguments, else from the commitment of `contract` in force at `as_of`."""
    as_of_ms = to_epoch_ms(as_of)
    contracts = _contracts(contract)
    if contracts is not None:  # the contract's commitment, unless an argument says otherwise
        version = contracts.in_force(Period.containing(as_of_ms)) or contracts.versions[-1]
        if version.commitments:
            term = version.commitments[0]
            discount_percent = term.discount_percent if discount_percent is None \
                else discount_percent
            per = per or term.per
            meters = meters if meters is not None else term.meters
            models = models if models is not None else term.models
    if discount_percent is None:
        raise UsageError("a commitment needs its discount in percent, e.g. 10 (or a contract "
                         "with a commitment)")
    as_of_ms = _rated(store, as_of_ms, pricebooks, span_cache_ttl)
    return commitment_outlook(store.connection, levels, discount_percent=discount_percent,
                              as_of_ms=as_of_ms, per=per or "month", meters=meters or (),
                              models=models or (), by=by, n_paths=n_paths, seed=seed)
