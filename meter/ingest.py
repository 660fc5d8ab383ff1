"""Bulk ingest: raw JSON lines in, typed rows, quarantine and an ingest log out.

Every way into the store ends here (files, stdin, the live collector, the simulator's JSONL),
so de-duplication and validation happen in one place. Lines are validated set-wise in DuckDB:
each line is parsed once (`json_transform` into a struct), every check is a column
expression, and the first failing check names the field. `meter.events` holds the same rules
as pydantic models; a test keeps the two in agreement.
"""

from __future__ import annotations

import gzip
import io
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import duckdb
import pyarrow as pa

from meter.store import latest_wins, next_ingest_id

BATCH_LINES = 1_000_000
DEFAULT_MAX_FUTURE_MS = 24 * 3600 * 1000

STATUS_TYPES = {
    "session.status_running": "running",
    "session.status_idle": "idle",
    "session.status_rescheduled": "rescheduling",
    "session.status_terminated": "terminated",
    "session.deleted": "deleted",
}
THREAD_STATUS_TYPES = {
    "session.thread_status_running": "running",
    "session.thread_status_idle": "idle",
    "session.thread_status_rescheduled": "rescheduling",
    "session.thread_status_terminated": "terminated",
}
TOOL_USE_TYPES = {
    "agent.tool_use": "builtin",
    "agent.mcp_tool_use": "mcp",
    "agent.custom_tool_use": "custom",
}
RECORD_TYPES = ("session", "agent", "environment")

# One parse per line: every field any check or table needs. Counts stay JSON text so that a
# wrong type is seen (json_transform would coerce 3.5 to 4); strings are read as VARCHAR, so
# an id written as a number is taken as its text, as pydantic's coerce_numbers_to_str does.
_SHAPE = """{
 "type": "VARCHAR", "id": "VARCHAR", "session_id": "VARCHAR", "processed_at": "VARCHAR",
 "session_thread_id": "VARCHAR", "is_error": "JSON", "name": "VARCHAR", "agent_name": "VARCHAR",
 "stop_reason": {"type": "VARCHAR"},
 "model_usage": {"input_tokens": "JSON", "output_tokens": "JSON",
    "cache_creation_input_tokens": "JSON", "cache_read_input_tokens": "JSON", "speed": "VARCHAR"},
 "usage": {"input_tokens": "JSON", "output_tokens": "JSON", "cache_read_input_tokens": "JSON",
    "cache_creation": {"ephemeral_5m_input_tokens": "JSON", "ephemeral_1h_input_tokens": "JSON"},
    "server_tool_use": {"web_search_requests": "JSON", "web_fetch_requests": "JSON"},
    "active_seconds": "JSON", "list_cost": {"amount": "VARCHAR", "currency": "VARCHAR"}},
 "created_at": "VARCHAR", "updated_at": "VARCHAR", "archived_at": "VARCHAR", "status": "VARCHAR",
 "title": "VARCHAR", "environment_id": "VARCHAR", "metadata": "JSON", "version": "JSON",
 "model": "JSON",
 "agent": {"id": "VARCHAR", "version": "JSON", "name": "VARCHAR", "model": "JSON",
    "multiagent": {"agents": "JSON"}}
}"""


def _is_count(leaf: str) -> str:
    """A JSON leaf that is a non-negative integer literal (not 3.5, 1e3, "5" or true)."""
    return (f"(TRY_CAST({leaf} AS UBIGINT) IS NOT NULL AND NOT contains({leaf}, '.') "
            f"AND NOT contains(lower({leaf}), 'e'))")


def _count(leaf: str) -> str:
    return f"CASE WHEN {_is_count(leaf)} THEN CAST({leaf} AS BIGINT) END"


def _int_check(leaf: str, value: str, label: str, required: bool = True) -> str:
    """Error text when the JSON leaf is not a non-negative integer; `value` is its parse."""
    missing = f"'{label}: missing'" if required else "NULL"
    return (
        f"CASE WHEN {value} IS NOT NULL THEN NULL WHEN {leaf} IS NULL THEN {missing} "
        f"WHEN starts_with({leaf}, '-') AND TRY_CAST({leaf} AS BIGINT) IS NOT NULL "
        f"THEN '{label}: must be >= 0, got ' || {leaf} "
        f"ELSE '{label}: expected an integer, got ' || left({leaf}, 40) END"
    )


def _string_check(leaf: str, label: str) -> str:
    return f"CASE WHEN {leaf} IS NULL OR {leaf} = '' THEN '{label}: missing' END"


def _ts(leaf: str) -> str:
    return f"epoch_ms(TRY_CAST({leaf} AS TIMESTAMPTZ))"


def _time_check(leaf: str, ms: str, label: str, required: bool) -> str:
    """Error text for a timestamp leaf whose parsed value (epoch ms) is column `ms`."""
    missing = f"'{label}: missing'" if required else "NULL"
    return (
        f"CASE WHEN {leaf} IS NULL THEN {missing} "
        f"WHEN {ms} IS NULL THEN '{label}: not an RFC 3339 timestamp: ' || left({leaf}, 40) "
        f"WHEN {ms} > $max_ms THEN '{label}: lies in the future beyond the allowed skew: ' "
        f"|| {leaf} END"
    )


# Typed columns the stage carries, by name: (SQL over the parsed struct `s`, check or None).
# Token counts become BIGINT only when valid; the check gives the error text otherwise.
_MU, _U = "s.model_usage", "s.usage"
_SPAN_COUNTS = {
    "mu_input": (f"{_MU}.input_tokens", "model_usage.input_tokens"),
    "mu_output": (f"{_MU}.output_tokens", "model_usage.output_tokens"),
    "mu_cache_write": (f"{_MU}.cache_creation_input_tokens",
                       "model_usage.cache_creation_input_tokens"),
    "mu_cache_read": (f"{_MU}.cache_read_input_tokens", "model_usage.cache_read_input_tokens"),
}
_USAGE_COUNTS = {
    "u_input": (f"{_U}.input_tokens", "usage.input_tokens", True),
    "u_output": (f"{_U}.output_tokens", "usage.output_tokens", True),
    "u_cache_read": (f"{_U}.cache_read_input_tokens", "usage.cache_read_input_tokens", True),
    "u_cache_5m": (f"{_U}.cache_creation.ephemeral_5m_input_tokens",
                   "usage.cache_creation.ephemeral_5m_input_tokens", True),
    "u_cache_1h": (f"{_U}.cache_creation.ephemeral_1h_input_tokens",
                   "usage.cache_creation.ephemeral_1h_input_tokens", True),
    "u_searches": (f"{_U}.server_tool_use.web_search_requests",
                   "usage.server_tool_use.web_search_requests", False),
    "u_fetches": (f"{_U}.server_tool_use.web_fetch_requests",
                  "usage.server_tool_use.web_fetch_requests", False),
}
_EVENT_CHECKS = {
    "span.model_request_end": [
        _int_check(leaf, name, label) for name, (leaf, label) in _SPAN_COUNTS.items()],
    "session.usage": [
        _int_check(leaf, name, label, req) for name, (leaf, label, req) in _USAGE_COUNTS.items()]
    + [
        f"CASE WHEN {_U}.active_seconds IS NOT NULL AND "
        f"coalesce(TRY_CAST({_U}.active_seconds AS DECIMAL(18,3)) < 0, true) "
        f"THEN 'usage.active_seconds: expected a number >= 0, got ' "
        f"|| left({_U}.active_seconds, 40) END",
        f"CASE WHEN {_U}.list_cost.amount IS NOT NULL AND "
        f"NOT regexp_full_match({_U}.list_cost.amount, '[0-9]+') "
        f"THEN 'usage.list_cost.amount: expected whole cents as a string, got ' "
        f"|| left({_U}.list_cost.amount, 40) END",
    ],
    "session.thread_created": [_string_check("s.session_thread_id", "session_thread_id")],
    **{t: [_string_check("s.session_thread_id", "session_thread_id")]
       for t in THREAD_STATUS_TYPES},
}
_RECORD_CHECKS = {
    "session": [
        _string_check("s.id", "id"),
        _time_check("s.created_at", "created_ms", "created_at", required=True),
        _time_check("s.updated_at", "updated_at_ms", "updated_at", required=False),
        "CASE WHEN s.metadata IS NOT NULL AND NOT starts_with(s.metadata, '{') "
        "THEN 'metadata: expected an object' END",
    ],
    "agent": [_string_check("s.id", "id")],
    "environment": [_string_check("s.id", "id")],
}


def _first_error(checks: list[str]) -> str:
    return "coalesce(" + ", ".join(checks) + ")" if len(checks) > 1 else checks[0]


def _model_of(leaf: str) -> str:
    """A model given as a string id or as {"id", "speed", "inference_geo"}."""
    return f"coalesce({leaf}->>'$.id', {leaf}->>'$')"


def _validation_sql() -> str:
    """The staging query: one row per line, flat typed columns, and the first error found.

    The parsed struct never leaves this query: materialising it would cost more than parsing.
    """
    type_branches = " ".join(
        f"WHEN kind = '{t}' THEN {_first_error(c)}" for t, c in _EVENT_CHECKS.items()
    )
    record_branches = " ".join(
        f"WHEN kind = '{t}' THEN {_first_error(c)}" for t, c in _RECORD_CHECKS.items()
    )
    event_checks = _first_error([
        _string_check("s.id", "id"),
        _string_check("s.session_id", "session_id"),
        _time_check("s.processed_at", "at_ms", "processed_at", required=True),
    ])
    count_names = ", ".join({**_SPAN_COUNTS, **_USAGE_COUNTS})
    counts = ",\n".join(
        f"{_count(leaf)} AS {name}"
        for name, (leaf, *_rest) in {**_SPAN_COUNTS, **_USAGE_COUNTS}.items()
    )
    return f"""
    CREATE OR REPLACE TEMP TABLE stage AS
    WITH parsed AS (
        SELECT line_no, line, json_valid(line) AS ok FROM batch_lines
        WHERE line <> '' AND (json_valid(line) OR trim(line) <> '')
    ), structured AS (
        SELECT line_no, line, ok, CASE WHEN ok THEN json_transform(line, $shape) END AS s
        FROM parsed
    ), keyed AS (
        SELECT *, s.type AS kind, {_ts("s.processed_at")} AS at_ms,
               {_ts("s.created_at")} AS created_ms, {_ts("s.updated_at")} AS updated_at_ms,
               {counts}
        FROM structured
    )
    SELECT line_no, kind,
        s.id AS event_id,
        s.session_id AS session_id,
        s.session_thread_id AS thread_id,
        at_ms,
        s.stop_reason.type AS stop_reason,
        {count_names},
        {_MU}.speed AS mu_speed,
        TRY_CAST(s.is_error AS BOOLEAN) AS is_error,
        CAST(round(TRY_CAST({_U}.active_seconds AS DECIMAL(18,3)) * 1000) AS BIGINT) AS u_active_ms,
        TRY_CAST({_U}.list_cost.amount AS BIGINT) AS u_list_cost_cents,
        {_U}.list_cost.currency AS u_currency,
        s.name AS name, s.agent_name AS agent_name,
        {_model_of("s.model")} AS model_id,
        s.model->>'$.speed' AS model_speed, s.model->>'$.inference_geo' AS inference_geo,
        s.metadata AS metadata, s.title AS title,
        created_ms,
        coalesce(updated_at_ms, created_ms, 0) AS updated_ms,
        {_ts("s.archived_at")} AS archived_ms,
        s.status AS status, s.environment_id AS environment_id,
        s.agent.id AS agent_id, TRY_CAST(s.agent.version AS BIGINT) AS agent_version,
        s.agent.name AS session_agent_name, {_model_of("s.agent.model")} AS agent_model_id,
        s.agent.model->>'$.speed' AS agent_model_speed,
        s.agent.model->>'$.inference_geo' AS agent_inference_geo,
        s.agent.multiagent.agents AS roster,
        TRY_CAST(s.version AS BIGINT) AS version,
        CASE
          WHEN NOT ok THEN 'not valid JSON'
          WHEN NOT starts_with(ltrim(line), '{{')
            THEN 'expected a JSON object, got ' || lower(json_type(line::JSON))
          WHEN s.type IS NULL THEN 'type: missing'
          WHEN kind IN {RECORD_TYPES} THEN CASE {record_branches} END
          ELSE coalesce({event_checks}, CASE {type_branches} END)
        END AS error
    FROM keyed
    """


_STAGE_SQL = _validation_sql()

# "event sevt_1: " or "session sesn_1: ", so that an error names the record it is about.
_RECORD_LABEL = (
    f"CASE WHEN event_id IS NULL THEN '' WHEN kind IN {RECORD_TYPES} "
    "THEN kind || ' ' || event_id || ': ' ELSE 'event ' || event_id || ': ' END"
)


@dataclass
class IngestResult:
    """What one ingest did; the CLI prints it and `ingest_log` keeps it."""

    lines: int = 0
    new_events: int = 0
    duplicates: int = 0
    records: int = 0
    quarantined: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the CLI

    def add(self, other: IngestResult) -> None:
        self.lines += other.lines
        self.new_events += other.new_events
        self.duplicates += other.duplicates
        self.records += other.records
        self.quarantined += other.quarantined
        self.errors.extend(other.errors[: max(0, 10 - len(self.errors))])

    def summary(self) -> str:
        return (
            f"{self.lines:,} lines: {self.new_events:,} new, {self.duplicates:,} duplicate, "
            f"{self.records:,} records, {self.quarantined:,} quarantined"
        )


_BILLED_TYPES = (
    tuple(STATUS_TYPES) + tuple(THREAD_STATUS_TYPES) + tuple(TOOL_USE_TYPES)
    + ("span.model_request_end", "session.usage", "session.thread_created", "session.updated")
)


def _write_typed_rows(con: duckdb.DuckDBPyConnection, ingest_id: int) -> None:
    """Insert the staged new events into `events` and their typed tables."""
    con.execute(f"INSERT INTO events SELECT event_id, session_id, kind, at_ms, thread_id, "
                f"{ingest_id} FROM new_events")
    status_cases = " ".join(
        f"WHEN '{t}' THEN '{v}'" for t, v in {**STATUS_TYPES, **THREAD_STATUS_TYPES}.items()
    )
    con.execute(f"""
        INSERT INTO status_events
        SELECT event_id, session_id, thread_id, CASE kind {status_cases} END, at_ms, stop_reason
        FROM new_events WHERE kind IN {tuple(STATUS_TYPES) + tuple(THREAD_STATUS_TYPES)}
    """)
    con.execute("""
        INSERT INTO model_requests
        SELECT event_id, session_id, thread_id, at_ms, mu_input, mu_output, mu_cache_write,
               mu_cache_read, mu_speed, is_error
        FROM new_events WHERE kind = 'span.model_request_end'
    """)
    con.execute("""
        INSERT INTO usage_snapshots
        SELECT event_id, session_id, at_ms, u_input, u_output, u_cache_read, u_cache_5m,
               u_cache_1h, coalesce(u_searches, 0), coalesce(u_fetches, 0), u_active_ms,
               u_list_cost_cents, u_currency
        FROM new_events WHERE kind = 'session.usage'
    """)
    tool_cases = " ".join(f"WHEN '{t}' THEN '{v}'" for t, v in TOOL_USE_TYPES.items())
    con.execute(f"""
        INSERT INTO tool_uses
        SELECT event_id, session_id, thread_id, at_ms, CASE kind {tool_cases} END, name
        FROM new_events WHERE kind IN {tuple(TOOL_USE_TYPES)}
    """)
    con.execute("""
        INSERT INTO threads
        SELECT event_id, session_id, thread_id, agent_name, model_id, at_ms
        FROM new_events WHERE kind = 'session.thread_created'
    """)
    con.execute("""
        INSERT INTO session_updates
        SELECT event_id, session_id, at_ms, metadata, title
        FROM new_events WHERE kind = 'session.updated'
    """)
    # Unbilled events keep their whole line; fetch lines only for those (usually few) rows.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE new_other AS
        SELECT line_no, event_id, session_id, kind, at_ms FROM new_events
        WHERE kind NOT IN {_BILLED_TYPES}
    """)
    if con.execute("SELECT count(*) FROM new_other").fetchall()[0][0]:
        con.execute("""
            INSERT INTO other_events
            SELECT n.event_id, n.session_id, n.kind, n.at_ms, b.line::JSON
            FROM new_other n JOIN (SELECT * FROM batch_lines
                                   WHERE line_no IN (SELECT line_no FROM new_other)) b
                 USING (line_no)
        """)


def _apply_records(con: duckdb.DuckDBPyConnection, ingest_id: int) -> int:
    """Upsert session, agent and environment records; the latest `updated_at` wins."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE new_records AS
        SELECT * FROM stage WHERE error IS NULL AND kind IN {RECORD_TYPES}
        QUALIFY row_number() OVER (PARTITION BY kind, event_id
                                   ORDER BY updated_ms DESC, line_no DESC) = 1
    """)
    con.execute(f"""
        INSERT INTO sessions
        SELECT event_id, created_ms, updated_ms, status, title, environment_id, agent_id,
               agent_version, session_agent_name, agent_model_id, agent_model_speed,
               agent_inference_geo, metadata, roster, archived_ms, {ingest_id}
        FROM new_records WHERE kind = 'session'
        {latest_wins('sessions')}
    """)
    con.execute(f"""
        INSERT INTO agents
        SELECT event_id, version, name, model_id, model_speed, inference_geo, metadata,
               updated_ms, {ingest_id}
        FROM new_records WHERE kind = 'agent'
        {latest_wins('agents')}
    """)
    con.execute(f"""
        INSERT INTO environments
        SELECT event_id, name, metadata, updated_ms, {ingest_id}
        FROM new_records WHERE kind = 'environment'
        {latest_wins('environments')}
    """)
    return int(con.execute("SELECT count(*) FROM new_records").fetchall()[0][0])


def _ingest_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    ingest_id: int,
    max_future_ms: int,
) -> IngestResult:
    """Validate and store the lines of relation `batch_lines` in a single transaction.

    Either the whole batch lands (events, typed rows, records, quarantine) or none of it, so
    a crash between batches loses nothing that was reported stored, and re-running the same
    input afterwards only finds duplicates.
    """
    now_ms = int(time.time() * 1000)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_STAGE_SQL, {"shape": _SHAPE, "max_ms": now_ms + max_future_ms})
        # First sight of each id in the batch, and only ids the store has not seen before.
        # The stored ids are probed with the batch's (a hash of the batch, not of the store:
        # memory and time follow the batch, the scan reads one column).
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE new_lines AS
            WITH batch AS (
                SELECT line_no, event_id FROM stage
                WHERE error IS NULL AND kind NOT IN {RECORD_TYPES}
            ), seen AS (
                SELECT event_id FROM events
                WHERE event_id IN (SELECT event_id FROM batch)
            )
            SELECT min(line_no) AS line_no FROM batch
            WHERE event_id NOT IN (SELECT event_id FROM seen)
            GROUP BY event_id
        """)
        new, valid = con.execute(f"""
            SELECT (SELECT count(*) FROM new_lines),
                   (SELECT count(*) FROM stage WHERE error IS NULL
                      AND kind NOT IN {RECORD_TYPES})""").fetchall()[0]
        # The common case, fresh data, needs no join back: every valid event is new.
        only_new = "" if new == valid else "AND line_no IN (SELECT line_no FROM new_lines)"
        con.execute("CREATE OR REPLACE TEMP VIEW new_events AS SELECT * FROM stage "
                    f"WHERE error IS NULL AND kind NOT IN {RECORD_TYPES} {only_new}")
        _write_typed_rows(con, ingest_id)
        records = _apply_records(con, ingest_id)
        # Quarantine keyed by (source, line, text) so that re-ingesting a file adds nothing.
        bad = con.execute("SELECT count(*) FROM stage WHERE error IS NOT NULL").fetchall()[0][0]
        con.execute(f"""
            INSERT INTO quarantine
            SELECT $ingest_id, $source, s.line_no, b.line,
                   {_RECORD_LABEL} || error, $now
            FROM (SELECT * FROM stage WHERE error IS NOT NULL) s
            JOIN (SELECT * FROM batch_lines
                  WHERE line_no IN (SELECT line_no FROM stage WHERE error IS NOT NULL)) b
                 USING (line_no)
            WHERE NOT EXISTS (
                SELECT 1 FROM quarantine q
                WHERE q.source = $source AND q.line_no = s.line_no AND q.raw = b.line)
        """, {"ingest_id": ingest_id, "source": source, "now": now_ms}) if bad else None
        counts = (new, valid, bad,
                  con.execute("SELECT count(*) FROM stage").fetchall()[0][0])
        errors = [
            f"{source}:{n}: {e}" for n, e in con.execute(
                f"SELECT line_no, {_RECORD_LABEL} || error "
                "FROM stage WHERE error IS NOT NULL ORDER BY line_no LIMIT 10"
            ).fetchall()
        ]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    new, valid_events, quarantined = (int(c) for c in counts[:3])
    return IngestResult(
        lines=int(counts[3]), new_events=new, duplicates=valid_events - new, records=records,
        quarantined=quarantined, errors=errors,
    )


def _batched(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _IngestRun:
    """One logged ingest: an `ingest_log` row opened at the start and closed with the counts."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, max_future_ms: int):
        self.con, self.source, self.max_future_ms = con, source, max_future_ms
        self.ingest_id = next_ingest_id(con)
        self.total = IngestResult()
        con.execute(
            "INSERT INTO ingest_log (ingest_id, source, started_ms) VALUES (?, ?, ?)",
            [self.ingest_id, source, int(time.time() * 1000)],
        )

    def batch(self) -> None:
        """Ingest what relation `batch_lines` holds now."""
        self.total.add(_ingest_batch(self.con, source=self.source, ingest_id=self.ingest_id,
                                     max_future_ms=self.max_future_ms))

    def finish(self) -> IngestResult:
        t = self.total
        self.con.execute(
            "UPDATE ingest_log SET finished_ms = ?, lines = ?, new_events = ?, duplicates = ?, "
            "records = ?, quarantined = ? WHERE ingest_id = ?",
            [int(time.time() * 1000), t.lines, t.new_events, t.duplicates, t.records,
             t.quarantined, self.ingest_id],
        )
        return t


def _feed_batches(run: _IngestRun, con: duckdb.DuckDBPyConnection, lines: Iterable[str], *,
                  first: int, batch_lines: int,
                  progress: Callable[[int], None] | None) -> None:
    """Lines held in Python through `run`, a batch at a time, numbered from `first`; blank
    lines are skipped (and counted)."""
    line_no = first
    for batch in _batched(lines, batch_lines):
        kept = [i for i, text in enumerate(batch) if text.strip()]
        if kept:
            con.register("batch_lines", pa.table({
                "line_no": pa.array([line_no + i for i in kept], pa.int64()),
                "line": pa.array([batch[i] for i in kept], pa.string()),
            }))
            try:
                run.batch()
            finally:
                con.unregister("batch_lines")
        line_no += len(batch)
        if progress:
            progress(len(batch))


def ingest_lines(
    con: duckdb.DuckDBPyConnection,
    lines: Iterable[str],
    *,
    source: str,
    batch_lines: int = BATCH_LINES,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest JSON lines held in memory (the collector's buffer, stdin) in batches.

    Line numbers count from 1 across the whole iterable; blank lines are skipped.
    """
    run = _IngestRun(con, source, max_future_ms)
    _feed_batches(run, con, lines, first=1, batch_lines=batch_lines, progress=progress)
    return run.finish()


def _gathered(reader: pa.RecordBatchReader, size: int) -> Iterator[pa.ChunkedArray]:
    """The first column of a stream of record batches, regrouped into runs of `size` rows
    (the stream yields small batches; each ingest batch has a fixed cost)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= size:
            yield pa.Table.from_batches(pending).column(0)
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending).column(0)


def _read_lines_sql(path: str) -> str:
    """DuckDB reading a file as one VARCHAR column, one row per line, in file order (a
    streaming query: no window or sort that would hold the whole file)."""
    compression = "gzip" if path.endswith(".gz") else "none"
    return (
        "SELECT line FROM read_csv($path, "
        "columns = {'line': 'VARCHAR'}, header = false, delim = '\x1e', quote = '', "
        f"escape = '', auto_detect = false, strict_mode = false, null_padding = true, "
        f"compression = '{compression}')"
    )


def _text_lines(path: str) -> Iterator[str]:
    """The slow but forgiving reader: undecodable bytes become U+FFFD and get quarantined."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8",
                                                     errors="replace") as text:
        for line in text:
            yield line.rstrip("\r\n")


def ingest_path(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    batch_lines: int = BATCH_LINES,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest one JSONL file (`.jsonl`, `.jsonl.gz`, or `-` for stdin).

    Files are split into lines by DuckDB itself (no Python loop per line) and streamed a batch
    at a time, so memory follows the batch, not the file; from a line that is not valid UTF-8
    on, a Python reader that replaces the bad bytes (to be quarantined) takes over.
    """
    name = str(path)
    if name == "-":
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return ingest_lines(con, (ln.rstrip("\r\n") for ln in stdin), source="<stdin>",
                            batch_lines=batch_lines, max_future_ms=max_future_ms,
                            progress=progress)
    if not Path(name).is_file():
        raise FileNotFoundError(f"{name}: no such file")
    run = _IngestRun(con, name, max_future_ms)
    done = 0
    try:
        # Streamed: a batch of lines at a time, whatever the file's size (memory stays
        # bounded). Read on a cursor of its own, since `con` writes between batches.
        reader = con.cursor().sql(_read_lines_sql(name), params={"path": name}
                                  ).to_arrow_reader(batch_lines)
        for lines in _gathered(reader, batch_lines):
            n = len(lines)
            con.register("batch_lines", pa.table({
                "line_no": pa.array(range(done + 1, done + n + 1), pa.int64()),
                "line": lines}))
            try:
                run.batch()
            finally:
                con.unregister("batch_lines")
            done += n
            if progress:
                progress(n)
    except (duckdb.InvalidInputException, OSError) as exc:
        # Not valid UTF-8 from some line on (raised by DuckDB, or through the Arrow stream
        # as an OSError): the forgiving reader goes on from there. Other errors stand.
        if "utf-8" not in str(exc).lower() and "unicode" not in str(exc).lower():
            raise
        _feed_batches(run, con, islice(_text_lines(name), done, None), first=done + 1,
                      batch_lines=batch_lines, progress=progress)
    return run.finish()
