"""`agenttally`: one entry point, verbs that read like sentences.

Each verb is a small function; heavy lifting lives in meter/, pricing/ and reports/. Errors
print one clear line and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from meter.ingest import DEFAULT_MAX_FUTURE_MS, IngestResult, ingest_path
from meter.intervals import RUNNING_BY_SESSION_SQL
from meter.store import connect, default_db_path, open_store, table_counts
from reports.render import FORMATS, render

EXAMPLES = {
    "ingest": "agenttally ingest data/samples/*.jsonl\n  cat events.jsonl | agenttally ingest -",
    "sessions": "agenttally sessions --as-of 2026-11-30T00:00:00Z --format csv",
    "status": "agenttally status",
}


def parse_instant(text: str | None) -> int:
    """ISO 8601 (date or date-time; naive means UTC) -> epoch ms; None means now."""
    if not text:
        return int(time.time() * 1000)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def iso_ms(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return ""
    dt = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


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
    total = IngestResult()
    with open_store(args.db) as con:
        for path in _expand(args.paths):
            progress = _Progress(path)
            result = ingest_path(con, path, max_future_ms=args.max_future_hours * 3_600_000,
                                 progress=progress)
            progress.close()
            print(f"{path}: {result.summary()}")
            for error in result.errors[:5]:
                print(f"  quarantined {error}", file=sys.stderr)
            total.add(result)
    if len(args.paths) > 1:
        print(f"total: {total.summary()}")
    return 1 if args.strict and total.quarantined else 0


SESSIONS_SQL = f"""
WITH ids AS (SELECT session_id FROM sessions UNION SELECT DISTINCT session_id FROM events)
SELECT ids.session_id, s.metadata->>'$.team' AS team, s.metadata->>'$.project' AS project,
       s.model_id AS model, coalesce(last.status, s.status) AS status,
       coalesce(r.running_ms, 0) AS running_ms, coalesce(r.idle_ms, 0) AS idle_ms,
       coalesce(r.provisional, false) AS provisional
FROM ids
LEFT JOIN sessions s USING (session_id)
LEFT JOIN ({RUNNING_BY_SESSION_SQL}) r USING (session_id)
LEFT JOIN (SELECT session_id, status FROM status_events WHERE thread_id IS NULL
           AND at_ms <= $as_of
           QUALIFY row_number() OVER (PARTITION BY session_id ORDER BY at_ms DESC,
                                      event_id DESC) = 1) last USING (session_id)
ORDER BY ids.session_id
"""


def cmd_sessions(args: argparse.Namespace) -> int:
    as_of = parse_instant(args.as_of)
    with open_store(args.db, read_only=True) as con:
        rel = con.sql(SESSIONS_SQL, params={"as_of": as_of})
        columns, rows = rel.columns, rel.fetchall()
    print(render(columns, rows, args.format))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    path = Path(args.db or default_db_path())
    with open_store(path, read_only=True) as con:
        counts = table_counts(con)
        last = con.execute(
            "SELECT source, finished_ms, lines, new_events, duplicates, quarantined "
            "FROM ingest_log ORDER BY ingest_id DESC LIMIT 5").fetchall()
    size = path.stat().st_size if path.exists() else 0
    print(f"store: {path} ({size / 1e6:.1f} MB)")
    print(render(["table", "rows"], sorted(counts.items())))
    if last:
        print("\nrecent ingests:")
        print(render(["source", "finished", "lines", "new", "duplicate", "quarantined"],
                     [(s, iso_ms(f), n, new, d, q) for s, f, n, new, d, q in last]))
    return 0


def _add_common(p: argparse.ArgumentParser, *, fmt: bool = False) -> None:
    p.add_argument("--db", default=None,
                   help="store file (default: $AGENTTALLY_DB or data/agenttally.duckdb)")
    if fmt:
        p.add_argument("--format", choices=FORMATS, default="table")


# Modules that add verbs of their own through register(subparsers).
PLUGINS = ("reports.cli_pricing", "reports.cli_simulate", "reports.cli_collect",
           "reports.cli_chargeback", "reports.cli_planning", "reports.cli_app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agenttally",
        description="Metering, pricing and billing for Claude Managed Agents.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, func: Callable[[argparse.Namespace], int], help_: str,
             **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_,
                           epilog=f"example:\n  {EXAMPLES[name]}" if name in EXAMPLES else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(p, **kw)
        p.set_defaults(func=func)
        return p

    p = verb("ingest", cmd_ingest, "ingest JSONL files of sessions and events")
    p.add_argument("paths", nargs="+", help="files, globs, .jsonl.gz, or - for stdin")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was quarantined")
    p.add_argument("--max-future-hours", type=int, default=DEFAULT_MAX_FUTURE_MS // 3_600_000,
                   help="quarantine events stamped further than this in the future (24)")
    p = verb("sessions", cmd_sessions, "list sessions with running and idle time", fmt=True)
    p.add_argument("--as-of", help="instant to measure at (default: now); open sessions end here")
    verb("status", cmd_status, "what the store holds")
    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `agenttally invoice | head` is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # one clear line for people; --debug for the trace
        if args.debug:
            raise
        print(f"agenttally {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser", "parse_instant", "iso_ms", "connect"]
