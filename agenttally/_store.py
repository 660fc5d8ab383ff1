"""A store: one DuckDB file of metered usage, opened for a batch of work and closed after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from meter.ingest import DEFAULT_MAX_FUTURE_MS, IngestResult, ingest_path
from meter.intervals import SessionAsOf, sessions_as_of
from meter.store import connect, default_db_path
from meter.vocabulary import to_epoch_ms

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
           max_future_ms: int = DEFAULT_MAX_FUTURE_MS) -> IngestResult:
    """Ingest one JSONL file (.jsonl or .jsonl.gz, `-` for stdin) into `store`: new events
    stored once, duplicates counted, bad lines quarantined with the field that failed."""
    return ingest_path(store.connection, path, max_future_ms=max_future_ms)


def sessions(store: Store, *, as_of: str | int | None = None) -> list[SessionAsOf]:
    """The sessions that existed at `as_of` (RFC 3339, epoch ms, or None for now), each with
    its status then and its running and idle time up to then."""
    return sessions_as_of(store.connection, to_epoch_ms(as_of))
