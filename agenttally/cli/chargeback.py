"""Verbs for finance: chargeback (and showback), export, reconcile."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation

import agenttally
from agenttally._reports import EXPORTS
from agenttally.cli import period_arg
from agenttally.cli.pricing import (
    _rating_args,
    contract_arg,
    contract_of,
    lake_arg,
    print_statement_tables,
    reading,
)
from meter.errors import UsageError
from meter.settings import setting
from reports.render import EXPORT_FORMATS, render


def _decimal(text: str, option: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise UsageError(f"{option}: expected a number, got {text!r}") from None


@contextmanager
def _by_flag() -> Iterator[None]:
    """A grouping key the library refuses, said as the flag that gave it (exit status 2)."""
    from reports.chargeback import DimensionError
    try:
        yield
    except DimensionError as exc:
        raise UsageError(f"--by: {exc}") from exc


def cmd_chargeback(args: argparse.Namespace) -> int:
    from reports.allocation import load_rules
    from reports.exports import write_rows
    rules = load_rules(args.rules)
    contract = contract_of(args)
    with reading(args) as store, _by_flag():
        report = agenttally.chargeback(
            store, args.period, by=args.by.split(","), rules=rules,
            showback=args.showback, as_of=args.as_of, pricebooks=args.pricebooks,
            span_cache_ttl=args.span_cache_ttl, contract=contract)
    period = report.period
    if args.output:
        n = write_rows(report.columns(), report.rows(), args.output, fmt=args.to)
        print(f"{args.output}: {n:,} rows", file=sys.stderr)
    elif args.format == "json":
        print(report.to_json())
    elif args.format == "csv":
        print(render(report.columns(), report.rows(), "csv").rstrip("\n"))
    else:
        state = ("PROVISIONAL (sessions still running)" if report.provisional
                 else "final" if report.groups else f"no usage in {period}")
        print(f"{report.mode.capitalize()} {period} by {', '.join(report.by)}  as of "
              f"{report.as_of}  {report.currency}  {state}")
        print(render(report.columns(), report.rows()))
        print(f"\ninvoice total {report.invoice_total}; "
              + ("shared costs redistributed" if report.mode == "chargeback"
                 else "shared costs shown where they fall (showback)"))
        if report.statement is not None:
            print(f"contract {report.statement.contract}: amount due "
                  f"{report.statement.amount_due}; adjustments distributed in proportion to "
                  "each group's eligible spend (largest remainder to the cent); internal "
                  + ("rates charged to the groups and received by the recipient"
                     if report.internal_mode == "chargeback"
                     else "rates not charged (showback at cost)"))
            print_statement_tables(report.statement)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from reports.allocation import load_rules
    rules = load_rules(args.rules)
    contract = contract_of(args)
    with reading(args) as store, _by_flag():
        result = agenttally.export(
            store, args.what, args.output, period=args.period, fmt=args.to,
            as_of=args.as_of, pricebooks=args.pricebooks, span_cache_ttl=args.span_cache_ttl,
            contract=contract, by=args.by.split(","), rules=rules, showback=args.showback,
            billing_account_id=args.billing_account_id,
            billing_account_name=args.billing_account_name)
    print(f"{args.output}: {result.rows:,} {result.what} rows for {result.period}")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from reports.exports import write_rows
    from reports.provider import ADMIN_KEY_ENV
    tolerance = _decimal(args.tolerance, "--tolerance")
    tolerance_pct = _decimal(args.tolerance_pct, "--tolerance-pct")
    if not args.provider and not args.fetch:
        raise UsageError("no provider data: pass --provider FILE (the Admin API's cost "
                         f"report) or --fetch with ${ADMIN_KEY_ENV} set")
    key = setting(ADMIN_KEY_ENV) if args.fetch else None
    if args.fetch and not key:
        raise UsageError(f"--fetch needs an Admin API key in ${ADMIN_KEY_ENV}")
    with agenttally.open_store(args.db, read_only=True) as store:
        result = agenttally.reconcile(
            store, args.period, provider=args.provider or (), admin_key=key,
            save_provider=args.save_provider, tolerance_usd=tolerance,
            tolerance_pct=tolerance_pct, detail=args.detail, workspace=args.workspace,
            as_of=args.as_of, pricebooks=args.pricebooks, span_cache_ttl=args.span_cache_ttl)
    rows = result.table_rows(only_flagged=args.only_flagged)
    if args.output:
        write_rows(result.COLUMNS, rows, args.output, fmt=args.to)
        print(f"{args.output}: {len(rows):,} rows", file=sys.stderr)
    elif args.format == "json":
        print(result.to_json(only_flagged=args.only_flagged))
    else:
        print(render(result.COLUMNS, rows, args.format, places=_RECONCILE_PLACES).rstrip("\n"))
    for line in result.summary():
        print(line, file=sys.stderr)
    return 1 if args.strict and result.flagged else 0


# reconcile's money columns in a table, to a hundredth of a cent: the provider's own amounts
# carry sub-cent digits (e.g. 1.004), so cents would hide the variance the tolerance judges
_RECONCILE_PLACES = {"metered": 4, "provider": 4, "variance": 4}


def _verb(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str,
          description: str, example: str) -> argparse.ArgumentParser:
    from agenttally.cli import _add_common

    p = sub.add_parser(name, help=help_, description=description,
                       epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=name != "export")
    _rating_args(p)
    p.add_argument("--period", type=period_arg,
                   help="YYYY-MM, e.g. 2026-11 (default: the month of --as-of)")
    return p


def _allocation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", default="team",
                   help="comma list of tag keys to group by (default: team), e.g. team,project; "
                        "a key no session, agent or environment carries is refused unless "
                        "written tag:<key>")
    p.add_argument("--rules", help="allocation rules TOML (tag precedence, renames, shared "
                                   "costs); see data/allocation.toml")
    p.add_argument("--showback", action="store_true",
                   help="leave shared costs where they fall instead of redistributing them")


def _output_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("-o", "--output", required=required,
                   help="write to this file instead of printing (.csv or .parquet)")
    p.add_argument("--to", choices=EXPORT_FORMATS,
                   help="file format when the name does not say")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _verb(sub, "chargeback", "cost per team (or any tag), to the cent of the invoice",
              "Cost per group split by meter (runtime, tokens by model, web search), with share "
              "of total, sessions, running hours, tokens, cost per session and per running "
              "hour. The groups add up to the invoice total exactly.",
              "agenttally chargeback --period 2026-11 --by team,project "
              "--rules data/allocation.toml --format csv\n"
              "  agenttally chargeback --period 2026-11 --contract "
              "data/contracts/example-2026.toml")
    _allocation_args(p)
    contract_arg(p)
    _output_args(p)
    lake_arg(p)
    p.set_defaults(func=cmd_chargeback)

    p = _verb(sub, "export", "write charges, FOCUS 1.2 or a report to CSV / Parquet",
              "Export for other tools: the charge lines, the unrated usage, a FOCUS 1.2 "
              "dataset (Sum of BilledCost = the invoice total), the invoice or the chargeback.",
              "agenttally export focus --period 2026-11 -o focus-2026-11.parquet\n"
              "  agenttally export focus --period 2026-11 --contract "
              "data/contracts/example-2026.toml -o focus.csv")
    p.add_argument("what", choices=EXPORTS)
    contract_arg(p)
    _output_args(p, required=True)
    _allocation_args(p)
    p.add_argument("--billing-account-id", default="anthropic-organization",
                   help="FOCUS BillingAccountId (your Anthropic organization id)")
    p.add_argument("--billing-account-name", default="Anthropic organization",
                   help="FOCUS BillingAccountName")
    lake_arg(p)
    p.set_defaults(func=cmd_export)

    p = _verb(sub, "reconcile", "compare metered cost with the provider's cost report",
              "Metered vs provider cost per day x model x cost type (session_usage = runtime, "
              "tokens, web_search), with absolute and relative variance; rows beyond both "
              "tolerances are flagged, days the provider's report lacks are listed.",
              "agenttally reconcile --period 2026-11 --provider "
              "data/samples/provider_cost_report_2026-11.json")
    p.add_argument("--provider", nargs="+", metavar="FILE",
                   help="Admin API cost (and usage) report JSON files")
    p.add_argument("--fetch", action="store_true",
                   help="fetch both reports over the Admin API with $ANTHROPIC_ADMIN_KEY")
    p.add_argument("--save-provider", metavar="FILE",
                   help="with --fetch: keep the fetched cost report as JSON")
    p.add_argument("--workspace", help="only the provider's costs of this workspace id")
    p.add_argument("--tolerance", default="0.01", help="USD variance to tolerate (0.01)")
    p.add_argument("--tolerance-pct", default="1", help="relative variance to tolerate, in %% (1)")
    p.add_argument("--detail", action="store_true", help="one row per token type too")
    p.add_argument("--only-flagged", action="store_true", help="show flagged rows only")
    p.add_argument("--strict", action="store_true", help="exit 1 when any row is flagged")
    _output_args(p)
    p.set_defaults(func=cmd_reconcile)

