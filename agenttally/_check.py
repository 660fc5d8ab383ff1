"""Drift made visible: our rating of each session against the provider's own `list_cost`.

`check` takes an open `Store` and an `as_of` instant (RFC 3339 text, epoch ms, or None for
now), rates every session on the store's connection (the stored ledger is left as it is) and
returns a typed `ListCostCheck` (pricing.check holds the comparison's SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from agenttally._billing import Instant, _books
from agenttally._store import Store
from meter.errors import UsageError
from meter.vocabulary import to_epoch_ms
from pricing.check import ListCostRow, list_cost_rows
from pricing.ledger import overlay
from pricing.pricebook import PriceBook
from pricing.rating import RatingOptions

__all__ = ["DEFAULT_TOLERANCE", "ListCostCheck", "ListCostRow", "check"]

# The provider rounds its list_cost to the nearest cent: up to half a cent apart is expected.
DEFAULT_TOLERANCE = Decimal("0.005")


@dataclass(frozen=True)
class ListCostCheck:
    """Every session with a list_cost, compared (largest difference first), as of an
    instant and within a tolerance in USD."""

    as_of_ms: int
    tolerance: Decimal
    rows: list[ListCostRow]

    @property
    def flagged(self) -> list[ListCostRow]:
        """The sessions that differ by more than the tolerance, or carry unrated usage."""
        return [r for r in self.rows if r.flagged]


def check(store: Store, *, as_of: Instant = None, tolerance: Decimal | str = DEFAULT_TOLERANCE,
          pricebooks: str | Path | Sequence[PriceBook] | None = None,
          span_cache_ttl: str | None = None) -> ListCostCheck:
    """Per session with a `list_cost` (the provider's cumulative cost at list prices, whole
    cents, at its last usage snapshot up to `as_of`): the provider's amount beside ours for
    the same usage, flagged when they differ by more than `tolerance` USD or when some of it
    has no price. Raises `UsageError` for a tolerance that is not an amount >= 0, or for a
    lake's charges (they carry no usage to price)."""
    try:
        limit = Decimal(tolerance)
    except InvalidOperation:
        limit = Decimal(-1)
    if not limit.is_finite() or limit < 0:
        raise UsageError(f"tolerance: expected an amount in USD >= 0, e.g. 0.005, got "
                         f"{str(tolerance)!r}")
    if store.lake_as_of_ms is not None:
        raise UsageError("the list_cost check prices each session's usage: open the store, "
                         "not a lake's rated charges")
    # The comparison reads the rating's priced usage of every session (token_priced): an
    # up-to-date ledger rates nothing and leaves none, so every session is rated on the
    # connection (the stored ledger is not written).
    options = RatingOptions(as_of_ms=to_epoch_ms(as_of), span_cache_ttl=span_cache_ttl)
    run = overlay(store.connection, _books(pricebooks), options, full=True)
    return ListCostCheck(as_of_ms=run.as_of_ms, tolerance=limit,
                         rows=list_cost_rows(store.connection, run.as_of_ms, str(tolerance)))
