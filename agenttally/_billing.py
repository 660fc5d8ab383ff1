"""Rating and the reports priced from it: invoice, chargeback, what-if.

Each function takes an open `Store`, an `as_of` instant (RFC 3339 text, epoch ms, or None for
now) and a period where it needs one (`Period` or `YYYY-MM` text), rates the store's usage as
of that instant with the price books in force, and returns a typed result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agenttally._store import Store
from meter.vocabulary import Period, iso_ms, to_epoch_ms
from pricing.pricebook import PriceBook, default_pricebook_dir, load_pricebooks
from pricing.rating import RatingOptions
from pricing.rating import rate as rate_usage
from pricing.scenario import Scenario, load_scenario
from pricing.whatif import Comparison, compare, run_whatif
from reports.allocation import AllocationRules
from reports.chargeback import Chargeback, build_chargeback
from reports.invoice import DEFAULT_GROUP_BY, Invoice, build_invoice

__all__ = ["RatingRun", "chargeback", "invoice", "rate", "whatif"]

Instant = str | int | None


@dataclass(frozen=True)
class RatingRun:
    """What one rating did: as of when, with which books, how many lines."""

    as_of_ms: int
    books: tuple[str, ...]  # name@version of each book loaded
    charge_lines: int
    unrated_lines: int
    stored: bool  # written to the store's `charges` (else only on the connection)

    @property
    def as_of(self) -> str:
        return iso_ms(self.as_of_ms)


def _period(value: Period | str | None, as_of_ms: int) -> Period:
    if value is None:
        return Period.containing(as_of_ms)
    return value if isinstance(value, Period) else Period.parse(value)


def _books(pricebooks: str | Path | Sequence[PriceBook] | None) -> list[PriceBook]:
    if pricebooks is None or isinstance(pricebooks, (str, Path)):
        return load_pricebooks(pricebooks or default_pricebook_dir())
    return list(pricebooks)


def rate(store: Store, *, as_of: Instant = None,
         pricebooks: str | Path | Sequence[PriceBook] | None = None,
         span_cache_ttl: str | None = None) -> RatingRun:
    """Rate all usage in `store` as of `as_of`. On a writable store the charges replace the
    stored ones (for the dashboard) in one transaction; on a read-only one they stay on the
    connection (temp `charges` and `unrated`), for the reports that follow."""
    as_of_ms = to_epoch_ms(as_of)
    books = _books(pricebooks)
    con = store.connection
    rate_usage(con, books, RatingOptions(as_of_ms=as_of_ms, span_cache_ttl=span_cache_ttl))
    counts = con.execute("SELECT (SELECT count(*) FROM temp.main.charges), "
                         "(SELECT count(*) FROM temp.main.unrated)").fetchall()[0]
    names = tuple(f"{n}@{v}" for n, v in con.execute(
        "SELECT name, version FROM pb_books ORDER BY book_id").fetchall())
    if not store.read_only:
        # The store's own catalog, spelled out: temp tables shadow `main.charges`.
        db = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute("BEGIN TRANSACTION")
        con.execute(f'DELETE FROM "{db}".main.charges')
        con.execute(f'INSERT INTO "{db}".main.charges SELECT * FROM temp.main.charges')
        con.execute(f'DELETE FROM "{db}".main.unrated_usage')
        con.execute(f'INSERT INTO "{db}".main.unrated_usage SELECT day, period, session_id, '
                    "meter, model, token_class, quantity, unit, reason FROM temp.main.unrated")
        con.execute("INSERT INTO rating_runs VALUES (?, ?, ?, ?, ?)",
                    [int(time.time() * 1000), as_of_ms, ",".join(names), counts[0], counts[1]])
        con.execute("COMMIT")
    return RatingRun(as_of_ms=as_of_ms, books=names, charge_lines=int(counts[0]),
                     unrated_lines=int(counts[1]), stored=not store.read_only)


def invoice(store: Store, period: Period | str | None = None, *, as_of: Instant = None,
            group_by: Sequence[str] = DEFAULT_GROUP_BY,
            pricebooks: str | Path | Sequence[PriceBook] | None = None,
            span_cache_ttl: str | None = None) -> Invoice:
    """The invoice of `period` (default: the month of `as_of`), rated as of `as_of`."""
    as_of_ms = _rated(store, as_of, pricebooks, span_cache_ttl)
    return build_invoice(store.connection, str(_period(period, as_of_ms)),
                         as_of=iso_ms(as_of_ms), group_by=tuple(group_by))


def chargeback(store: Store, period: Period | str | None = None, *,
               by: Sequence[str] = ("team",), rules: AllocationRules | None = None,
               showback: bool = False, as_of: Instant = None,
               pricebooks: str | Path | Sequence[PriceBook] | None = None,
               span_cache_ttl: str | None = None) -> Chargeback:
    """Who spent the invoice of `period`: its cents apportioned to groups of tag values
    (`by`), shared costs redistributed by `rules` unless `showback`."""
    as_of_ms = _rated(store, as_of, pricebooks, span_cache_ttl)
    return build_chargeback(store.connection, str(_period(period, as_of_ms)), by=by,
                            rules=rules, mode="showback" if showback else "chargeback",
                            as_of=iso_ms(as_of_ms))


def whatif(store: Store, scenario: Scenario | str | Path, *, period: str | None = None,
           by: str | None = None, as_of: Instant = None,
           pricebooks: str | Path | Sequence[PriceBook] | None = None) -> Comparison:
    """The same usage re-rated under `scenario` (a Scenario or its TOML file), side by side
    with the baseline (the invoices) in `period` (YYYY-MM, YYYY-Qn, YYYY or all; default the
    month of `as_of`), per meter and per `by` group."""
    as_of_ms = to_epoch_ms(as_of)
    chosen = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    result = run_whatif(store.connection, _books(pricebooks), chosen,
                        RatingOptions(as_of_ms=as_of_ms))
    return compare(store.connection, by=by, period=period or str(Period.containing(as_of_ms)),
                   what_if=result)


def _rated(store: Store, as_of: Instant, pricebooks: str | Path | Sequence[PriceBook] | None,
           span_cache_ttl: str | None) -> int:
    """Rate on the connection only (reports never rewrite the stored charges); the as-of."""
    as_of_ms = to_epoch_ms(as_of)
    rate_usage(store.connection, _books(pricebooks),
               RatingOptions(as_of_ms=as_of_ms, span_cache_ttl=span_cache_ttl))
    return as_of_ms
