"""`agenttally`: one entry point, verbs that read like sentences.

Each verb is a small function; heavy lifting lives in meter/, pricing/ and reports/. An
AgentTallyError (meter.errors) or a file that cannot be read prints one clear line and exits
2 (malformed input, flags included) or 1 (data); `--debug` shows the traceback. Anything else
is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Callable
from dataclasses import astuple, fields
from typing import Any, NoReturn

import agenttally
from meter import vocabulary
from meter.errors import AgentTallyError
from meter.settings import settings_help
from reports.render import FORMATS, render

EXAMPLES = {
    "ingest": "agenttally ingest data/samples/*.jsonl\n  cat events.jsonl | agenttally ingest -",
    "sessions": "agenttally sessions --period 2026-11 --sort cost --limit 20\n"
                "  agenttally sessions --as-of 2026-11-30T00:00:00Z --limit 0 --format csv",
    "status": "agenttally status",
}


def iso_ms(epoch_ms: int | None) -> str:
    """An instant as the CLI prints it; blank for none."""
    return "" if epoch_ms is None else vocabulary.iso_ms(epoch_ms)


# Flag types: each parses with meter.vocabulary, so a malformed value stops argparse with exit
# status 2 and one line naming the flag, the value and the expected form (see _Parser).
def _flag_type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except vocabulary.VocabularyError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = name
    return convert


instant_arg = _flag_type(vocabulary.parse_instant, "instant")
period_arg = _flag_type(lambda text: str(vocabulary.Period.parse(text)), "period")
span_arg = _flag_type(vocabulary.parse_span, "period")


date_arg = _flag_type(lambda text: vocabulary.parse_day(text).isoformat(), "day")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message.removeprefix('argument ')}\n")


class _Progress:
    """A one-line progress counter on stderr, only when stderr is a terminal."""

    def __init__(self, label: str):
        self.label, self.done, self.enabled = label, 0, sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        self.done += n
        if self.enabled:
            print(f"\r{self.label}: {self.done:,} lines", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.done:
            print(file=sys.stderr)


def _expand(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        matches = sorted(glob.glob(p)) if p != "-" and any(c in p for c in "*?[") else [p]
        if not matches:
            raise FileNotFoundError(f"{p}: no file matches")
        out.extend(matches)
    return out


def cmd_ingest(args: argparse.Namespace) -> int:
    from meter.ingest import DEFAULT_MAX_FUTURE_MS, IngestResult

    total = IngestResult()
    max_future_ms = (DEFAULT_MAX_FUTURE_MS if args.max_future_hours is None
                     else args.max_future_hours * 3_600_000)
    with agenttally.open_store(args.db) as store:
        for path in _expand(args.paths):
            progress = _Progress(path)
            result = agenttally.ingest(store, path, max_future_ms=max_future_ms,
                                       progress=progress)
            progress.close()
            print(f"{path}: {result.summary()}")
            for error in result.errors[:5]:
                print(f"  quarantined {error}", file=sys.stderr)
            for warning in result.warnings[:5]:  # e.g. an event id another session also uses
                print(f"  warning {warning}", file=sys.stderr)
            total.add(result)
    if len(args.paths) > 1:
        print(f"total: {total.summary()}")
    return 1 if args.strict and total.quarantined else 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from meter.intervals import SessionAsOf
    with agenttally.open_store(args.db, read_only=True) as store:
        sessions = agenttally.sessions(store, as_of=args.as_of, period=args.period,
                                       sort=args.sort)
    columns = [f.name for f in fields(SessionAsOf)]
    shown = sessions if args.limit == 0 else sessions[:args.limit]
    print(render(columns, [astuple(s) for s in shown], args.format))
    if len(shown) < len(sessions):
        print(f"{len(sessions) - len(shown):,} more sessions not shown (of {len(sessions):,}); "
              "--limit N shows more, --limit 0 all", file=sys.stderr)
    return 0


def limit_arg(text: str) -> int:
    """A row limit: a whole number, 0 for no limit."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of rows (0 for all), e.g. 200, got {text!r}")
    return value


def cmd_status(args: argparse.Namespace) -> int:
    with agenttally.open_store(args.db, read_only=True) as store:
        status = agenttally.status(store)
    print(f"store: {status.path} ({status.size_bytes / 1e6:.1f} MB)")
    rating = status.last_rating
    if rating is not None:
        print(f"ledger: rated as of {iso_ms(rating.as_of_ms)} ({rating.kind}"
              + (f", {rating.sessions_rated:,} sessions in {rating.elapsed_ms:,} ms"
                 if rating.sessions_rated is not None else "") + ")")
    else:
        print("ledger: not rated yet (agenttally rate)")
    print("closed months: " + (", ".join(map(str, status.closed)) if status.closed else "none"))
    print(render(["table", "rows"], sorted(status.counts.items())))
    if status.ingests:
        print("\nrecent ingests:")
        print(render(["source", "state", "started", "finished", "lines", "new", "duplicate",
                      "quarantined"],
                     [(r.source, r.state, iso_ms(r.started_ms), iso_ms(r.finished_ms), r.lines,
                       r.new_events, r.duplicates, r.quarantined) for r in status.ingests]))
        for r in status.ingests:
            if r.error:
                print(f"ingest {r.ingest_id} ({r.source}) {r.state}: {r.error}")
    return 0


def _add_common(p: argparse.ArgumentParser, *, fmt: bool = False) -> None:
    p.add_argument("--db", default=None,
                   help="store file (default: $AGENTTALLY_DB or data/agenttally.duckdb)")
    if fmt:
        p.add_argument("--format", choices=FORMATS, default="table")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agenttally",
        description="Metering, pricing and billing for Claude Managed Agents.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, func: Callable[[argparse.Namespace], int], help_: str,
             **kw: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_,
                           epilog=f"example:\n  {EXAMPLES[name]}" if name in EXAMPLES else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(p, **kw)
        p.set_defaults(func=func)
        return p

    p = verb("ingest", cmd_ingest, "ingest JSONL files of sessions and events")
    p.add_argument("paths", nargs="+", help="files, globs, .jsonl.gz, or - for stdin")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was quarantined")
    p.add_argument("--max-future-hours", type=int, default=None,
                   help="quarantine events stamped further than this in the future (24)")
    p = verb("sessions", cmd_sessions, "list sessions with running and idle time", fmt=True)
    p.add_argument("--as-of", type=instant_arg,
                   help="instant to list sessions as of (default: now), e.g. 2026-11-30T00:00:00Z "
                        "or 2026-11-30: only sessions that existed then, with their status then")
    p.add_argument("--period", type=period_arg,
                   help="only sessions started in this month (YYYY-MM, e.g. 2026-11)")
    p.add_argument("--sort", choices=("start", "cost", "running"), default=None,
                   help="newest first, costliest first (rated charges) or most running time "
                        "first (default: by session id)")
    p.add_argument("--limit", type=limit_arg, default=50, metavar="N",
                   help="show at most N sessions (50; 0 for all); the count not shown goes "
                        "to stderr")
    verb("status", cmd_status, "what the store holds")
    # The other verbs, each module adding its own (imported here: they import this module's
    # helpers). Plain imports: a verb that cannot be imported fails loudly.
    from agenttally.cli import app, chargeback, collect, lake, planning, pricing, simulate

    for module in (pricing, simulate, collect, chargeback, planning, lake, app):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `agenttally invoice | head` is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (AgentTallyError, OSError) as exc:  # one clear line for people; --debug: the trace
        if args.debug:
            raise
        hint = getattr(exc, "hint", None)
        print(f"agenttally {args.command}: {exc}" + (f" ({hint})" if hint else ""),
              file=sys.stderr)
        return exc.exit_code if isinstance(exc, AgentTallyError) else 1
    # anything else is a bug: Python prints its traceback


__all__ = ["build_parser", "connect", "date_arg", "instant_arg", "iso_ms", "main",
           "period_arg", "span_arg"]
