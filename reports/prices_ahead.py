"""Prices known ahead: the price books in force on each future day, applied to a forecast.

A forecast of cost is a forecast of usage times prices, and the prices are known: a price
book version with a future effective date (data/pricebooks/) says what every SKU will cost
from that day. So the forecast works on usage valued at one set of prices, and prices it day
by day:

1. ``revalued_view``: the history's charges re-valued at the prices in force on the origin
   day (each line's amount x origin rate / the rate it was billed at), so a price change in
   the past is not mistaken for a change in usage (a jump the model would extrapolate);
2. the usage forecast is made on that series (reports.forecast);
3. ``PricesAhead.factors``: for each group, each future day's cost of the group's recent
   usage mix (its last ``MIX_DAYS`` days, valued at origin prices) at that day's prices,
   relative to the origin's; the forecast's paths are multiplied by it, so a scheduled price
   change moves the forecast on its effective date and by the share of the mix it touches.

A SKU's rate in another book is the same variant (standard, fast, long-context) of the same
model and token class; data-residency and other multipliers carry over unchanged. A model a
book does not price keeps its origin rate (the usage would be unrated there: the rating
engine reports it). Statistics only: floats, never money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import duckdb
import numpy as np
import pandas as pd

from meter.vocabulary import DAY_MS, GROUP_SQL
from pricing.pricebook import ModelPrice, PriceBook, TokenRates

__all__ = ["MIX_DAYS", "PriceChange", "PricesAhead", "book_on", "prices_ahead",
           "revalued_view"]

MIX_DAYS = 28  # the recent usage mix the future prices are applied to: four weekly cycles
_KEY = ("meter", "model", "token_class", "tier", "unit_price", "book", "book_version")


@dataclass(frozen=True)
class PriceChange:
    """A price book version that takes effect within the forecast, and what it does to the
    organisation's usage mix (cost at its prices / cost at the origin's, minus one)."""

    day: date
    book: str
    version: str
    effect: float


@dataclass(frozen=True)
class PricesAhead:
    origin: date
    origin_book: str  # "name version" in force on the origin day
    factors: dict[str, np.ndarray]  # group -> (horizon,) multiplier on origin-price cost
    changes: list[PriceChange] = field(default_factory=list)

    def factor(self, group: str) -> np.ndarray:
        return self.factors.get(group, self.factors["total"])


def _midday_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) \
        + DAY_MS // 2


def book_on(books: Sequence[PriceBook], day: date) -> PriceBook | None:
    """The book in force at noon UTC on ``day``: the latest effective among those covering it."""
    covering = [b for b in books if b.covers(_midday_ms(day))]
    return max(covering, key=lambda b: b.effective_from_ms) if covering else None


def _variant(model: ModelPrice, tier: str, unit_price: Decimal, token_class: str
             ) -> TokenRates | None:
    """Which of the model's rate sets billed ``unit_price``: long-context by its tier, fast
    when its rate (or that rate times the data-residency multiplier) is the line's price."""
    if tier == "long_context":
        return model.long_context
    if model.fast is not None:
        fast = model.fast.rate(token_class)
        if unit_price in (fast, fast * model.geo_multiplier) and \
                unit_price not in (model.rate(token_class),
                                   model.rate(token_class) * model.geo_multiplier):
            return model.fast
    return model.standard


def _rate(book: PriceBook, line_book: PriceBook | None, key: tuple) -> float | None:
    """The rate ``book`` charges for the SKU of a charge line, in the line's unit, relative to
    nothing (a $/hour, $/1000 or $/MTok number); None when the book does not price it."""
    meter, model_id, token_class, tier, unit_price, _, _ = key
    if meter == "runtime":
        return float(book.runtime.usd_per_session_hour)
    if meter == "web_search":
        return float(book.web_search.usd_per_1000)
    if line_book is None or model_id is None or token_class is None:
        return None
    line_model, target = line_book.resolve(model_id), book.resolve(model_id)
    if line_model is None or target is None:
        return None
    variant = _variant(line_model, tier, Decimal(unit_price), token_class)
    name = "long_context" if variant is line_model.long_context else \
        "fast" if variant is line_model.fast else "standard"
    rates = {"standard": target.standard, "fast": target.fast,
             "long_context": target.long_context}[name]
    if rates is None or variant is None:
        return None
    return float(rates.rate(token_class)) / float(variant.rate(token_class)) \
        * float(unit_price)


def _ratios(keys: pd.DataFrame, books: Sequence[PriceBook], target: PriceBook | None
            ) -> np.ndarray:
    """Per key: target book's rate / the rate the line was billed at (1 when unknown)."""
    by_version = {(b.name, b.version): b for b in books}
    out = np.ones(len(keys))
    if target is None:
        return out
    for i, key in enumerate(keys[list(_KEY)].itertuples(index=False, name=None)):
        unit_price = key[4]
        line_book = by_version.get((key[5], key[6]))
        rate = _rate(target, line_book, key)
        if rate is not None and unit_price:
            out[i] = rate / float(unit_price)
    return out


def revalued_view(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook], origin: date,
                  *, table: str = "charges", name: str = "charges_at_origin_prices") -> str:
    """A temp view of ``table`` whose ``amount_units`` are valued at the prices in force on
    ``origin`` (see the module's note); returns its name, or ``table`` itself when every line
    was billed at those prices already."""
    first = con.execute(f"SELECT min(day) FROM {table}").fetchone()
    base = book_on(books, origin)
    if first is None or first[0] is None or (
            base is not None and all(book_on(books, first[0] + timedelta(days=d)) is base
                                     for d in range((origin - first[0]).days + 1))):
        return table  # one book priced the whole history, the origin's: nothing to re-value
    keys = con.execute(f"SELECT DISTINCT {', '.join(_KEY)} FROM {table}").df()
    keys["ratio"] = _ratios(keys, books, book_on(books, origin))
    if bool((keys["ratio"] == 1.0).all()):
        return table  # every line was billed at the origin's prices: nothing to re-value
    con.register("_price_ratios", keys)
    con.execute("CREATE OR REPLACE TEMP TABLE _price_ratio_table AS "
                "SELECT * FROM _price_ratios")
    con.unregister("_price_ratios")
    join = " AND ".join(f"c.{k} IS NOT DISTINCT FROM r.{k}" for k in _KEY)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW {name} AS
        SELECT c.* REPLACE (
            CAST(round(c.amount_units * coalesce(r.ratio, 1.0)) AS HUGEINT) AS amount_units)
        FROM {table} c LEFT JOIN _price_ratio_table r ON {join}
    """)
    return name


def prices_ahead(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook], by: str,
                 origin: date, horizon: int, *, table: str = "charges") -> PricesAhead:
    """Per group of ``by`` (and "total"): each of the ``horizon`` days from ``origin``, the
    cost of the group's recent usage mix at that day's prices / at the origin's."""
    days = [origin + timedelta(days=h) for h in range(horizon)]
    in_force = [book_on(books, d) for d in days]
    base = book_on(books, origin)
    label = "none" if base is None else f"{base.name} {base.version}"
    if all(book is base for book in in_force):  # no book takes effect: every factor is 1
        return PricesAhead(origin=origin, origin_book=label,
                           factors={"total": np.ones(horizon)})
    start = origin - timedelta(days=MIX_DAYS)
    mix = con.execute(f"""
        SELECT {GROUP_SQL[by]} AS grp, {', '.join(_KEY)}, sum(amount_units)::DOUBLE AS units
        FROM {table} WHERE day >= $start AND day < $origin GROUP BY ALL
    """, {"start": start, "origin": origin}).df()
    units = mix["units"].to_numpy()
    origin_cost = units * _ratios(mix, books, base)
    distinct: dict[tuple[str, str] | None, np.ndarray] = {}  # the mix's cost at each book's prices
    for book in in_force:
        ident = None if book is None else (book.name, book.version)
        if ident not in distinct:
            distinct[ident] = units * _ratios(mix, books, book)
    groups = ["total", *sorted({str(g) for g in mix["grp"]} - {"total"})]
    factors: dict[str, np.ndarray] = {}
    for group in groups:
        keep = np.ones(len(mix), bool) if group == "total" else (mix["grp"] == group).to_numpy()
        now = origin_cost[keep].sum()
        per_book = {ident: (cost[keep].sum() / now if now > 0 else 1.0)
                    for ident, cost in distinct.items()}
        factors[group] = np.array([per_book[None if b is None else (b.name, b.version)]
                                   for b in in_force])
    changes = []
    for h in range(1, horizon):
        if in_force[h] is not None and in_force[h] is not in_force[h - 1]:
            book = in_force[h]
            assert book is not None
            changes.append(PriceChange(days[h], book.name, book.version,
                                       float(factors["total"][h] / factors["total"][h - 1] - 1)))
    return PricesAhead(origin=origin, origin_book=label, factors=factors, changes=changes)
