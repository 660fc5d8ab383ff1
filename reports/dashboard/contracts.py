"""Contract view data: the credit balance and its run-out date, commitment utilisation.

The contract is the file (or folder of versions) in $AGENTTALLY_CONTRACTS; none by default,
and then the view says how to set one. It applies to the whole bill, so the team, agent and
model filters do not narrow it. The run-out date reads the forecast's sample paths
(reports.forecast.forecast) of the total daily cost from the as-of day on: each path's
cumulative spend, scaled by what the credits pay per list dollar this period (the amount
before credits over the list amount), meets the remaining balance on some day; the median day
and the 80% range are shown, and whether the credit expires first.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from meter.settings import setting
from meter.vocabulary import Period
from pricing.contracts import load_contracts
from reports.dashboard.filters import Filters
from reports.forecast import daily_series, forecast
from reports.statement import contract_run

__all__ = ["CONTRACTS_ENV", "contract_view", "contracts_path", "run_out"]

CONTRACTS_ENV = "AGENTTALLY_CONTRACTS"
HORIZON_DAYS = 365


def contracts_path() -> Path | None:
    env = setting(CONTRACTS_ENV)
    return Path(env) if env else None


def run_out(paths: np.ndarray, balance: float, origin: date) -> tuple[date | None, ...]:
    """(median, 10th, 90th percentile) of the day each path's cumulative spend reaches
    `balance`; None where it does not within the horizon (more than half the paths: None)."""
    if balance <= 0:
        return origin, origin, origin
    reached = paths.cumsum(axis=1) >= balance
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), paths.shape[1] + 1)
    out: list[date | None] = []
    for q in (50, 10, 90):
        day = int(np.percentile(first, q, method="nearest"))
        out.append(None if day > paths.shape[1] else origin + timedelta(days=day))
    return tuple(out)


def contract_view(con: duckdb.DuckDBPyConnection, f: Filters, path: str | None = None,
                  n_paths: int = 500, seed: int = 0) -> dict[str, Any]:
    """The period's statement (f.period, else the last month with charges), its credit
    balances with the run-out date, and each commitment's utilisation."""
    chosen = path or (str(contracts_path()) if contracts_path() else None)
    if chosen is None:
        return {"contract": None, "env": CONTRACTS_ENV}
    contracts = load_contracts(chosen)
    last = con.execute("SELECT max(day) FROM charges").fetchall()[0][0]
    if last is None:
        return {"contract": contracts.name, "period": None, "statement": None}
    period = Period.parse(f.period) if f.period else Period(last.year, last.month)
    statement = contract_run(con, contracts, str(period)).statement
    origin = min(period.end, last + timedelta(days=1))
    balance = sum((b.closing for b in statement.credits), Decimal("0.00"))
    before_credits = statement.list_amount + sum(
        (ln.amount for ln in statement.lines if ln.kind != "credit"), Decimal("0.00"))
    ratio = float(before_credits / statement.list_amount) if statement.list_amount else 1.0
    runout: tuple[date | None, ...] = (None, None, None)
    if balance > 0:
        history = daily_series(con, "total", end=origin)
        if len(history.columns):
            fc = forecast(history[history.columns[0]], HORIZON_DAYS, n_paths=n_paths,
                          seed=seed, group="total", origin=origin)
            runout = run_out(fc.paths * ratio, float(balance), origin)
    live = [b for b in statement.credits if b.closing > 0]
    expires = min((b.expires for b in live), default=None)
    return {
        "contract": statement.contract or contracts.name, "period": str(period),
        "list_amount": statement.list_amount, "amount_due": statement.amount_due,
        "balance": balance, "origin": origin, "runout": runout[0], "runout_p10": runout[1],
        "runout_p90": runout[2], "first_expiry": expires,
        "credits": [{"grant": b.grant_id, "priority": b.priority, "expires": b.expires,
                     "drawn": b.drawn, "expired": b.expired, "balance": b.closing}
                    for b in statement.credits],
        "commitments": [{"commitment": u.commitment_id, "window": u.window,
                         "amount": u.amount, "counted": u.counted,
                         "utilisation_percent": u.utilisation_percent, "true_up": u.true_up}
                        for u in statement.commitments],
        "adjustments": [{"line": f"{ln.kind.replace('_', ' ')} {ln.term_id}",
                         "amount": ln.amount} for ln in statement.lines],
    }
