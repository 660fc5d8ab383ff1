"""How the dashboard reads a store that a collector may be writing at the same moment.

DuckDB lets one process at a time open a file for writing, and while it does no other process
can open it at all. The writers of AgentTally (ingest, `agenttally collect`, `agenttally rate`,
the simulator) therefore hold the store only for one short batch and close it (meter.store).
The dashboard is a reader that never keeps the file open:

- every page gathers its numbers in one *batch*: it opens the store read-only
  (`meter.store.connect(..., read_only=True)`, which waits and retries while a writer holds
  the lock), runs a few aggregate SQL queries whose results are small DataFrames, and closes
  the store at once. A person looking at a chart holds no lock, and a collector waits at most
  one batch (well under a second) to write;
- batches are cached by Streamlit (`st.cache_data`), keyed by the store's path and a cheap
  *version* of it: size and modification time of the file and of its write-ahead log. Any
  committed write changes the version, so refreshing the page (or the sidebar's refresh
  button) after a collector flush shows the new data, and an unchanged store is never read
  twice; a TTL bounds the cache's memory;
- what is metered (sessions, timelines, ingest status) is read live from the event tables;
  what things cost comes from the `charges` table that `agenttally rate` (and `agenttally
  serve` at start) writes, so money is shown as of the last rating, and the sidebar says as of
  when and how many events arrived since.

Snapshots to Parquet or a second copy of the file were considered and not taken: a read-only
open already sees a consistent committed state, costs a few milliseconds, and needs no
process to keep copies fresh.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from meter.store import StoreError, connect, default_db_path
from pricing.money import install_sql_macros

__all__ = ["StoreState", "read_store", "store_path", "store_state", "store_version"]


def store_path(path: str | Path | None = None) -> Path:
    """The store the dashboard shows: `path`, else $AGENTTALLY_DB, else the default."""
    return Path(path) if path else default_db_path()


def store_version(path: str | Path) -> tuple[int, int, int, int]:
    """(size, mtime_ns) of the store file and of its WAL: changes with every committed write."""
    out: list[int] = []
    for p in (Path(path), Path(f"{path}.wal")):
        try:
            st = os.stat(p)
            out += [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out += [0, 0]
    return out[0], out[1], out[2], out[3]


@contextmanager
def read_store(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one batch of queries, closed right after.

    Installs the money macros (temp objects, allowed on a read-only store), names the stored
    unrated usage `unrated` as the rating leaves it (reports read that name), and turns the
    progress bar off. Raises StoreError when there is no store at `path`, or when it predates
    the persisted charges (schema v2) and so cannot be migrated read-only.
    """
    if not Path(path).exists():
        raise StoreError(f"{path}: no store here yet")
    con = connect(path, read_only=True)
    try:
        con.execute("SET enable_progress_bar = false")
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
        units = con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' "
                            "AND table_name = 'charges' AND column_name = 'amount_units'"
                            ).fetchall()[0][0]
        if not {"events", "charges", "unrated_usage", "rating_runs"} <= tables or not units:
            raise StoreError(f"{path}: this store predates the dashboard's tables; run "
                             "`agenttally rate` once to upgrade it")
        install_sql_macros(con)
        con.execute("CREATE TEMP VIEW unrated AS SELECT * FROM unrated_usage")
        yield con
    finally:
        con.close()


@dataclass(frozen=True)
class StoreState:
    """What the store holds, in a few numbers every page needs first."""

    path: str
    exists: bool
    size_bytes: int = 0
    events: int = 0
    sessions: int = 0
    charge_lines: int = 0
    periods: tuple[str, ...] = ()
    rated_ms: int | None = None
    rated_as_of_ms: int | None = None
    books: str | None = None
    unrated_lines: int = 0
    events_since_rating: int = 0
    last_event_ms: int | None = None

    @property
    def empty(self) -> bool:
        return self.events == 0 and self.charge_lines == 0

    @property
    def rated(self) -> bool:
        return self.charge_lines > 0


def store_state(con: duckdb.DuckDBPyConnection, path: str | Path) -> StoreState:
    """The store's state: counts, rated periods and the last rating run."""
    counts = con.execute("""
        SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM sessions),
               (SELECT count(*) FROM charges), (SELECT count(*) FROM unrated_usage),
               (SELECT max(at_ms) FROM events)
    """).fetchall()[0]
    periods = tuple(r[0] for r in con.execute(
        "SELECT DISTINCT period FROM charges ORDER BY period").fetchall())
    run = con.execute("""
        SELECT rated_ms, as_of_ms, books FROM rating_runs ORDER BY rated_ms DESC LIMIT 1
    """).fetchall()
    rated_ms, as_of_ms, books = run[0] if run else (None, None, None)
    since = 0
    if rated_ms is not None:
        since = int(con.execute(
            "SELECT coalesce(sum(new_events), 0) FROM ingest_log WHERE finished_ms > $t",
            {"t": rated_ms}).fetchall()[0][0])
    size = sum(p.stat().st_size for p in (Path(path), Path(f"{path}.wal")) if p.exists())
    return StoreState(
        path=str(path), exists=True, size_bytes=size, events=int(counts[0]),
        sessions=int(counts[1]), charge_lines=int(counts[2]), unrated_lines=int(counts[3]),
        last_event_ms=counts[4], periods=periods, rated_ms=rated_ms, rated_as_of_ms=as_of_ms,
        books=books, events_since_rating=since,
    )


def missing_store_state(path: str | Path) -> StoreState:
    return StoreState(path=str(path), exists=False)


_ = StoreError
