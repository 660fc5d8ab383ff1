"""Verbs of the pricing side: rate, close, invoice, check."""

from __future__ import annotations

import argparse
import sys
from contextlib import AbstractContextManager
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import agenttally
from agenttally.cli import instant_arg, iso_ms, period_arg
from meter.vocabulary import LINE_KEYS
from reports.render import FORMATS, render

if TYPE_CHECKING:
    import duckdb


def rate_store(con: duckdb.DuckDBPyConnection, args: argparse.Namespace, *,
               full: bool = False) -> int:
    """Make `charges` and `unrated` on read-only `con` the ledger as of --as-of (sessions that
    changed since the last `rate` are rated on the connection only; `full`: every session,
    leaving the rating's work tables on the connection); returns the as-of.

    No verb calls it any more (`check` calls `agenttally.check`); kept while
    tests/app/test_cli_app.py patches it. Use `agenttally.rate` on a read-only store."""
    from meter.store import default_db_path
    store = agenttally.Store(path=Path(args.db or default_db_path()), connection=con,
                             read_only=True)
    run = agenttally.rate(store, as_of=args.as_of, pricebooks=args.pricebooks,
                          span_cache_ttl=args.span_cache_ttl, full=full)
    return run.as_of_ms


def cmd_rate(args: argparse.Namespace) -> int:
    if args.engine == "spark" or args.lake:
        return _rate_lake(args)
    if args.master:
        raise agenttally.UsageError(f"--master {args.master}: only with --engine spark")
    with agenttally.open_store(args.db) as store:
        run = agenttally.rate(store, as_of=args.as_of, pricebooks=args.pricebooks,
                              span_cache_ttl=args.span_cache_ttl, full=args.full)
    how = ("all sessions" if run.kind == "full"
           else f"{run.sessions_rated:,} changed session{'s' if run.sessions_rated != 1 else ''}")
    print(f"rated as of {run.as_of}: {run.charge_lines:,} charge lines, "
          f"{run.unrated_lines:,} unrated ({run.kind}: {how} in {run.elapsed_ms:,} ms)")
    for notice in run.notices:
        print(notice, file=sys.stderr)
    return 0


def _rate_lake(args: argparse.Namespace) -> int:
    from agenttally._lake import rate_on_spark
    if args.engine != "spark":
        raise agenttally.UsageError(f"--lake {args.lake}: a lake is rated on Spark; add "
                                    "--engine spark")
    if not args.lake:
        raise agenttally.UsageError("--engine spark needs --lake DIR (write one with "
                                    "`agenttally lake export --to DIR`)")
    if args.full:
        raise agenttally.UsageError("--full: a lake is always rated whole on Spark")
    run = rate_on_spark(args.lake, as_of=args.as_of, pricebooks=args.pricebooks,
                        master=args.master, span_cache_ttl=args.span_cache_ttl)
    print(f"rated {args.lake} on Spark ({run.master}) as of {iso_ms(run.as_of_ms)}: "
          f"{run.charge_lines:,} charge lines, {run.unrated_lines:,} unrated, "
          f"total {run.total} USD exact, periods {', '.join(run.periods) or 'none'} "
          f"in {run.elapsed_s:.1f} s")
    return 0


# What each way past a refusal means on the command line.
_OVERRIDES = {"early": ", or pass --early",
              "allow_running": ", or pass --allow-running to bill their time so far",
              "reissue": "; pass --reissue to issue a new version"}


def cmd_close(args: argparse.Namespace) -> int:
    from reports.closing import CloseRefused

    try:
        with agenttally.open_store(args.db) as store:
            issued = agenttally.close(store, args.period, as_of=args.as_of,
                                      pricebooks=args.pricebooks,
                                      span_cache_ttl=args.span_cache_ttl, early=args.early,
                                      allow_running=args.allow_running, reissue=args.reissue)
    except CloseRefused as exc:
        hint = _OVERRIDES.get(exc.override or "")
        raise agenttally.UsageError(f"--{exc.about}: {exc}{hint or ''}") from exc
    invoice = issued.invoice
    if args.format == "json":
        print(invoice.to_json())
    else:
        print(f"issued {issued.document_id}: {invoice.period} total {invoice.currency} "
              f"{invoice.total} as of {invoice.as_of} (sha256 {issued.sha256[:16]})")
    if issued.note is not None:
        note = issued.note
        print(f"{note['document']}: {note['kind'].replace('_', ' ')} of {note['total']} "
              f"against {note['against']}", file=sys.stderr if args.format == "json" else None)
    return 0


def contract_of(args: argparse.Namespace) -> agenttally.ContractSet | None:
    """The contract of --contract FILE|DIR, or None; a bad file is one line naming the flag,
    the file, the line and the field (exit status 2)."""
    if not getattr(args, "contract", None):
        return None
    try:
        return agenttally.load_contracts(args.contract)
    except agenttally.ContractError as exc:
        raise agenttally.UsageError(f"--contract: {exc}") from exc


def contract_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contract", metavar="FILE",
                   help="apply a contract: a contract TOML file or a folder of its versions "
                        "(credits, commitments, discounts, internal rates), e.g. "
                        "data/contracts/example-2026.toml")


def print_statement_tables(statement: agenttally.Statement) -> None:
    """Credit balances and commitment use under a contract, for people."""
    if statement.credits:
        print("\nCredit balances (drawn by priority, then earliest expiry, then id):")
        print(render(["grant", "priority", "start", "expires", "opening", "granted", "drawn",
                      "expired", "closing"],
                     [[b.grant_id, b.priority, b.start, b.expires, b.opening, b.granted,
                       b.drawn, b.expired, b.closing] for b in statement.credits]))
    if statement.commitments:
        print("\nCommitments:")
        print(render(["commitment", "window", "amount", "counted", "utilisation_%", "closes",
                      "true_up"],
                     [[u.commitment_id, u.window, u.amount, u.counted, u.utilisation_percent,
                       u.closes, u.true_up] for u in statement.commitments]))


def cmd_invoice(args: argparse.Namespace) -> int:
    from reports.invoice import MIXED_PRICE_NOTE, invoice_table
    group_by = tuple(g.strip() for g in args.group_by.split(",") if g.strip())
    contract = contract_of(args)
    with reading(args) as store:
        invoice = agenttally.invoice(store, args.period, as_of=args.as_of, group_by=group_by,
                                     pricebooks=args.pricebooks,
                                     span_cache_ttl=args.span_cache_ttl, contract=contract)
    period = invoice.period
    if args.format == "json":
        print(invoice.to_json())
        return 0
    columns, rows = invoice_table(invoice)
    if args.format == "csv":
        print(render(columns, rows, "csv"))
        return 0
    state = ("PROVISIONAL (sessions still running)" if invoice.provisional
             else "final" if invoice.lines else f"no usage in {period}")
    if invoice.status == "issued":
        state = (f"ISSUED v{invoice.version} {invoice.issued_at} (closed: never changes; "
                 "later usage is billed as corrections)")
    print(f"Invoice {period}  as of {invoice.as_of}  {invoice.currency}  {state}"
          + (f"  contract {invoice.contract.contract}" if invoice.contract is not None
             and invoice.contract.contract else ""))
    print(render(columns, rows))
    if invoice.contract is not None:
        print_statement_tables(invoice.contract)
    if any(line.unit_price is None for line in invoice.lines):
        print(MIXED_PRICE_NOTE)
    if invoice.unrated:
        print("\nUNRATED (no price; not in the total):")
        print(render(["model", "token_class", "quantity", "unit", "reason"],
                     [[u.model, u.token_class, u.quantity, u.unit, u.reason]
                      for u in invoice.unrated]))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    with agenttally.open_store(args.db, read_only=True) as store:
        check = agenttally.check(store, as_of=args.as_of, tolerance=args.tolerance,
                                 pricebooks=args.pricebooks,
                                 span_cache_ttl=args.span_cache_ttl)
    rows, flagged = check.rows, check.flagged
    shown = rows if args.all else flagged
    summary = (f"{len(rows):,} sessions compared with the provider's list_cost; "
               f"{len(flagged):,} differ by more than ${check.tolerance}")
    if not shown and args.format == "table":
        # an empty table reads like a failure: the answer is the count
        print(f"0 sessions differ by more than ${check.tolerance} "
              f"({len(rows):,} compared with the provider's list_cost)")
        return 0
    columns = [f.name for f in fields(agenttally.ListCostRow)]
    print(render(columns, [[r.session_id, iso_ms(r.snapshot_ms), r.provider_usd, r.engine_usd,
                            r.difference_usd, r.flagged] for r in shown], args.format))
    print(summary, file=sys.stderr)
    return 1 if flagged and args.strict else 0


def usd_arg(text: str) -> Decimal:
    """An amount in USD >= 0, e.g. 0.005."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"expected an amount in USD >= 0, e.g. 0.005, "
                                         f"got {text!r}")
    return value


def reading(args: argparse.Namespace) -> AbstractContextManager[agenttally.Store]:
    """The store a report reads: --lake DIR's rated charges, else the store (read-only)."""
    if getattr(args, "lake", None):
        from agenttally._lake import open_rated_lake
        return open_rated_lake(args.lake)
    return agenttally.open_store(args.db, read_only=True)


def lake_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", metavar="DIR",
                   help="read a lake's charges as rated by `rate --engine spark` instead of "
                        "the store")


def _rating_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-of", type=instant_arg,
                   help="rate usage up to this instant (default: now), e.g. "
                        "2026-12-01T00:00:00Z or 2026-12-01")
    p.add_argument("--pricebooks",
                   help="folder of price book TOML files (default: data/pricebooks)")
    p.add_argument("--span-cache-ttl", choices=("5m", "1h"), default=None,
                   help="TTL assumed for span cache writes (default: the book's, 5m)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from agenttally.cli import _add_common

    p = sub.add_parser("rate", help="bring the ledger of charges up to date",
                       description="Rate what changed since the last run (sessions with new "
                                   "events, open sessions, days of an edited price book) and "
                                   "store the charges; --full rates everything.",
                       epilog="example:\n  agenttally rate --as-of 2026-12-01",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    _rating_args(p)
    p.add_argument("--full", action="store_true",
                   help="rate every session again (default: only what changed since the "
                        "last run)")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="duckdb: the store (default); spark: a lake (--lake), the same rules "
                        "run by Apache Spark")
    p.add_argument("--lake", metavar="DIR",
                   help="the lake to rate with --engine spark; charges are written back to it")
    p.add_argument("--master", metavar="URL",
                   help="Spark master for --engine spark (default local[*]; spark://..., "
                        "yarn, k8s://...)")
    p.set_defaults(func=cmd_rate)

    p = sub.add_parser("close", help="close a month: issue its invoice, never to change",
                       description="Issue the invoice of a month that has ended and store "
                                   "it; later usage for it is billed as corrections in the "
                                   "next open month.",
                       epilog="examples:\n  agenttally close --period 2026-11\n"
                              "  agenttally close --period 2026-11 --reissue",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=True)
    p.add_argument("--period", type=period_arg, required=True, help="YYYY-MM, e.g. 2026-11")
    _rating_args(p)
    p.add_argument("--early", action="store_true",
                   help="close within the grace period after the month ends "
                        "(AGENTTALLY_GRACE_DAYS)")
    p.add_argument("--allow-running", action="store_true",
                   help="close although sessions are still running (their time so far)")
    p.add_argument("--reissue", action="store_true",
                   help="issue a new version of a closed month, with a credit or debit note")
    p.set_defaults(func=cmd_close)

    p = sub.add_parser("invoice", help="print the invoice of a month",
                       description="Invoice lines and total for a period, rounded half-even "
                                   "to the cent once per line; under --contract, the list "
                                   "amount, each adjustment (discounts, commitment discount, "
                                   "true-up, credits) and the amount due.",
                       epilog="examples:\n  agenttally invoice --period 2026-11 --format json\n"
                              "  agenttally invoice --period 2026-11 --contract "
                              "data/contracts/example-2026.toml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=True)
    _rating_args(p)
    p.add_argument("--period", type=period_arg,
                   help="YYYY-MM, e.g. 2026-11 (default: the month of --as-of)")
    p.add_argument("--group-by", default=",".join(LINE_KEYS),
                   help="comma list of meter,model,token_class,tier,team,project,session_id,"
                        "day,book_version")
    contract_arg(p)
    lake_arg(p)
    p.set_defaults(func=cmd_invoice)

    p = sub.add_parser("check", help="compare our cost with the provider's list_cost",
                       description="Per session, the engine's cost vs session.usage.list_cost.",
                       epilog="example:\n  agenttally check --all --format csv",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=True)
    _rating_args(p)
    p.add_argument("--tolerance", type=usd_arg, default=Decimal("0.005"),
                   help="USD difference to flag (0.005)")
    p.add_argument("--all", action="store_true", help="show every session, not only flagged")
    p.add_argument("--strict", action="store_true", help="exit 1 when any session is flagged")
    p.set_defaults(func=cmd_check)


_ = FORMATS
