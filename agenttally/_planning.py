"""Forecasts and budgets: what the store's spend is expected to be, and against what.

Like the billing functions, each takes an open `Store` and an `as_of` instant (RFC 3339 text,
epoch ms, or None for now), brings the ledger to that instant (agenttally._billing) and
returns a typed result. Forecasts start on the as-of day; history is every complete UTC day
before it. The price books, future versions included, price each forecast day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from agenttally._billing import _books, _rated
from agenttally._store import Store
from meter.errors import UsageError
from meter.vocabulary import GROUP_SQL
from pricing.pricebook import PriceBook
from reports.budgets import Budget, BudgetStatus, budget_status, load_budgets
from reports.forecast import GroupForecasts, forecast_store

__all__ = ["budgets", "forecast"]

Instant = str | int | None
Books = str | Path | Sequence[PriceBook] | None


def forecast(store: Store, *, by: str = "total", horizon: int = 30, as_of: Instant = None,
             pricebooks: Books = None, n_paths: int = 2000, seed: int = 0,
             growth_per_month: float | None = None) -> GroupForecasts:
    """Daily forecasts of the organisation and of each group of `by` (a key of GROUP_SQL:
    total, team, project, meter, model, agent, environment) for `horizon` days from the as-of
    day, with 80%/95% intervals read from sample paths on which the groups add up to the
    organisation. `growth_per_month` (percent) compounds on top, as a scenario's does."""
    if by not in GROUP_SQL:
        raise UsageError(f"unknown group {by!r}; choose from {', '.join(GROUP_SQL)}")
    if horizon < 1:
        raise UsageError(f"a horizon must be at least 1 day, got {horizon}")
    as_of_ms = _rated(store, as_of, pricebooks, None)
    day = datetime.fromtimestamp(as_of_ms / 1000, UTC).date()
    return forecast_store(store.connection, by, horizon, end=day, n_paths=n_paths, seed=seed,
                          growth_per_month=growth_per_month, books=_books(pricebooks))


def budgets(store: Store, budgets: str | Path | Sequence[Budget], *, as_of: Instant = None,
            pricebooks: Books = None, n_paths: int = 2000, seed: int = 0) -> list[BudgetStatus]:
    """Each budget's period as of `as_of`: actual, forecast at its end (80%/95%), the
    probability of overrun and the crossing day of each threshold. `budgets`: a budgets TOML
    file (see data/budgets.toml) or the budgets themselves."""
    chosen = load_budgets(budgets) if isinstance(budgets, (str, Path)) else list(budgets)
    as_of_ms = _rated(store, as_of, pricebooks, None)
    return budget_status(store.connection, chosen, as_of_ms, n_paths=n_paths, seed=seed,
                         books=_books(pricebooks))
