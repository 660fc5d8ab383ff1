"""The lake verb: the store's usage as partitioned Parquet for Spark (meter.lake)."""

from __future__ import annotations

import argparse

import agenttally


def cmd_lake_export(args: argparse.Namespace) -> int:
    from agenttally._lake import export
    with agenttally.open_store(args.db, read_only=True) as store:
        result = export(store, args.to, pricebooks=args.pricebooks)
    print(f"{args.to}: {result.summary()}; events already in the lake were skipped")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from agenttally.cli import _add_common

    p = sub.add_parser("lake", help="the store's usage as a Parquet lake, for Spark",
                       description="A lake is the store's events as Hive-partitioned Parquet "
                                   "by UTC day (append-only, idempotent by event), with its "
                                   "sessions, agents, environments and price books; "
                                   "`agenttally rate --engine spark --lake DIR` rates it.",
                       epilog="examples:\n  agenttally lake export --to data/lake\n"
                              "  agenttally rate --engine spark --lake data/lake\n"
                              "  agenttally invoice --lake data/lake --period 2026-11",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="lake_command", required=True, metavar="ACTION")
    e = verbs.add_parser("export", help="write the store's events not yet in the lake",
                         description="Write the store's events not yet in the lake, by UTC "
                                     "day, and replace its dimensions and price books.",
                         epilog="example:\n  agenttally lake export --to data/lake",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(e)
    e.add_argument("--to", required=True, metavar="DIR", help="the lake's directory")
    e.add_argument("--pricebooks",
                   help="folder of price book TOML files to ship in the lake "
                        "(default: data/pricebooks)")
    e.set_defaults(func=cmd_lake_export)
