"""What a store holds: its size, the last rating run, the closed months, the row counts of its
tables and the latest ingests (what `agenttally status` shows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from agenttally._store import Store
from meter.ingest import IngestRunState, ingest_runs
from meter.store import table_counts
from meter.vocabulary import Period
from reports.closing import closed_periods

__all__ = ["LastRating", "StoreStatus", "last_rating", "status"]


@dataclass(frozen=True)
class LastRating:
    """The latest rating run stored: up to which instant, how (`full`, `incremental`, ...),
    and, when recorded, how many sessions it rated in how many milliseconds."""

    as_of_ms: int
    kind: str
    sessions_rated: int | None
    elapsed_ms: int | None


@dataclass(frozen=True)
class StoreStatus:
    """A store at a glance: file and size, last rating (None: never rated), closed months,
    rows per table (by name) and the latest ingests (newest first, each with its state)."""

    path: Path
    size_bytes: int
    last_rating: LastRating | None
    closed: list[Period]
    counts: dict[str, int]
    ingests: list[IngestRunState]


def last_rating(con: duckdb.DuckDBPyConnection) -> LastRating | None:
    """The latest row of `rating_runs` by the time it was rated (None when there is none)."""
    rows = con.execute(
        "SELECT as_of_ms, coalesce(kind, 'full'), sessions_rated, elapsed_ms "
        "FROM rating_runs ORDER BY rated_ms DESC LIMIT 1").fetchall()
    return LastRating(*rows[0]) if rows else None


def status(store: Store, *, ingests: int = 5) -> StoreStatus:
    """What `store` holds: see `StoreStatus`; `ingests`: how many of the latest to list."""
    con = store.connection
    return StoreStatus(
        path=store.path,
        size_bytes=store.path.stat().st_size if store.path.exists() else 0,
        last_rating=last_rating(con), closed=closed_periods(con), counts=table_counts(con),
        ingests=ingest_runs(con, limit=ingests))
