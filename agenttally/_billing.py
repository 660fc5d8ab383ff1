"""Rating and the reports priced from it: invoice, chargeback, what-if.

Each function takes an open `Store`, an `as_of` instant (RFC 3339 text, epoch ms, or None for
now) and a period where it needs one (`Period` or `YYYY-MM` text), rates the store's usage as
of that instant with the price books in force, and returns a typed result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from agenttally._lake import lake_as_of
from agenttally._store import Store
from meter.errors import UsageError
from meter.vocabulary import GROUP_SQL, Period, iso_ms, to_epoch_ms
from pricing.contracts import ContractSet, load_contracts
from pricing.ledger import RatingRun, bring_up_to_date, last_run, overlay
from pricing.pricebook import PriceBook, default_pricebook_dir, load_pricebooks
from pricing.rating import RatingOptions
from pricing.scenario import Scenario, load_scenario
from pricing.whatif import Comparison, ComparisonRow, WhatIf, compare, period_months, run_whatif
from reports.allocation import AllocationRules
from reports.chargeback import (
    Chargeback,
    DimensionError,
    build_chargeback,
    check_dimensions,
    known_tag_keys,
)
from reports.closing import Issued, LatePolicy, close_period, closed_periods, invoice_of
from reports.invoice import DEFAULT_GROUP_BY, Invoice
from reports.statement import compare_contracts
from reports.statement import contract_statement as statement_of

if TYPE_CHECKING:
    import duckdb

    from pricing.contracts import Statement

__all__ = ["RatingRun", "WhatIfReport", "chargeback", "check_whatif_group", "close",
           "contract_statement", "invoice", "rate", "whatif", "whatif_report", "with_contracts"]

Instant = str | int | None
ContractArg = ContractSet | str | Path | None


def _contracts(contract: ContractArg) -> ContractSet | None:
    """A contract set as given, or loaded from its file or folder (None: no contract)."""
    if contract is None or isinstance(contract, ContractSet):
        return contract
    return load_contracts(contract)


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
         span_cache_ttl: str | None = None, full: bool = False) -> RatingRun:
    """Bring the store's ledger of charges up to `as_of`: only the sessions that changed since
    the last run are rated again (`full`: everything), in one transaction. On a read-only
    store the result stays on the connection (temp `charges` and `unrated`) for the reports
    that follow."""
    options = RatingOptions(as_of_ms=to_epoch_ms(as_of), span_cache_ttl=span_cache_ttl)
    books = _books(pricebooks)
    if store.read_only:
        return overlay(store.connection, books, options, full=full)
    return bring_up_to_date(store.connection, books, options, full=full,
                            closed=closed_periods(store.connection))


def invoice(store: Store, period: Period | str | None = None, *, as_of: Instant = None,
            group_by: Sequence[str] = DEFAULT_GROUP_BY,
            pricebooks: str | Path | Sequence[PriceBook] | None = None,
            span_cache_ttl: str | None = None, contract: ContractArg = None) -> Invoice:
    """The invoice of `period` (default: the month of `as_of`): for a closed period the
    issued document as stored; else its lines from the ledger as of `as_of`, with the
    corrections of closed periods billed in it. Under `contract` (a ContractSet, or a
    contract file or folder) the invoice carries the statement: the list amount, each
    adjustment, the amount due, credit balances and commitment use."""
    contracts = _contracts(contract)  # a bad contract file is refused before any work
    as_of_ms = to_epoch_ms(as_of) if store.lake_as_of_ms is None else lake_as_of(store, as_of)
    chosen = _period(period, as_of_ms)
    closed = chosen in closed_periods(store.connection)
    if not closed or contracts is not None:
        _rated(store, as_of_ms, pricebooks, span_cache_ttl)
    bill = invoice_of(store.connection, chosen, as_of=iso_ms(as_of_ms),
                      group_by=tuple(group_by))
    if contracts is None:
        return bill
    return replace(bill, contract=statement_of(store.connection, contracts, str(chosen)))


def contract_statement(store: Store, contracts: ContractSet | str | Path,
                       period: Period | str | None = None, *,
                       as_of: Instant = None,
                       pricebooks: str | Path | Sequence[PriceBook] | None = None) -> Statement:
    """The statement of `period` under `contracts`: list amount, adjustment lines, amount due,
    credit balances and commitment use (the months before it are run too, so balances
    carry)."""
    chosen_set = _contracts(contracts)
    assert chosen_set is not None
    as_of_ms = _rated(store, as_of, pricebooks, None)
    return statement_of(store.connection, chosen_set, str(_period(period, as_of_ms)))


def close(store: Store, period: Period | str, *, as_of: Instant = None,
          pricebooks: str | Path | Sequence[PriceBook] | None = None,
          span_cache_ttl: str | None = None,
          early: bool = False, allow_running: bool = False, reissue: bool = False,
          policy: LatePolicy | None = None) -> Issued:
    """Close `period`: bring the ledger up to `as_of` (default now) and issue the period's
    invoice, stored and never changed after (see reports.closing for the late-usage policy);
    `reissue` issues a new version of a closed one with a note against the old."""
    if store.read_only:
        raise UsageError("closing a period writes the store: open it writable")
    now_ms = to_epoch_ms(None)
    as_of_ms = to_epoch_ms(as_of) if as_of is not None else now_ms
    run = rate(store, as_of=as_of_ms, pricebooks=pricebooks, span_cache_ttl=span_cache_ttl)
    chosen = period if isinstance(period, Period) else Period.parse(period)
    return close_period(store.connection, chosen, as_of_ms=as_of_ms, now_ms=now_ms,
                        books=run.books, policy=policy or LatePolicy.from_settings(),
                        early=early, allow_running=allow_running, reissue=reissue)


def chargeback(store: Store, period: Period | str | None = None, *,
               by: Sequence[str] = ("team",), rules: AllocationRules | None = None,
               showback: bool = False, as_of: Instant = None,
               pricebooks: str | Path | Sequence[PriceBook] | None = None,
               span_cache_ttl: str | None = None, contract: ContractArg = None) -> Chargeback:
    """Who spent the invoice of `period`: its cents apportioned to groups of tag values
    (`by`: tag keys, or `tag:<key>`), shared costs redistributed by `rules` unless `showback`.

    A bare key that no session, agent or environment of the store carries raises
    `DimensionError` (a `UsageError`) naming it and the keys the store knows, before anything
    is rated; `tag:<key>` groups by it anyway. A key no charge of the period carries is
    reported in the result's `warnings`. Under `contract` (a ContractSet, or a contract
    file or folder), each group also gets its share of the contract's adjustments and its
    internal rate, and the groups' `net` adds up to the amount due (reports.chargeback)."""
    contracts = _contracts(contract)
    check_dimensions(store.connection, by, rules)
    as_of_ms = _rated(store, as_of, pricebooks, span_cache_ttl)
    return build_chargeback(store.connection, str(_period(period, as_of_ms)), by=by,
                            rules=rules, mode="showback" if showback else "chargeback",
                            as_of=iso_ms(as_of_ms), contract=contracts)


@dataclass(frozen=True)
class WhatIfReport:
    """What `agenttally whatif` shows: the scenario, the instant its usage was rated to, and
    the comparison with the baseline (per meter, per group, under the contracts)."""

    scenario: Scenario
    as_of_ms: int
    comparison: Comparison

    @property
    def period(self) -> str | None:
        return self.comparison.period

    def total(self) -> ComparisonRow:
        """Both sides' totals (sums of the rounded lines), as one row of meter "total"."""
        c = self.comparison
        return ComparisonRow(None, "total", c.baseline_total, c.scenario_total)

    def by_group(self) -> list[ComparisonRow]:
        """The rows summed over meters, one per group in the comparison's order (meter
        "total"; group "" for the rows of no group)."""
        merged: dict[str, list[Decimal]] = {}
        for row in self.comparison.rows:
            pair = merged.setdefault(row.group or "", [Decimal("0.00"), Decimal("0.00")])
            pair[0] += row.baseline
            pair[1] += row.scenario
        return [ComparisonRow(g, "total", b, s) for g, (b, s) in merged.items()]


def whatif_report(store: Store, scenario: Scenario | str | Path, *, period: str | None = None,
                  by: str | None = None, as_of: Instant = None,
                  pricebooks: str | Path | Sequence[PriceBook] | None = None,
                  span_cache_ttl: str | None = None,
                  contract: ContractArg = None) -> WhatIfReport:
    """The same usage re-rated under `scenario` (a Scenario or its TOML file), side by side
    with the baseline (the invoices) in `period` (YYYY-MM, YYYY-Qn, YYYY or all; default the
    month of `as_of`), per meter and per `by` group (a key of meter.vocabulary.GROUP_SQL;
    a tag group no session carries raises `DimensionError` before anything is rated, see
    `check_whatif_group`). Under `contract` (or a scenario with a [contract] section) the
    comparison's `contract` also compares the amounts due under each side's contract."""
    contracts = _contracts(contract)
    chosen = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    as_of_ms = to_epoch_ms(as_of)
    books = _books(pricebooks)
    check_whatif_group(store.connection, by)
    result = run_whatif(store.connection, books, chosen,
                        RatingOptions(as_of_ms=as_of_ms, span_cache_ttl=span_cache_ttl))
    comparison = compare(store.connection, by=by,
                         period=period or str(Period.containing(as_of_ms)), what_if=result)
    return WhatIfReport(scenario=chosen, as_of_ms=as_of_ms,
                        comparison=with_contracts(store.connection, comparison, result,
                                                  contracts))


def whatif(store: Store, scenario: Scenario | str | Path, *, period: str | None = None,
           by: str | None = None, as_of: Instant = None,
           pricebooks: str | Path | Sequence[PriceBook] | None = None,
           span_cache_ttl: str | None = None, contract: ContractArg = None) -> Comparison:
    """The comparison of :func:`whatif_report`: baseline vs `scenario` per meter (and `by`
    group) in `period`, with the amounts due under the contracts when given."""
    return whatif_report(store, scenario, period=period, by=by, as_of=as_of,
                         pricebooks=pricebooks, span_cache_ttl=span_cache_ttl,
                         contract=contract).comparison


def with_contracts(con: duckdb.DuckDBPyConnection, comparison: Comparison, result: WhatIf,
                   contracts: ContractSet | None) -> Comparison:
    """The comparison with the amounts due under the baseline's contract and the scenario's
    (the baseline's with the scenario's [contract] terms); unchanged without either."""
    changes = result.scenario.contract
    if contracts is None and changes is None:
        return comparison
    scenario_side = changes.apply(contracts, name=result.scenario.name) if changes else contracts
    months = period_months(comparison.period) or [r[0] for r in con.execute(
        f"SELECT DISTINCT period FROM {result.baseline_table} WHERE period IS NOT NULL "
        "ORDER BY 1").fetchall()]
    both = compare_contracts(con, contracts, scenario_side, months,
                             baseline_table=result.baseline_table,
                             scenario_table=result.scenario_table)
    return replace(comparison, contract=both)


# What-if groups read from the sessions' tags (charges carry the session's metadata as
# `tags`); the others (total, meter, model, agent, environment) always have their values.
WHATIF_TAG_GROUPS = ("team", "project")


def check_whatif_group(con: duckdb.DuckDBPyConnection, by: str | None) -> None:
    """Refuse a what-if tag group (team, project) that no session of the store carries:
    grouping by it would put every cent in '(none)' without a word. Raises `DimensionError`
    naming the key and the tag keys the sessions do carry, as chargeback does; a store
    without sessions refuses nothing."""
    if by not in WHATIF_TAG_GROUPS or not con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1)").fetchall()[0][0]:
        return
    known = known_tag_keys(con, ("session",))
    if by in known:
        return
    carried = (f"their tag keys: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''}"
               if known else "none carries any tag")
    others = [g for g in GROUP_SQL if g not in WHATIF_TAG_GROUPS]
    raise DimensionError(
        by, f"{by!r} is not a tag key of any session in the store ({carried}); a what-if "
            f"groups by {' or '.join(WHATIF_TAG_GROUPS)} tags, or by {', '.join(others)}",
        known=known)


def _rated(store: Store, as_of: Instant, pricebooks: str | Path | Sequence[PriceBook] | None,
           span_cache_ttl: str | None) -> int:
    """Make `charges` and `unrated` on the store's connection the ledger as of `as_of`: a
    writable store's ledger is brought forward (stored), else the stale sessions are rated on
    the connection only. Returns the as-of."""
    if store.lake_as_of_ms is not None:  # a lake's charges: rated already (agenttally._lake)
        return lake_as_of(store, as_of)
    options = RatingOptions(as_of_ms=to_epoch_ms(as_of), span_cache_ttl=span_cache_ttl)
    books = _books(pricebooks)
    covered = None if store.read_only else last_run(store.connection)
    if not store.read_only and (covered is None or options.as_of_ms >= covered.as_of_ms):
        bring_up_to_date(store.connection, books, options,
                         closed=closed_periods(store.connection))
    else:
        overlay(store.connection, books, options)
    return options.as_of_ms
