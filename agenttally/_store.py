"""A store: one DuckDB file of metered usage, opened for a batch of work and closed after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from meter.errors import DataError, UsageError
from meter.ingest import DEFAULT_MAX_FUTURE_MS, IngestResult, ingest_path
from meter.intervals import SessionAsOf, sessions_as_of
from meter.store import connect, default_db_path
from meter.vocabulary import Period, to_epoch_ms

__all__ = ["Store", "ingest", "open_store", "sessions"]


@dataclass(frozen=True)
class Store:
    """An open store: its file and the connection the other API functions work on."""

    path: Path
    connection: duckdb.DuckDBPyConnection
    read_only: bool
    # set for a lake's rated charges (agenttally._lake): reports read them as priced then
    lake_as_of_ms: int | None = None


@contextmanager
def open_store(path: str | Path | None = None, *, read_only: bool = False) -> Iterator[Store]:
    """Open (creating and migrating, unless read-only) the store at `path`, default
    `$AGENTTALLY_DB` else `data/agenttally.duckdb`; closed when the block ends. One process
    writes a store at a time: hold a writable store only for a batch of work."""
    target = Path(path) if path is not None else default_db_path()
    con = connect(target, read_only=read_only)
    try:
        yield Store(path=target, connection=con, read_only=read_only)
    finally:
        con.close()


def ingest(store: Store, path: str | Path, *,
           max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
           progress: Callable[[int], None] | None = None) -> IngestResult:
    """Ingest one JSONL file (.jsonl or .jsonl.gz, `-` for stdin) into `store`: new events
    stored once, duplicates counted, bad lines quarantined with the field that failed.
    `progress`, if given, is called with each batch's number of lines once it is ingested."""
    return ingest_path(store.connection, path, max_future_ms=max_future_ms, progress=progress)


SESSION_SORTS = ("start", "cost", "running")


def sessions(store: Store, *, as_of: str | int | None = None, period: str | None = None,
             sort: str | None = None) -> list[SessionAsOf]:
    """The sessions that existed at `as_of` (RFC 3339, epoch ms, or None for now), each with
    its status then and its running and idle time up to then; by session id.

    `period` (YYYY-MM) keeps the sessions started in that month (created, else their first
    event). `sort`: "start" (newest first), "running" (most running time first) or "cost"
    (costliest first, from the rated charges of every month; needs `rate` first)."""
    con = store.connection
    rows = sessions_as_of(con, to_epoch_ms(as_of))
    if period is None and sort is None:
        return rows
    if sort is not None and sort not in SESSION_SORTS:
        raise UsageError(f"sort: expected one of {', '.join(SESSION_SORTS)}, got {sort!r}")
    started = dict(con.execute(_SESSION_STARTS).fetchall())
    if period is not None:
        month = Period.parse(period)
        rows = [r for r in rows if month.start_ms <= started.get(r.session_id, -1) < month.end_ms]
    if sort == "start":
        rows.sort(key=lambda r: (-started.get(r.session_id, 0), r.session_id))
    elif sort == "running":
        rows.sort(key=lambda r: (-r.running_ms, r.session_id))
    elif sort == "cost":
        if not con.execute("SELECT count(*) FROM rating_runs").fetchall()[0][0]:
            raise DataError("sessions by cost need rated charges: run `agenttally rate` first")
        cost = dict(con.execute(
            "SELECT session_id, sum(amount_units) FROM charges GROUP BY session_id").fetchall())
        rows.sort(key=lambda r: (-cost.get(r.session_id, 0), r.session_id))
    return rows


# When each session started: its created_at, else its first event.
_SESSION_STARTS = """
SELECT session_id, min(at_ms) FROM (
    SELECT session_id, created_ms AS at_ms FROM sessions WHERE created_ms IS NOT NULL
    UNION ALL SELECT session_id, min(at_ms) FROM events GROUP BY session_id)
GROUP BY session_id
"""
