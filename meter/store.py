"""The DuckDB store: one file, a versioned schema, and the connection rules around it.

DuckDB lets one process write a file at a time. Writers (ingest, the collector, the simulator)
hold the store only for the length of a batch; readers (reports, the dashboard) open it
read-only and retry briefly when a writer holds the lock, so both can share one file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from meter.errors import DataError
from meter.settings import setting

SCHEMA_VERSION = 4

# Forward migrations: MIGRATIONS[n] takes a store from version n-1 to n. Version 1 is the
# schema file itself; later versions append statements here and never edit old ones.
MIGRATIONS: dict[int, str] = {
    # v2: the rating engine's output, persisted by `agenttally rate` for the dashboard.
    2: """
    CREATE TABLE IF NOT EXISTS charges (
        period VARCHAR NOT NULL, day DATE NOT NULL, session_id VARCHAR NOT NULL,
        agent_id VARCHAR, environment_id VARCHAR, tags JSON,
        meter VARCHAR NOT NULL, model VARCHAR, token_class VARCHAR, tier VARCHAR NOT NULL,
        quantity BIGINT NOT NULL, unit VARCHAR NOT NULL,
        unit_price DECIMAL(38,12), price_unit VARCHAR,
        amount_exact DECIMAL(38,18) NOT NULL,
        book VARCHAR NOT NULL, book_version VARCHAR NOT NULL, provisional BOOLEAN NOT NULL
    );
    CREATE TABLE IF NOT EXISTS unrated_usage (
        day DATE NOT NULL, period VARCHAR NOT NULL, session_id VARCHAR NOT NULL,
        meter VARCHAR NOT NULL, model VARCHAR, token_class VARCHAR,
        quantity BIGINT NOT NULL, unit VARCHAR NOT NULL, reason VARCHAR NOT NULL
    );
    CREATE TABLE IF NOT EXISTS rating_runs (
        rated_ms BIGINT NOT NULL, as_of_ms BIGINT NOT NULL, books VARCHAR NOT NULL,
        charges BIGINT NOT NULL, unrated BIGINT NOT NULL
    );
    """,
    # v3: charge lines carry their exact amount in money units (1/9 atto-dollar, see
    # pricing.money), so that sums of runtime lines are exact. Lines rated before cannot be
    # upgraded in place (their runtime amounts were cut to 1e-18 each): the next
    # `agenttally rate` (or `serve`) rates them again.
    3: """
    ALTER TABLE charges ADD COLUMN amount_units HUGEINT;
    DELETE FROM charges;
    DELETE FROM unrated_usage;
    """,
    # v4: the ledger (pricing.ledger): what each rating run covered, so that the next one
    # rates only what changed; the sessions open at the last run; and the issued billing
    # documents of closed periods with their lines (reports.closing). A store rated before
    # is rated in full once more by its next run.
    4: """
    ALTER TABLE rating_runs ADD COLUMN kind VARCHAR;
    ALTER TABLE rating_runs ADD COLUMN through_ingest BIGINT;
    ALTER TABLE rating_runs ADD COLUMN through_count BIGINT;
    ALTER TABLE rating_runs ADD COLUMN prints VARCHAR;
    ALTER TABLE rating_runs ADD COLUMN options VARCHAR;
    ALTER TABLE rating_runs ADD COLUMN sessions_rated BIGINT;
    ALTER TABLE rating_runs ADD COLUMN elapsed_ms BIGINT;
    CREATE TABLE IF NOT EXISTS ledger_open (session_id VARCHAR NOT NULL);
    CREATE TABLE IF NOT EXISTS billing_documents (
        document_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, period VARCHAR NOT NULL,
        version INTEGER NOT NULL, issued_ms BIGINT NOT NULL, as_of_ms BIGINT NOT NULL,
        books VARCHAR NOT NULL, total DECIMAL(38, 2) NOT NULL, sha256 VARCHAR NOT NULL,
        document VARCHAR NOT NULL
    );
    CREATE TABLE IF NOT EXISTS billed_lines (
        document_id VARCHAR NOT NULL, billed_period VARCHAR NOT NULL,
        usage_period VARCHAR NOT NULL, meter VARCHAR, model VARCHAR, token_class VARCHAR,
        tier VARCHAR, quantity BIGINT NOT NULL, amount DECIMAL(38, 2) NOT NULL
    );
    """,
}

DEFAULT_DB = Path("data") / "agenttally.duckdb"


class StoreError(DataError):
    """The store cannot be opened or is of a schema this code does not know."""


def default_db_path() -> Path:
    """`AGENTTALLY_DB` if set, else `data/agenttally.duckdb` under the working directory."""
    return Path(setting("AGENTTALLY_DB") or DEFAULT_DB)


def _schema_sql() -> str:
    return resources.files("meter").joinpath("schema.sql").read_text(encoding="utf-8")


def _configure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET TimeZone = 'UTC'")


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Create the schema on first use and apply pending migrations; returns the version."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER NOT NULL, applied_ms BIGINT NOT NULL)"
    )
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    current = row[0] or 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"store schema version {current} is newer than this AgentTally ({SCHEMA_VERSION}); "
            "upgrade AgentTally"
        )
    if current == SCHEMA_VERSION:
        return current
    now_ms = int(time.time() * 1000)
    con.execute("BEGIN TRANSACTION")
    try:
        if current == 0:
            con.execute(_schema_sql())
            current = 1
            con.execute("INSERT INTO schema_version VALUES (1, ?)", [now_ms])
        for version in range(current + 1, SCHEMA_VERSION + 1):
            con.execute(MIGRATIONS[version])
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, now_ms])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text


def connect(
    path: str | Path | None = None,
    *,
    read_only: bool = False,
    lock_timeout_s: float = 10.0,
) -> duckdb.DuckDBPyConnection:
    """Open the store, creating and migrating it unless `read_only`.

    Waits up to `lock_timeout_s` for another process's write lock, since writers hold it only
    for a batch. `":memory:"` gives a throwaway store (tests, what-if sandboxes).
    """
    target = str(path or default_db_path())
    if target != ":memory:":
        if read_only and not Path(target).exists():
            raise StoreError(f"{target}: no store here yet; ingest or simulate some data first")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(target, read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                raise StoreError(f"{target}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    _configure(con)
    if not read_only:
        migrate(con)
    return con


@contextmanager
def open_store(
    path: str | Path | None = None, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`connect` as a context manager that always closes, so the file lock is released."""
    con = connect(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


# The dimension tables and their keys: a later record of the same object replaces the stored
# one only if it is at least as recent (`updated_ms`), whatever order records arrive in.
_DIMENSION_KEYS = {"sessions": "session_id", "agents": "agent_id",
                   "environments": "environment_id"}
_DIMENSION_COLUMNS = {
    "sessions": ("created_ms", "updated_ms", "status", "title", "environment_id", "agent_id",
                 "agent_version", "agent_name", "model_id", "model_speed", "inference_geo",
                 "metadata", "roster", "archived_ms", "ingest_id"),
    "agents": ("version", "name", "model_id", "model_speed", "inference_geo", "metadata",
               "updated_ms", "ingest_id"),
    "environments": ("name", "metadata", "updated_ms", "ingest_id"),
}


def latest_wins(table: str) -> str:
    """The ON CONFLICT clause that every writer of a dimension table uses (ingest, simulator).
    A record equal to the stored one (a duplicate) changes nothing, not even its ingest id:
    the ledger takes a changed ingest id for a changed session."""
    columns = _DIMENSION_COLUMNS[table]
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns)
    same = [c for c in columns if c != "ingest_id"]
    differs = " OR ".join(f"excluded.{c} IS DISTINCT FROM {table}.{c}" for c in same)
    return (f"ON CONFLICT ({_DIMENSION_KEYS[table]}) DO UPDATE SET {sets} "
            f"WHERE excluded.updated_ms > {table}.updated_ms OR "
            f"(excluded.updated_ms = {table}.updated_ms AND ({differs}))")


def next_ingest_id(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log").fetchall()[0]
    return int(row[0])


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row counts of the main tables: the Data page and `agenttally status` show these."""
    names = [
        "events", "status_events", "model_requests", "usage_snapshots", "tool_uses",
        "threads", "session_updates", "other_events", "sessions", "agents", "environments",
        "quarantine", "ingest_log", "charges", "unrated_usage", "billing_documents",
    ]
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    return {n: int(con.execute(f"SELECT count(*) FROM {n}").fetchall()[0][0])
            for n in names if n in present}
