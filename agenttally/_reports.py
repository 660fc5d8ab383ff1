"""Reports other tools read: exports to CSV / Parquet, and the reconciliation with the
provider's cost report.

Each function takes an open `Store`, an `as_of` instant (RFC 3339 text, epoch ms, or None for
now) and a period (`Period` or `YYYY-MM` text; default the month of `as_of`), brings the
store's charges up to `as_of` with the price books in force (a lake's charges as rated), and
returns a typed result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from meter.errors import UsageError
from meter.vocabulary import Period, iso_ms

if TYPE_CHECKING:  # the engines load when a report runs: the CLI reads EXPORTS for --help
    from agenttally._billing import ContractArg, Instant
    from agenttally._store import Store
    from pricing.pricebook import PriceBook
    from reports.allocation import AllocationRules
    from reports.reconcile import Reconciliation

__all__ = ["EXPORTS", "ExportResult", "export", "reconcile"]

# What `export` writes: the charge lines, the unrated usage, a FOCUS 1.2 dataset, the invoice
# or the chargeback.
EXPORTS = ("charges", "unrated", "focus", "invoice", "chargeback")


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote: which export, the file, the period and how many rows."""

    what: str
    path: Path
    period: str
    rows: int


def export(store: Store, what: str, path: str | Path, *, period: Period | str | None = None,
           fmt: str | None = None, as_of: Instant = None,
           pricebooks: str | Path | Sequence[PriceBook] | None = None,
           span_cache_ttl: str | None = None, contract: ContractArg = None,
           by: Sequence[str] = ("team",), rules: AllocationRules | None = None,
           showback: bool = False,
           billing_account_id: str = "anthropic-organization",
           billing_account_name: str = "Anthropic organization") -> ExportResult:
    """Write `what` (one of EXPORTS) of `period` to `path` as CSV or Parquet (`fmt`, else the
    file name's suffix): the charge lines or the unrated usage as stored, a FOCUS 1.2 dataset
    (Sum of BilledCost = the invoice total; the FOCUS billing account is `billing_account_id`
    and `_name`), the invoice, or the chargeback by `by` under `rules` (`showback`: shared
    costs left where they fall). Under `contract` (a ContractSet, or a contract file or
    folder) the FOCUS rows, the invoice and the chargeback carry the contract's adjustments.
    A chargeback key no record carries raises `DimensionError`."""
    from agenttally._billing import _contracts, _period, _rated
    from reports.exports import export_charges, export_unrated, write_rows

    if what not in EXPORTS:
        raise UsageError(f"export: expected one of {', '.join(EXPORTS)}, got {what!r}")
    contracts = _contracts(contract)
    con = store.connection
    as_of_ms = _rated(store, as_of, pricebooks, span_cache_ttl)
    chosen = str(_period(period, as_of_ms))
    if what == "charges":
        n = export_charges(con, path, period=chosen, fmt=fmt)
    elif what == "unrated":
        n = export_unrated(con, path, period=chosen, fmt=fmt)
    elif what == "focus":
        from reports.focus import FocusOptions, write_focus
        n = write_focus(con, chosen, path, fmt=fmt, contract=contracts,
                        options=FocusOptions(billing_account_id, billing_account_name))
    elif what == "invoice":
        from reports.closing import invoice_of
        from reports.invoice import invoice_table
        # the invoice `agenttally invoice` shows: the issued document of a closed month, an
        # open month's lines with the corrections of closed months billed in it
        bill = invoice_of(con, Period.parse(chosen), as_of=iso_ms(as_of_ms))
        if contracts is not None:
            from reports.statement import contract_statement
            bill = replace(bill, contract=contract_statement(con, contracts, chosen))
        columns, rows = invoice_table(bill)
        n = write_rows(columns, rows, path, fmt=fmt)
    else:
        from reports.allocation import load_rules
        from reports.chargeback import build_chargeback, check_dimensions
        chosen_rules = rules if rules is not None else load_rules(None)
        check_dimensions(con, by, chosen_rules)
        report = build_chargeback(con, chosen, by=by, rules=chosen_rules,
                                  mode="showback" if showback else "chargeback",
                                  as_of=iso_ms(as_of_ms), contract=contracts)
        n = write_rows(report.columns(), report.rows(), path, fmt=fmt)
    return ExportResult(what=what, path=Path(path), period=chosen, rows=n)


def reconcile(store: Store, period: Period | str | None = None, *,
              provider: Sequence[str | Path] = (), admin_key: str | None = None,
              save_provider: str | Path | None = None,
              tolerance_usd: Decimal | str = Decimal("0.01"),
              tolerance_pct: Decimal | str = Decimal("1"), detail: bool = False,
              workspace: str | None = None, as_of: Instant = None,
              pricebooks: str | Path | Sequence[PriceBook] | None = None,
              span_cache_ttl: str | None = None) -> Reconciliation:
    """The metered cost of `period` beside the provider's cost report, per day x model x cost
    type (`detail`: x token type too) for the days up to `as_of`: the reports read from the
    `provider` files (the Admin API's cost and usage report JSON) and, with `admin_key` (an
    Admin API key), fetched for those days (`save_provider`: keep the fetched cost report as
    JSON). Rows whose variance exceeds both `tolerance_usd` (USD) and `tolerance_pct` (percent)
    are flagged; days the provider's report lacks are listed. `workspace`: only the provider's
    costs of that workspace id. The provider's reports stay on the store's connection as temp
    tables (reports.provider.load_into)."""
    from agenttally._billing import _period, _rated
    from reports.provider import fetch_reports, load_into, load_reports
    from reports.reconcile import reconcile as compare

    as_of_ms = _rated(store, as_of, pricebooks, span_cache_ttl)
    chosen = _period(period, as_of_ms)
    start = datetime.combine(chosen.start, datetime.min.time(), UTC)
    end = datetime.combine(chosen.end, datetime.min.time(), UTC)
    until = min(end, datetime.fromtimestamp(as_of_ms / 1000, UTC))
    through: date = (until - timedelta(milliseconds=1)).date()
    data = load_reports(provider)
    if admin_key is not None:
        data.extend(fetch_reports(admin_key, start, until, save_to=save_provider))
    if not data.sources:
        raise UsageError("no provider data: give the provider's cost report (the Admin API's "
                         "JSON) or an Admin API key to fetch it")
    load_into(store.connection, data)
    return compare(store.connection, str(chosen), through=through,
                   tolerance_usd=Decimal(tolerance_usd), tolerance_pct=Decimal(tolerance_pct),
                   detail=detail, workspace=workspace, sources=data.sources)
