"""The DuckDB store: one file, a versioned schema, and the connection rules around it.

DuckDB lets one process hold a file while a connection is open (many read-only processes, or
one writer). So writers hold the store only for a bounded time: ingest commits in batches and
releases the file at least every AGENTTALLY_WRITE_HOLD_S seconds of work (`WriteHold`), the
collector for the length of a flush. A process that finds the file held (`connect`) says so on
stderr, leaves a marker beside the store so that the writer lets it in at its next release,
and waits up to AGENTTALLY_LOCK_WAIT_S before a `StoreError`, never a raw DuckDB error.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TypeVar

import duckdb

from meter.errors import DataError, UsageError
from meter.settings import SETTINGS, setting

SCHEMA_VERSION = 8

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
    # v5: an ingest's state (running, finished, failed, interrupted, continued) and who runs
    # it (pid and host: a run no longer live that never finished was interrupted); its
    # progress is committed with each batch (heartbeat_ms). Event ids are de-duplicated per
    # session (the provider's identity is (session_id, event_id)): id_collisions counts the
    # new events whose id another session also uses. Runs logged before this version
    # without a finish were interrupted (no older writer can be live: it held the file).
    5: """
    ALTER TABLE ingest_log ADD COLUMN status VARCHAR;
    ALTER TABLE ingest_log ADD COLUMN pid BIGINT;
    ALTER TABLE ingest_log ADD COLUMN host VARCHAR;
    ALTER TABLE ingest_log ADD COLUMN heartbeat_ms BIGINT;
    ALTER TABLE ingest_log ADD COLUMN id_collisions BIGINT;
    ALTER TABLE ingest_log ADD COLUMN error VARCHAR;
    UPDATE ingest_log
    SET status = CASE WHEN finished_ms IS NULL THEN 'interrupted' ELSE 'finished' END;
    """,
    # v6: the ledger keeps each session's time by month (meter.intervals.SESSION_MONTHS_SQL)
    # and its provisional interval, for the runtime-utilisation view. A store rated before is
    # rated in full once more by its next run, which fills them.
    6: """
    CREATE TABLE IF NOT EXISTS session_months (
        session_id VARCHAR NOT NULL, month_start_ms BIGINT NOT NULL,
        running_ms BIGINT NOT NULL, idle_between_ms BIGINT NOT NULL,
        idle_parked_ms BIGINT NOT NULL, rescheduling_ms BIGINT NOT NULL,
        spans BIGINT NOT NULL, started_hours BIGINT NOT NULL, parked BOOLEAN NOT NULL
    );
    CREATE TABLE IF NOT EXISTS session_tails (
        session_id VARCHAR NOT NULL, status VARCHAR NOT NULL, since_ms BIGINT NOT NULL,
        tied_run BOOLEAN NOT NULL
    );
    UPDATE rating_runs SET prints = NULL;
    """,
    # v7: the ledger keeps a row per session and period it has lines in: its spend, and its
    # time that month as session_months and session_tails have it (pricing.ledger
    # .session_periods_sql), so that a page of one period reads a row per session instead of
    # grouping its lines and joining its time. A store rated before is rated in full once more
    # by its next run, which fills it.
    7: """
    CREATE TABLE IF NOT EXISTS session_periods (
        period VARCHAR NOT NULL, session_id VARCHAR NOT NULL, agent_id VARCHAR, tags JSON,
        amount_units HUGEINT NOT NULL,
        running_ms BIGINT, idle_between_ms BIGINT, idle_parked_ms BIGINT,
        rescheduling_ms BIGINT, spans BIGINT, started_hours BIGINT, parked BOOLEAN,
        tail_status VARCHAR, tail_since_ms BIGINT, tail_tied_run BOOLEAN
    );
    UPDATE rating_runs SET prints = NULL;
    """,
    # v8: the earliest instant of any event stored per session (session_starts_upsert), from
    # which an incremental rating copies a stale session's events: the session record's
    # created_at is no bound (a file may hold events from before it).
    8: """
    CREATE TABLE IF NOT EXISTS session_starts (
        session_id VARCHAR PRIMARY KEY, first_ms BIGINT NOT NULL
    );
    INSERT INTO session_starts SELECT session_id, min(at_ms) FROM events GROUP BY session_id
    ON CONFLICT DO NOTHING;
    """,
}

DEFAULT_DB = Path("data") / "agenttally.duckdb"
T = TypeVar("T")


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
        started = current
        for version in range(current + 1, SCHEMA_VERSION + 1):
            con.execute(MIGRATIONS[version])
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, now_ms])
        if 1 < started < BOUNDS_VERSION <= SCHEMA_VERSION:
            _quarantine_implausible(con, now_ms)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


# The first version whose ingest refuses implausible values (meter.events.Bounds).
BOUNDS_VERSION = 5

# What an event older than the bounds may hold beyond them: (table, columns, Bounds field).
_BOUNDED = (
    ("model_requests", ("input_tokens", "output_tokens", "cache_write_tokens",
                        "cache_read_tokens"), "request_tokens"),
    ("usage_snapshots", ("input_tokens", "output_tokens", "cache_read_tokens",
                         "cache_write_5m_tokens", "cache_write_1h_tokens"), "session_tokens"),
    ("usage_snapshots", ("web_search_requests", "web_fetch_requests"), "web_requests"),
)


def _quarantine_implausible(con: duckdb.DuckDBPyConnection, now_ms: int) -> int:
    """On upgrading a store written before the plausibility bounds: move each stored event
    with a count beyond them (or below zero) into `quarantine`, as ingest would have (the row
    as JSON, the event, field, value and bound), so one such event cannot poison every report
    (issue 18). The ledger is then rated again in full (its last run is forgotten). Returns
    the number of events moved."""
    from meter.events import Bounds  # (pydantic: loaded only for this one-time step)

    bounds = Bounds.from_settings()
    moved = 0
    for table, columns, field in _BOUNDED:
        bound = getattr(bounds, field)
        beyond = " OR ".join(f"{c} > {bound} OR {c} < 0" for c in columns)
        reason = " || ' ' || ".join(
            f"CASE WHEN {c} > {bound} OR {c} < 0 THEN '{table}.{c}: ' || {c} || "
            f"' is beyond the plausible bound {bound};' ELSE '' END" for c in columns)
        rows = con.execute(f"SELECT count(*) FROM {table} WHERE {beyond}").fetchall()[0][0]
        if not rows:
            continue
        con.execute(f"""
            INSERT INTO quarantine (ingest_id, source, line_no, raw, error, quarantined_ms)
            SELECT coalesce(e.ingest_id, 0), 'upgrade to schema {BOUNDS_VERSION}', NULL,
                   CAST(to_json(t) AS VARCHAR),
                   'event ' || t.event_id || ' (session ' || t.session_id || '): '
                   || trim({reason}) || ' quarantined when the store was upgraded',
                   ?
            FROM {table} t LEFT JOIN events e USING (session_id, event_id)
            WHERE {beyond}""", [now_ms])
        con.execute(f"""
            DELETE FROM events e USING {table} t
            WHERE e.session_id = t.session_id AND e.event_id = t.event_id AND ({beyond})""")
        con.execute(f"DELETE FROM {table} WHERE {beyond}")
        moved += rows
    if moved:
        con.execute("DELETE FROM rating_runs")
    return moved


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text


def _seconds_setting(variable: str) -> float:
    text = setting(variable) or SETTINGS[variable].default or ""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise UsageError(f"{variable}={text!r}: expected seconds, a number from 0 to 86400 "
                         f"(exclusive of 0), e.g. {SETTINGS[variable].default}")
    return value


def lock_wait_s() -> float:
    """How long `connect` and a writer's `WriteHold` wait for the file (AGENTTALLY_LOCK_WAIT_S)."""
    return _seconds_setting("AGENTTALLY_LOCK_WAIT_S")


def write_hold_s() -> float:
    """The longest a writer holds the file before letting others in (AGENTTALLY_WRITE_HOLD_S)."""
    return _seconds_setting("AGENTTALLY_WRITE_HOLD_S")


def _holder(exc: Exception) -> str:
    """'another process (PID n)' from DuckDB's lock error, or 'another process'."""
    found = re.search(r"\(PID (\d+)\)", str(exc))
    return f"another process (PID {found.group(1)})" if found else "another process"


def _marker_prefix(target: str) -> str:
    return f"{target}.waiting-"


def _announce_waiting(target: str) -> Path | None:
    """A marker beside the store saying this process waits for it (a writer yields to it at
    its next release); None if the folder is not writable (the wait then relies on timing)."""
    marker = Path(f"{_marker_prefix(target)}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        marker.touch()
    except OSError:
        return None
    return marker


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def others_waiting(target: str) -> bool:
    """Whether a live process (other than this one) has announced that it waits for `target`."""
    folder = Path(target).parent
    prefix = Path(_marker_prefix(target)).name
    try:
        names = [p.name for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return False
    for name in names:
        pid_text = name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text)):
            return True
    return False


def _wait_for_file(target: str, attempt: Callable[[], T], *, timeout_s: float,
                   doing: str) -> T:
    """Run `attempt` (an open or an attach of `target`) until no other process holds the
    file: one line on stderr when it has to wait, a marker for the holder while it waits,
    and a StoreError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    marker: Path | None = None
    try:
        while True:
            try:
                return attempt()
            except duckdb.Error as exc:  # never a raw DuckDB error: the lock, or what else
                if not (isinstance(exc, duckdb.IOException) and _is_lock_error(exc)):
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise StoreError(f"{target}: cannot open the store: {first}") from exc
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"{target}: {_holder(exc)} still holds the store after "
                        f"{timeout_s:g} s; try again when it has finished",
                        hint="AGENTTALLY_LOCK_WAIT_S sets how long to wait") from None
                if marker is None:
                    print(f"waiting for {target}: {_holder(exc)} is {doing} it "
                          f"(up to {timeout_s:g} s) ...", file=sys.stderr, flush=True)
                    marker = _announce_waiting(target)
                time.sleep(0.02)
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def connect(
    path: str | Path | None = None,
    *,
    read_only: bool = False,
    lock_timeout_s: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the store, creating and migrating it unless `read_only`.

    When another process holds the file (a writer between two of its releases, or readers
    when this one writes), waits for it with one line on stderr ("waiting for <path>:
    another process (PID n) is writing it ..."), up to `lock_timeout_s` (default
    AGENTTALLY_LOCK_WAIT_S, 30 s), then raises StoreError. `":memory:"` gives a throwaway
    store (tests, what-if sandboxes).
    """
    target = str(path or default_db_path())
    if target != ":memory:":
        if Path(target).is_dir():
            raise StoreError(f"{target}: is a directory, expected a store file "
                             "(e.g. data/agenttally.duckdb)")
        if read_only and not Path(target).exists():
            raise StoreError(f"{target}: no store here yet; ingest or simulate some data first")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    timeout = lock_wait_s() if lock_timeout_s is None else lock_timeout_s
    con = _wait_for_file(target, lambda: duckdb.connect(target, read_only=read_only),
                         timeout_s=timeout, doing="writing" if read_only else "using")
    _configure(con)
    if not read_only:
        migrate(con)
    return con


def has_stored_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the current database holds table `name` (in `main`): a store of an older
    schema, opened read-only and so not migrated, may not."""
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main' "
        "AND table_name = $n AND database_name = current_database()", {"n": name}
    ).fetchall()[0][0])


def store_file(con: duckdb.DuckDBPyConnection) -> tuple[str, str | None]:
    """The current database of `con`: its name and its file (None for an in-memory store)."""
    name, path = con.execute(
        "SELECT database_name, path FROM duckdb_databases() "
        "WHERE database_name = current_database()").fetchall()[0]
    return str(name), (str(path) if path else None)


class WriteHold:
    """A writer's hold on the store file, released between batches for whoever waits.

    A writer calls `pause_point()` between two committed batches (never inside a
    transaction; its batches take at most about `hold_s` each). When a process has announced
    that it waits (`connect` leaves a marker beside the store), or at the latest every
    `FALLBACK_HOLDS` x `hold_s` (for a process that could not announce itself), the file is
    released: the store is detached from the writer's connection (DuckDB then closes it and
    drops the lock; temp tables and settings stay), the waiters get in, and the store is
    attached again under its name, waiting for them (readers) up to `wait_s`. Callers keep
    using the same connection. An in-memory store is never released. Releasing costs a
    checkpoint, so a writer nobody waits for keeps the file.
    """

    _PARKING = "agenttally_released"
    FALLBACK_HOLDS = 10

    def __init__(self, con: duckdb.DuckDBPyConnection, *, hold_s: float | None = None,
                 wait_s: float | None = None) -> None:
        self.con = con
        self.hold_s = write_hold_s() if hold_s is None else hold_s
        self.wait_s = lock_wait_s() if wait_s is None else wait_s
        self.name, self.path = store_file(con)
        self.since = time.monotonic()
        self.releases = 0

    def pause_point(self) -> bool:
        """Release and re-take the file if another process waits for it, or if it has been
        held for `FALLBACK_HOLDS` x `hold_s`; True when it was released."""
        if self.path is None:
            return False
        waited_for = others_waiting(self.path)
        if not waited_for and time.monotonic() - self.since < self.FALLBACK_HOLDS * self.hold_s:
            return False
        self.release(announced=waited_for)
        return True

    def release(self, *, announced: bool = True) -> None:
        """Let others in now: detach, give announced waiters up to a second to open the
        file (others a tenth of a second), attach again (waiting for them to finish, up to
        `wait_s`)."""
        if self.path is None:
            return
        con, quoted = self.con, '"' + self.name.replace('"', '""') + '"'
        con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {self._PARKING}")
        con.execute(f"USE {self._PARKING}")
        try:
            con.execute(f"DETACH {quoted}")
        except duckdb.Error:  # in use by another cursor of the caller's: keep holding it
            con.execute(f"USE {quoted}")
            con.execute(f"DETACH {self._PARKING}")
            self.since = time.monotonic()
            return
        if announced:
            handover = time.monotonic() + 1.0
            while others_waiting(self.path) and time.monotonic() < handover:
                time.sleep(0.01)
        else:
            time.sleep(0.1)
        path = self.path.replace("'", "''")
        _wait_for_file(self.path, lambda: con.execute(f"ATTACH '{path}' AS {quoted}"),
                       timeout_s=self.wait_s, doing="reading")
        con.execute(f"USE {quoted}")
        con.execute(f"DETACH {self._PARKING}")
        self.releases += 1
        self.since = time.monotonic()


def this_host() -> str:
    return socket.gethostname()


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


def current_catalog(con: duckdb.DuckDBPyConnection) -> str:
    """The current database of `con` as a quoted SQL identifier (`"name"`), to name its
    tables where a temp table of the same name may shadow them."""
    name = con.execute("SELECT current_database()").fetchall()[0][0]
    return '"' + str(name).replace('"', '""') + '"'


def session_starts_upsert(events: str) -> str:
    """SQL bringing `session_starts` down to the earliest event of each session in query
    `events` (columns session_id, at_ms): every writer of events runs it in the same
    transaction. It is a lower bound (a deleted event never raises it): no stored event of a
    session is earlier."""
    return (f"INSERT INTO session_starts SELECT session_id, min(at_ms) FROM ({events}) "
            "GROUP BY session_id ON CONFLICT (session_id) DO UPDATE SET "
            "first_ms = excluded.first_ms WHERE excluded.first_ms < session_starts.first_ms")


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


class LoggedRun:
    """One writer's run as a row of `ingest_log`, kept the same way by every writer (ingest,
    meter.ingest; the simulator, meter.simulator.writers): opened 'running' with this
    process's pid and host and a heartbeat, advanced inside every transaction (so its counts
    are what was committed), closed 'finished', or 'failed' / 'interrupted' when an error or
    Ctrl-C stops it (a kill leaves it 'running' with a dead pid, which `ingest_runs` shows as
    interrupted).

    When another writer logged an ingest while this one let the store go, the rows committed
    next take a new id and row, logged as a continuation (the old row 'continued'): ingest ids
    grow in commit order, which the ledger's watermark (pricing.ledger) relies on to find the
    sessions that changed since a rating run.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str) -> None:
        self.con, self.source = con, source
        self.ingest_id = self._open(int(time.time() * 1000))
        self._id_at_begin = self.ingest_id

    def begin_transaction(self) -> None:
        """BEGIN, remembering the run's row: `current_id` may open another inside it."""
        self.con.execute("BEGIN TRANSACTION")
        self._id_at_begin = self.ingest_id

    def rollback_transaction(self) -> None:
        """ROLLBACK; a row `current_id` opened in the transaction (and the old row's
        'continued') went with it, so the run's row is again the one before: a failure is
        then logged on a row that exists."""
        try:
            self.con.execute("ROLLBACK")
        finally:
            self.ingest_id = self._id_at_begin

    def _open(self, now_ms: int) -> int:
        ingest_id = next_ingest_id(self.con)
        self.con.execute(
            "INSERT INTO ingest_log (ingest_id, source, started_ms, status, pid, host, "
            "heartbeat_ms, lines, new_events, duplicates, records, quarantined, id_collisions) "
            "VALUES (?, ?, ?, 'running', ?, ?, ?, 0, 0, 0, 0, 0, 0)",
            [ingest_id, self.source, now_ms, os.getpid(), this_host(), now_ms])
        return ingest_id

    def current_id(self) -> int:
        """The ingest id for the transaction about to commit (called inside it). Another
        writer may have logged an ingest while this one released the store: rows committed
        from then on carry a new id above it, logged as a continuation, so that ingest ids
        grow in commit order."""
        top = self.con.execute("SELECT max(ingest_id) FROM ingest_log").fetchall()[0][0]
        if top is not None and top > self.ingest_id:
            now = int(time.time() * 1000)
            self.con.execute("UPDATE ingest_log SET status = 'continued', finished_ms = ? "
                             "WHERE ingest_id = ?", [now, self.ingest_id])
            self.ingest_id = self._open(now)
        return self.ingest_id

    def advance(self, *, lines: int, new_events: int, duplicates: int, records: int,
                quarantined: int = 0, id_collisions: int = 0,
                now_ms: int | None = None) -> None:
        """Add a transaction's counts to the run's row (inside that transaction) and beat
        its heartbeat (at `now_ms`, by default now)."""
        self.con.execute(
            "UPDATE ingest_log SET lines = lines + ?, new_events = new_events + ?, "
            "duplicates = duplicates + ?, records = records + ?, "
            "quarantined = quarantined + ?, id_collisions = id_collisions + ?, "
            "heartbeat_ms = ? WHERE ingest_id = ?",
            [lines, new_events, duplicates, records, quarantined, id_collisions,
             int(time.time() * 1000) if now_ms is None else now_ms, self.ingest_id])

    def close(self, status: str, error: str | None = None) -> None:
        """Close the run's row with `status` ('finished', 'failed', 'interrupted') and why."""
        self.con.execute(
            "UPDATE ingest_log SET finished_ms = ?, status = ?, error = ? WHERE ingest_id = ?",
            [int(time.time() * 1000), status, error, self.ingest_id])

    def stopped_by(self, exc: BaseException) -> None:
        """Close the run as 'interrupted' (Ctrl-C) or 'failed', with the first line of `exc`,
        if the store can still be written."""
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            self.close(status, (str(exc).splitlines() or [type(exc).__name__])[0])
        except duckdb.Error:
            pass  # the store is gone or held: the row stays 'running', shown as interrupted


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
