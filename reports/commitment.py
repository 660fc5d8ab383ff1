"""The commitment calculator: should we commit $X a month for d% off?

From the forecast's sample paths (reports.forecast.forecast: (n_paths, horizon) USD per day,
one forecast per group, each drawn with the same seed so the groups' shocks line up) it sums
each path's spend over the commitment window (the next whole month, quarter or year from
the as-of day), keeps the eligible share of it (the share of the group's list spend on the
commitment's meters and models over the last 90 days), and for each level X reads, path by
path:

- counted = E x (1 - d): the eligible spend E after the commitment discount;
- true-up = max(0, X - counted): paid when the commitment is underused;
- net saving = E x d - true-up (against paying list price with no commitment).

The total row is the organisation's commitment: its expected net saving, the probability
that the true-up is paid, and the expected true-up. A group's row is its part under the
chargeback rule (reports.chargeback): the discount on its own eligible spend, less its share
of the true-up in proportion to its eligible spend on that path; its probability is that of
falling short of its pro-rata part of X (X x its share of the expected eligible spend).

Forecasts are statistics (floats); results are money to the cent, half-even, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import duckdb
import numpy as np

from meter.errors import UsageError
from meter.vocabulary import GROUP_SQL, Period
from pricing.money import install_sql_macros
from reports.forecast import daily_series, forecast_store, to_cents

__all__ = ["CommitmentOption", "CommitmentOutlook", "commitment_options", "commitment_outlook",
           "window_of"]

PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}
ELIGIBLE_DAYS = 90
TOTAL = "TOTAL"


@dataclass(frozen=True)
class CommitmentOption:
    """One commitment level, for one group (or TOTAL)."""

    level: Decimal
    group: str
    expected_eligible: Decimal  # mean eligible list spend over the window
    expected_saving: Decimal  # mean net saving (negative: the commitment costs money)
    saving_p10: Decimal
    saving_p90: Decimal
    p_underused: float  # probability the true-up is paid (a group: its pro-rata part)
    expected_true_up: Decimal


@dataclass(frozen=True)
class CommitmentOutlook:
    window: str  # e.g. "2027-01" or "2027-01..2027-03"
    start: date
    end: date  # exclusive
    discount_percent: Decimal
    per: str
    by: str
    options: list[CommitmentOption]
    eligible_share: dict[str, Decimal]
    notes: list[str]
    meters: tuple[str, ...] = ()  # the eligible meters (none: every meter)


def window_of(as_of_day: date, per: str) -> tuple[Period, Period]:
    """The commitment window from `as_of_day` on: the next whole `per` starting with the
    first month that has not begun (the as-of month itself when it is its first day)."""
    if per not in PERIOD_MONTHS:
        raise UsageError(f"per must be one of {', '.join(PERIOD_MONTHS)}, got {per!r}")
    first = Period(as_of_day.year, as_of_day.month)
    if as_of_day.day != 1:
        first = first.next()
    last = first
    for _ in range(PERIOD_MONTHS[per] - 1):
        last = last.next()
    return first, last


def commitment_options(eligible: Mapping[str, np.ndarray], levels: Sequence[Decimal],
                       discount_percent: Decimal) -> list[CommitmentOption]:
    """The options from each group's eligible spend over the window per sample path
    (1-D arrays of one length, USD): per level, the TOTAL row then one row per group."""
    d = float(discount_percent) / 100
    names = list(eligible)
    if not names:
        return []
    n = len(next(iter(eligible.values())))
    total = np.sum([eligible[g] for g in names], axis=0) if names else np.zeros(n)
    mean_total = float(total.mean())
    out = []
    for level in levels:
        x = float(level)
        true_up = np.maximum(0.0, x - total * (1 - d))
        saving = total * d - true_up
        out.append(_option(level, TOTAL, total, saving, true_up > 0, true_up))
        for g in names:
            e = eligible[g]
            with np.errstate(invalid="ignore", divide="ignore"):
                part = np.where(total > 0, e / np.where(total > 0, total, 1),
                                1 / len(names))
            g_true_up = true_up * part
            share = float(e.mean()) / mean_total if mean_total > 0 else 1 / len(names)
            short = e * (1 - d) < x * share
            out.append(_option(level, g, e, e * d - g_true_up, short, g_true_up))
    return out


def _option(level: Decimal, group: str, eligible: np.ndarray, saving: np.ndarray,
            short: np.ndarray, true_up: np.ndarray) -> CommitmentOption:
    return CommitmentOption(
        level=level, group=group, expected_eligible=to_cents(float(eligible.mean())),
        expected_saving=to_cents(float(saving.mean())),
        saving_p10=to_cents(float(np.percentile(saving, 10))),
        saving_p90=to_cents(float(np.percentile(saving, 90))),
        p_underused=float(short.mean()), expected_true_up=to_cents(float(true_up.mean())))


def _eligible_share(con: duckdb.DuckDBPyConnection, by: str, table: str, end: date,
                    meters: Sequence[str], models: Sequence[str]) -> dict[str, Decimal]:
    """Each group's share of list spend on the eligible meters/models, last 90 days (exact)."""
    install_sql_macros(con)
    rows = con.execute(f"""
        SELECT {GROUP_SQL[by]} AS grp, sum(amount_units) AS whole,
               coalesce(sum(amount_units) FILTER (
                   WHERE (len($meters) = 0 OR list_contains($meters, meter))
                     AND (len($models) = 0 OR list_contains($models, model))), 0) AS eligible
        FROM {table} WHERE day >= $start AND day < $end GROUP BY ALL
    """, {"meters": list(meters), "models": list(models),
          "start": end - timedelta(days=ELIGIBLE_DAYS), "end": end}).fetchall()
    return {str(g): (Decimal(int(e)) / Decimal(int(w))) if w else Decimal(0)
            for g, w, e in rows}


def commitment_outlook(con: duckdb.DuckDBPyConnection, levels: Sequence[Decimal], *,
                       discount_percent: Decimal, as_of_ms: int, per: str = "month",
                       meters: Sequence[str] = (), models: Sequence[str] = (),
                       by: str = "team", table: str = "charges", n_paths: int = 2000,
                       seed: int = 0) -> CommitmentOutlook:
    """Each commitment level's expected net saving and chance of a true-up, per group of
    `by` (a key of GROUP_SQL) and in total, from the forecast of relation `table` (module
    docstring)."""
    if by not in GROUP_SQL:
        raise UsageError(f"unknown group {by!r}; choose from {', '.join(GROUP_SQL)}")
    if not levels or any(level <= 0 for level in levels):
        raise UsageError("commitment levels must be positive amounts, e.g. 30000,40000")
    if not Decimal(0) <= discount_percent <= 100:
        raise UsageError(f"a commitment discount is 0 to 100 percent, got {discount_percent}")
    as_of_day = datetime.fromtimestamp(as_of_ms / 1000, UTC).date()
    first, last = window_of(as_of_day, per)
    start, end = first.start, last.end
    offset, days = (start - as_of_day).days, (end - start).days
    history = daily_series(con, by, table=table, end=as_of_day)
    shares = _eligible_share(con, by, table, as_of_day, meters, models)
    notes = []
    eligible: dict[str, np.ndarray] = {}
    # the same reconciled forecasts as `forecast --by` and `budgets`: the groups' sample paths
    # add up to the organisation's, so the total's odds are those of the groups together
    coherent = forecast_store(con, by, offset + days, end=as_of_day, table=table,
                              n_paths=n_paths, seed=seed)
    for group in history.columns:
        fc = coherent.get(str(group)) if by != "total" else coherent.total
        window = fc.paths[:, offset:offset + days].sum(axis=1)
        eligible[str(group)] = window * float(shares.get(str(group), Decimal(0)))
        if fc.method.startswith(("fallback", "none")):
            notes.append(f"{group}: {fc.note}")
    if not eligible:
        notes.append("no usage before the as-of day: nothing to forecast")
    notes.append(f"the {by} forecasts are reconciled with the organisation's (they add up "
                 f"on every sample path)" if by != "total" else
                 "the organisation's forecast, reconciled with its teams")
    options = commitment_options(eligible, levels, discount_percent)
    window = str(first) if first == last else f"{first}..{last}"
    return CommitmentOutlook(window=window, start=start, end=end,
                             discount_percent=discount_percent, per=per, by=by,
                             options=options, eligible_share=shares, notes=notes,
                             meters=tuple(meters))
