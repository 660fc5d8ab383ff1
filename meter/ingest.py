"""Bulk ingest: raw JSON lines in, typed rows, quarantine and an ingest log out.

Every way into the store ends here (files, stdin, the live collector, the simulator's JSONL),
so de-duplication and validation happen in one place. Lines are validated set-wise in DuckDB:
each line is parsed once (`json_transform` into a struct), every check is a column
expression, and the first failing check names the field. `meter.events` holds the same rules
as pydantic models; a test keeps the two in agreement.

What a line must satisfy beyond its shape: counts and times within the plausibility bounds
(`meter.events.Bounds`), times with a zone, a known `speed`, and, for a `session.usage`
snapshot, no cumulative counter below an earlier snapshot of its session (nor above a later
stored one). An event is new unless the store holds its (session_id, event_id); an id that
another session also uses is kept and reported as a collision.

How an ingest shares the store and what a crash leaves: lines are processed in batches sized
to take under AGENTTALLY_WRITE_HOLD_S each (with the commit); when a process waits for the
file (`meter.store.WriteHold`), the open transaction is committed after the batch and the
file released, so a reader waits about one batch. Nobody waiting, batches share a
transaction of up to TRANSACTION_LINES lines (a commit, and the checkpoint it brings, costs
per transaction). A transaction commits its batches' rows, quarantine and the run's progress
in `ingest_log` together: a run killed mid-file keeps whole transactions only, and shows as
interrupted. A `.gz` input is read to its end first (CRC and length): a corrupt one fails
before anything is stored.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO

import duckdb
import pyarrow as pa

from meter.errors import UsageError
from meter.events import KNOWN_SPEEDS, Bounds
from meter.store import (
    LoggedRun,
    WriteHold,
    latest_wins,
    others_waiting,
    session_starts_upsert,
    this_host,
)

BATCH_LINES = 1_000_000  # the most lines of one batch; the pace sets fewer on a slow machine
TRANSACTION_LINES = 1_000_000  # the most lines one transaction commits (its batches' memory)
FIRST_BATCH_LINES = 100_000  # before the pace is known
MIN_BATCH_LINES = 10_000
_READ_CHUNK_LINES = 100_000  # the file reader's Arrow batches (a batch scans its chunks)
DEFAULT_MAX_FUTURE_MS = 24 * 3600 * 1000
_PACE_MARGIN = 0.8  # a batch aims at 80% of the write hold, as fast as the last one went
GZIP_MAGIC = b"\x1f\x8b"

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
            f"AND NOT contains({leaf}, 'e') AND NOT contains({leaf}, 'E'))")


def _count(leaf: str, bound: str) -> str:
    """The leaf as BIGINT when it is a count within `bound` (a bound parameter), else NULL."""
    return (f"CASE WHEN {_is_count(leaf)} AND TRY_CAST({leaf} AS UBIGINT) <= {bound} "
            f"THEN CAST({leaf} AS BIGINT) END")


def _int_check(leaf: str, value: str, label: str, bound: str, variable: str,
               required: bool = True) -> str:
    """Error text when the JSON leaf is not a non-negative integer within `bound`; `value` is
    its parse (NULL when it is not one)."""
    missing = f"'{label}: missing'" if required else "NULL"
    return (
        f"CASE WHEN {value} IS NOT NULL THEN NULL WHEN {leaf} IS NULL THEN {missing} "
        f"WHEN starts_with({leaf}, '-') AND TRY_CAST({leaf} AS BIGINT) IS NOT NULL "
        f"THEN '{label}: must be >= 0, got ' || {leaf} "
        f"WHEN regexp_full_match({leaf}, '[0-9]+') THEN '{label}: ' || {leaf} "
        f"|| ' exceeds the plausible bound ' || {bound} || ' ({variable})' "
        f"ELSE '{label}: expected an integer, got ' || left({leaf}, 40) END"
    )


def _string_check(leaf: str, label: str) -> str:
    return f"CASE WHEN {leaf} IS NULL OR {leaf} = '' THEN '{label}: missing' END"


def _speed_check(leaf: str, label: str) -> str:
    known = ", ".join(f"'{s}'" for s in KNOWN_SPEEDS)
    return (f"CASE WHEN {leaf} IS NOT NULL AND {leaf} NOT IN ({known}) "
            f"THEN '{label}: unknown speed ' || left({leaf}, 40) "
            f"|| ' (expected {' or '.join(KNOWN_SPEEDS)}; it would be billed at a guess)' END")


def _ts(leaf: str) -> str:
    return f"epoch_ms(TRY_CAST({leaf} AS TIMESTAMPTZ))"


# A zone after the time of day: an offset (+02:00, +0200, +02) or a zone name (UTC,
# Europe/Paris); Z is tested apart, first, being the common case.
_ZONE_RE = (r"'[0-9]:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)? ?([+-][0-9]{2}(:?[0-9]{2})?"
            r"|UTC|GMT|[A-Za-z]+/[A-Za-z_/+-]+)$'")


def _time_check(leaf: str, ms: str, label: str, required: bool) -> str:
    """Error text for a timestamp leaf whose parsed value (epoch ms) is column `ms`: missing,
    unreadable, beyond the bounds ($max_ms: now + skew, $min_ms), or without a zone."""
    missing = f"'{label}: missing'" if required else "NULL"
    return (
        f"CASE WHEN {leaf} IS NULL THEN {missing} "
        f"WHEN {ms} IS NULL THEN '{label}: not an RFC 3339 timestamp: ' || left({leaf}, 40) "
        f"WHEN {ms} > $max_ms THEN '{label}: lies in the future beyond the allowed skew: ' "
        f"|| {leaf} "
        f"WHEN {ms} < $min_ms THEN '{label}: ' || {leaf} || ' is before the earliest "
        f"plausible time ' || $min_text || ' (AGENTTALLY_EARLIEST_TIME)' "
        f"WHEN right({leaf}, 1) IN ('Z', 'z') THEN NULL "
        f"WHEN regexp_matches({leaf}, {_ZONE_RE}) THEN NULL "
        f"ELSE '{label}: no time zone (expected e.g. 2026-11-03T09:00:00Z, a zone is never "
        f"guessed): ' || left({leaf}, 40) END"
    )


# Typed columns the stage carries, by name: (SQL over the parsed struct `s`, check or None).
# Token counts become BIGINT only when valid and within bounds; the check gives the error
# text otherwise. Bounds are query parameters ($max_request, ...; see meter.events.Bounds).
_MU, _U = "s.model_usage", "s.usage"
_REQUEST = ("$max_request", "AGENTTALLY_MAX_REQUEST_TOKENS")
_SESSION = ("$max_session", "AGENTTALLY_MAX_SESSION_TOKENS")
_WEB = ("$max_web", "AGENTTALLY_MAX_WEB_REQUESTS")
_SPAN_COUNTS = {
    "mu_input": (f"{_MU}.input_tokens", "model_usage.input_tokens"),
    "mu_output": (f"{_MU}.output_tokens", "model_usage.output_tokens"),
    "mu_cache_write": (f"{_MU}.cache_creation_input_tokens",
                       "model_usage.cache_creation_input_tokens"),
    "mu_cache_read": (f"{_MU}.cache_read_input_tokens", "model_usage.cache_read_input_tokens"),
}
_USAGE_COUNTS = {
    "u_input": (f"{_U}.input_tokens", "usage.input_tokens", True, _SESSION),
    "u_output": (f"{_U}.output_tokens", "usage.output_tokens", True, _SESSION),
    "u_cache_read": (f"{_U}.cache_read_input_tokens", "usage.cache_read_input_tokens", True,
                     _SESSION),
    "u_cache_5m": (f"{_U}.cache_creation.ephemeral_5m_input_tokens",
                   "usage.cache_creation.ephemeral_5m_input_tokens", True, _SESSION),
    "u_cache_1h": (f"{_U}.cache_creation.ephemeral_1h_input_tokens",
                   "usage.cache_creation.ephemeral_1h_input_tokens", True, _SESSION),
    "u_searches": (f"{_U}.server_tool_use.web_search_requests",
                   "usage.server_tool_use.web_search_requests", False, _WEB),
    "u_fetches": (f"{_U}.server_tool_use.web_fetch_requests",
                  "usage.server_tool_use.web_fetch_requests", False, _WEB),
}
_BOUND_OF = {**{name: _REQUEST[0] for name in _SPAN_COUNTS},
             **{name: spec[3][0] for name, spec in _USAGE_COUNTS.items()}}
_EVENT_CHECKS = {
    "span.model_request_end": [
        _int_check(leaf, name, label, *_REQUEST) for name, (leaf, label) in _SPAN_COUNTS.items()]
    + [_speed_check(f"{_MU}.speed", "model_usage.speed")],
    "session.usage": [
        _int_check(leaf, name, label, *bound, required=req)
        for name, (leaf, label, req, bound) in _USAGE_COUNTS.items()]
    + [
        f"CASE WHEN {_U}.active_seconds IS NOT NULL AND "
        f"coalesce(TRY_CAST({_U}.active_seconds AS DECIMAL(18,3)) < 0, true) "
        f"THEN 'usage.active_seconds: expected a number >= 0, got ' "
        f"|| left({_U}.active_seconds, 40) END",
        f"CASE WHEN {_U}.list_cost.amount IS NOT NULL AND "
        f"NOT regexp_full_match({_U}.list_cost.amount, '[0-9]+') "
        f"THEN 'usage.list_cost.amount: expected whole cents as a string, got ' "
        f"|| left({_U}.list_cost.amount, 40) "
        f"WHEN {_U}.list_cost.amount IS NOT NULL AND "
        f"TRY_CAST({_U}.list_cost.amount AS BIGINT) IS NULL "
        f"THEN 'usage.list_cost.amount: ' || left({_U}.list_cost.amount, 40) "
        f"|| ' cents is beyond any plausible cost' END",
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
        _speed_check("s.agent.model->>'$.speed'", "agent.model.speed"),
    ],
    "agent": [_string_check("s.id", "id"), _speed_check("s.model->>'$.speed'", "model.speed")],
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
    leaves = {**{n: spec[0] for n, spec in _SPAN_COUNTS.items()},
              **{n: spec[0] for n, spec in _USAGE_COUNTS.items()}}
    kind_of = {**{n: "span.model_request_end" for n in _SPAN_COUNTS},
               **{n: "session.usage" for n in _USAGE_COUNTS}}
    # a count is parsed only on the lines of the one type that carries it
    counts = ",\n".join(
        f"CASE WHEN s.type = '{kind_of[name]}' THEN {_count(leaf, _BOUND_OF[name])} END "
        f"AS {name}" for name, leaf in leaves.items())
    return f"""
    CREATE OR REPLACE TEMP TABLE stage AS
    WITH parsed AS (
        SELECT line_no, line, json_valid(line) AS ok FROM batch_lines
        WHERE line <> '' AND (starts_with(line, '{{') OR trim(line) <> '')
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
    id_collisions: int = 0  # new events whose id another session also uses (kept, reported)
    errors: list[str] = field(default_factory=list)  # the first few, for the CLI
    warnings: list[str] = field(default_factory=list)  # the first few collisions

    def add(self, other: IngestResult) -> None:
        self.lines += other.lines
        self.new_events += other.new_events
        self.duplicates += other.duplicates
        self.records += other.records
        self.quarantined += other.quarantined
        self.id_collisions += other.id_collisions
        self.errors.extend(other.errors[: max(0, 10 - len(self.errors))])
        self.warnings.extend(other.warnings[: max(0, 10 - len(self.warnings))])

    def summary(self) -> str:
        return (
            f"{self.lines:,} lines: {self.new_events:,} new, {self.duplicates:,} duplicate, "
            f"{self.records:,} records, {self.quarantined:,} quarantined"
            + (f", {self.id_collisions:,} ids also used by another session"
               if self.id_collisions else "")
        )


_BILLED_TYPES = (
    tuple(STATUS_TYPES) + tuple(THREAD_STATUS_TYPES) + tuple(TOOL_USE_TYPES)
    + ("span.model_request_end", "session.usage", "session.thread_created", "session.updated")
)


def _write_typed_rows(con: duckdb.DuckDBPyConnection, ingest_id: int) -> None:
    """Insert the staged new events into `events` and their typed tables."""
    con.execute(f"INSERT INTO events SELECT event_id, session_id, kind, at_ms, thread_id, "
                f"{ingest_id} FROM new_events")
    con.execute(session_starts_upsert("SELECT session_id, at_ms FROM new_events"))
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


# What the record upserts read of the stage (its other columns are the events'): the few
# records of a batch are found on narrow columns first, then only these are read.
_RECORD_COLUMNS = (
    "kind", "event_id", "line_no", "created_ms", "updated_ms", "status", "title",
    "environment_id", "agent_id", "agent_version", "session_agent_name", "agent_model_id",
    "agent_model_speed", "agent_inference_geo", "metadata", "roster", "archived_ms", "version",
    "name", "model_id", "model_speed", "inference_geo")


def _apply_records(con: duckdb.DuckDBPyConnection, ingest_id: int) -> int:
    """Upsert session, agent and environment records; the latest `updated_at` wins."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE new_records AS
        SELECT {", ".join(_RECORD_COLUMNS)} FROM stage
        WHERE line_no IN (
            SELECT line_no FROM stage WHERE error IS NULL AND kind IN {RECORD_TYPES}
            QUALIFY row_number() OVER (PARTITION BY kind, event_id
                                       ORDER BY updated_ms DESC, line_no DESC) = 1)
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


_ISO = "strftime(make_timestamp({} * 1000), '%Y-%m-%dT%H:%M:%S.%gZ')"

# The snapshot counters (stage column, store column, field named in errors), in field order.
_SNAPSHOT_COUNTERS = [
    ("u_input", "input_tokens", "usage.input_tokens"),
    ("u_output", "output_tokens", "usage.output_tokens"),
    ("u_cache_read", "cache_read_tokens", "usage.cache_read_input_tokens"),
    ("u_cache_5m", "cache_write_5m_tokens", "usage.cache_creation.ephemeral_5m_input_tokens"),
    ("u_cache_1h", "cache_write_1h_tokens", "usage.cache_creation.ephemeral_1h_input_tokens"),
    ("u_searches", "web_search_requests", "usage.server_tool_use.web_search_requests"),
    ("u_fetches", "web_fetch_requests", "usage.server_tool_use.web_fetch_requests"),
]


def _snapshot_order_sql() -> str:
    """Temp table `usage_refused` (line_no, error): the batch's new `session.usage` snapshots
    (lines not duplicates) with a cumulative counter below the largest value of that counter
    in an earlier snapshot of the session (stored, or in the batch), or above the smallest in
    a later stored one. Rating bills the differences between consecutive snapshots: such a
    snapshot would take back usage already counted, so it stays out of the store.
    Snapshots are ordered as rating orders them: by at_ms, then event id."""
    stored_cols = ", ".join(f"{col} AS {c}" for c, col, _ in _SNAPSHOT_COUNTERS)
    windows = ",\n".join(
        f"max_by({{'v': {c}, 'at': at_ms, 'id': event_id}}, {c}) OVER before AS before_{c}, "
        f"min_by({{'v': {c}, 'at': at_ms, 'id': event_id}}, "
        f"CASE WHEN line_no IS NULL THEN {c} END) OVER after AS after_{c}"
        for c, _, _ in _SNAPSHOT_COUNTERS)
    checks = ",\n".join(
        f"CASE WHEN {c} < before_{c}.v THEN '{label}: went down from ' || before_{c}.v "
        f"|| ' (event ' || before_{c}.id || ' at ' || {_ISO.format(f'before_{c}.at')} "
        f"|| ') to ' || {c} || '; a cumulative counter never decreases' "
        f"WHEN {c} > after_{c}.v THEN '{label}: ' || {c} || ' exceeds ' || after_{c}.v "
        f"|| ' of the later snapshot (event ' || after_{c}.id || ' at ' "
        f"|| {_ISO.format(f'after_{c}.at')} || '); a cumulative counter never decreases' END"
        for c, _, label in _SNAPSHOT_COUNTERS)
    return f"""
    CREATE OR REPLACE TEMP TABLE usage_refused AS
    WITH snapshots AS (
        SELECT * FROM usage_fresh WHERE session_id IN (SELECT session_id FROM usage_suspects)
        UNION ALL
        SELECT NULL::BIGINT, event_id, session_id, at_ms, {stored_cols} FROM usage_snapshots
        WHERE session_id IN (SELECT session_id FROM usage_suspects)
    ), compared AS (
        SELECT line_no, {", ".join(c for c, _, _ in _SNAPSHOT_COUNTERS)}, {windows}
        FROM snapshots
        WINDOW before AS (PARTITION BY session_id ORDER BY at_ms, event_id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               after AS (PARTITION BY session_id ORDER BY at_ms, event_id
                         ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
    )
    SELECT line_no, coalesce({checks}) AS error FROM compared
    WHERE line_no IS NOT NULL AND error IS NOT NULL
    """


def _snapshot_suspects_sql() -> str:
    """Temp tables `usage_fresh` (the batch's new snapshots) and `usage_suspects`: the
    sessions where some counter of the new and stored snapshots, in order, goes down. The
    cheap pass (lag, no framed windows): in the common case no session is a suspect, and the
    exact comparison (`_snapshot_order_sql`) does not run at all."""
    fresh_cols = ", ".join(f"coalesce({c}, 0) AS {c}" for c, _, _ in _SNAPSHOT_COUNTERS)
    stored_cols = ", ".join(f"{col} AS {c}" for c, col, _ in _SNAPSHOT_COUNTERS)
    down = " OR ".join(f"{c} < lag({c}) OVER w" for c, _, _ in _SNAPSHOT_COUNTERS)
    return f"""
    CREATE OR REPLACE TEMP TABLE usage_fresh AS
    SELECT line_no, event_id, session_id, at_ms, {fresh_cols}
    FROM stage WHERE kind = 'session.usage' AND error IS NULL {{only_new}};
    CREATE OR REPLACE TEMP TABLE usage_suspects AS
    SELECT DISTINCT session_id FROM (
        SELECT * FROM usage_fresh
        UNION ALL
        SELECT NULL::BIGINT, event_id, session_id, at_ms, {stored_cols} FROM usage_snapshots
        WHERE session_id IN (SELECT session_id FROM usage_fresh))
    WINDOW w AS (PARTITION BY session_id ORDER BY at_ms, event_id)
    QUALIFY {down}
    """


_SNAPSHOT_SUSPECTS_SQL = _snapshot_suspects_sql()
_SNAPSHOT_ORDER_SQL = _snapshot_order_sql()


_VALID_EVENTS = f"error IS NULL AND kind NOT IN {RECORD_TYPES}"


def _find_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """Temp tables `stored_ids` (the stored (event_id, session_id) pairs of the batch's ids)
    and `touched` (line_no, session_id, event_id, dup): the valid event lines whose id the
    store holds or the batch uses on more than one line, `dup` when the line repeats an event
    the store holds or an earlier line of the batch. Every other valid line is a new event
    that no other session shares: the common case costs one pass over the batch's ids and
    one probe of the stored ids with them, and what follows works on the few touched lines.

    An event's identity is (session_id, event_id): the provider numbers events per session,
    so one id in two sessions is two events. The stored ids are probed with the batch's (a
    hash of the batch, not of the store: memory and time follow the batch)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE stored_ids AS
        SELECT DISTINCT event_id, session_id FROM events
        WHERE event_id IN (SELECT event_id FROM stage WHERE {_VALID_EVENTS})
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE touched AS
        WITH repeated AS (  -- hashes of ids on more than one line (a collision only adds)
            SELECT hash(event_id) AS h FROM stage WHERE {_VALID_EVENTS}
            GROUP BY h HAVING count(*) > 1
        )
        SELECT t.line_no, t.session_id, t.event_id,
               s.event_id IS NOT NULL OR row_number() OVER (
                   PARTITION BY t.session_id, t.event_id ORDER BY t.line_no) > 1 AS dup
        FROM (SELECT line_no, session_id, event_id FROM stage
              WHERE {_VALID_EVENTS} AND (hash(event_id) IN (SELECT h FROM repeated)
                                         OR event_id IN (SELECT event_id FROM stored_ids))) t
        LEFT JOIN stored_ids s USING (event_id, session_id)
    """)


def _collisions(con: duckdb.DuckDBPyConnection, source: str) -> tuple[int, list[str]]:
    """The new events whose id another session uses too (in the store or in the batch): how
    many, and the first few as `source:line: event ...: ...` warnings. Such an id is used on
    more than one line of the batch or held by the store: its new lines are in `touched`."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE id_collisions AS
        WITH fresh AS (
            SELECT line_no, event_id, session_id FROM touched WHERE NOT dup
        ), users AS (
            SELECT event_id, session_id FROM fresh UNION SELECT event_id, session_id
            FROM stored_ids
        )
        SELECT n.line_no, n.event_id, n.session_id,
               string_agg(DISTINCT u.session_id, ', ' ORDER BY u.session_id) AS others
        FROM fresh n JOIN users u ON u.event_id = n.event_id AND u.session_id <> n.session_id
        GROUP BY ALL
    """)
    count = int(con.execute("SELECT count(*) FROM id_collisions").fetchall()[0][0])
    if not count:
        return 0, []
    return count, [
        f"{source}:{n}: event {e} of session {sid}: the id is also used by session {others}; "
        "kept as a separate event (events are identified by session and id)"
        for n, e, sid, others in con.execute(
            "SELECT line_no, event_id, session_id, others FROM id_collisions "
            "ORDER BY line_no LIMIT 10").fetchall()]


def _new_and_valid(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(new events, valid events) of the staged batch: the valid event lines less the
    duplicates among them (refused snapshots are no longer valid, and never duplicates)."""
    valid, dups = con.execute(f"""
        SELECT (SELECT count(*) FROM stage WHERE {_VALID_EVENTS}),
               (SELECT count(*) FROM touched WHERE dup)""").fetchall()[0]
    return int(valid) - int(dups), int(valid)


def _refuse_decreasing_snapshots(con: duckdb.DuckDBPyConnection, *, all_new: bool) -> bool:
    """Quarantine the new snapshots that would take back counted usage (see
    `_snapshot_order_sql`): their error set in `stage`, their lines out of `touched`.
    `all_new`: every valid line is new (no duplicate to leave out). True when some were
    refused."""
    if not con.execute("SELECT count(*) FROM stage WHERE kind = 'session.usage' "
                       "AND error IS NULL").fetchall()[0][0]:
        return False
    con.execute(_SNAPSHOT_SUSPECTS_SQL.format(
        only_new="" if all_new
        else "AND line_no NOT IN (SELECT line_no FROM touched WHERE dup)"))
    if not con.execute("SELECT count(*) FROM usage_suspects").fetchall()[0][0]:
        return False
    con.execute(_SNAPSHOT_ORDER_SQL)
    if not con.execute("SELECT count(*) FROM usage_refused").fetchall()[0][0]:
        return False
    con.execute("UPDATE stage SET error = r.error FROM usage_refused r "
                "WHERE stage.line_no = r.line_no")
    con.execute("DELETE FROM touched WHERE line_no IN (SELECT line_no FROM usage_refused)")
    return True


def _ingest_batch(con: duckdb.DuckDBPyConnection, run: _IngestRun) -> IngestResult:
    """Validate and store the lines of relation `batch_lines` inside the run's open
    transaction (`_IngestRun.batch`): events, typed rows, records, quarantine, and the run's
    progress in `ingest_log` land together with the transaction's other batches or not at
    all, so a crash loses nothing that was reported stored, and re-running the same input
    afterwards only finds duplicates.
    """
    now_ms = int(time.time() * 1000)
    source, bounds = run.source, run.bounds
    ingest_id = run.current_id()
    con.execute(_STAGE_SQL, {
        "shape": _SHAPE, "max_ms": now_ms + run.max_future_ms,
        "min_ms": bounds.earliest_ms, "min_text": _iso(bounds.earliest_ms),
        "max_request": bounds.request_tokens, "max_session": bounds.session_tokens,
        "max_web": bounds.web_requests})
    _find_duplicates(con)
    new, valid = _new_and_valid(con)
    if _refuse_decreasing_snapshots(con, all_new=new == valid):
        new, valid = _new_and_valid(con)
    collisions, warnings = _collisions(con, source)
    # The common case, fresh data, needs no join back: every valid event is new.
    only_new = ("" if new == valid
                else "AND line_no NOT IN (SELECT line_no FROM touched WHERE dup)")
    con.execute("CREATE OR REPLACE TEMP VIEW new_events AS SELECT * FROM stage "
                f"WHERE {_VALID_EVENTS} {only_new}")
    _write_typed_rows(con, ingest_id)
    records = _apply_records(con, ingest_id)
    # Quarantine keyed by (source, line, text) so that re-ingesting a file adds nothing.
    bad = con.execute("SELECT count(*) FROM stage WHERE error IS NOT NULL").fetchall()[0][0]
    con.execute(f"""
        INSERT INTO quarantine
        SELECT $ingest_id, $source, s.line_no, b.line,
               {_RECORD_LABEL} || error, $now
        FROM (SELECT line_no, kind, event_id, error FROM stage WHERE error IS NOT NULL) s
        JOIN (SELECT * FROM batch_lines
              WHERE line_no IN (SELECT line_no FROM stage WHERE error IS NOT NULL)) b
             USING (line_no)
        WHERE NOT EXISTS (
            SELECT 1 FROM quarantine q
            WHERE q.source = $source AND q.line_no = s.line_no AND q.raw = b.line)
    """, {"ingest_id": ingest_id, "source": source, "now": now_ms}) if bad else None
    lines = con.execute("SELECT count(*) FROM stage").fetchall()[0][0]
    errors = [
        f"{source}:{n}: {e}" for n, e in con.execute(
            f"SELECT line_no, {_RECORD_LABEL} || error "
            "FROM stage WHERE error IS NOT NULL ORDER BY line_no LIMIT 10"
        ).fetchall()
    ]
    result = IngestResult(
        lines=int(lines), new_events=int(new), duplicates=int(valid) - int(new),
        records=records, quarantined=int(bad), id_collisions=collisions, errors=errors,
        warnings=warnings)
    run.log_progress(result, now_ms)
    return result


def _iso(epoch_ms: int) -> str:
    from meter.vocabulary import iso_ms

    return iso_ms(epoch_ms)


def _batched(lines: Iterable[str], size: Callable[[], int]) -> Iterator[list[str]]:
    """`lines` in lists of `size()` lines (asked again after each list)."""
    batch: list[str] = []
    limit = size()
    for line in lines:
        batch.append(line)
        if len(batch) >= limit:
            yield batch
            batch = []
            limit = size()
    if batch:
        yield batch


class _IngestRun(LoggedRun):
    """One logged ingest (`LoggedRun`: its `ingest_log` row opened 'running', advanced with
    every committed batch, closed 'finished', 'failed' or 'interrupted'; ids in commit order).

    It also paces the batches and groups them into transactions: each batch sized to take
    under the write hold (as fast as the last went); a transaction commits when a process
    waits for the store (`WriteHold`: it is then let in), when it holds TRANSACTION_LINES
    lines, or at the end. A commit writes what the transaction added (and usually a
    checkpoint), a cost per transaction that a reader nobody waits for need not pay.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, max_future_ms: int,
                 batch_lines: int, bounds: Bounds | None = None):
        self.max_future_ms = max_future_ms
        self.bounds = bounds or Bounds.from_settings()
        self.hold = WriteHold(con)
        self.max_batch = max(1, batch_lines)
        self.next_batch = min(self.max_batch, FIRST_BATCH_LINES)
        self.total = IngestResult()
        self.open_lines: int | None = None  # lines in the open transaction, None if none
        self.commit_s = 0.0  # how long the last commit took
        _mark_dead_runs(con)
        super().__init__(con, source)

    def log_progress(self, batch: IngestResult, now_ms: int) -> None:
        """Add a batch's counts to the run's row (inside the batch's transaction)."""
        self.advance(lines=batch.lines, new_events=batch.new_events,
                     duplicates=batch.duplicates, records=batch.records,
                     quarantined=batch.quarantined, id_collisions=batch.id_collisions,
                     now_ms=now_ms)

    def batch_size(self) -> int:
        return self.next_batch

    def batch(self) -> None:
        """Ingest what relation `batch_lines` holds now, in the open transaction (begun if
        none is); commit it if a process waits for the store or it is full; then set the
        next batch's size from this one's pace, so that a batch and a commit fit in the
        hold."""
        began = time.monotonic()
        n = self.con.execute("SELECT count(*) FROM batch_lines").fetchall()[0][0]
        if self.open_lines is None:
            self.begin_transaction()
            self.open_lines = 0
        try:
            self.total.add(_ingest_batch(self.con, self))
        except BaseException:
            self.rollback()  # the batches of the transaction were never reported stored
            raise
        self.open_lines += n
        took = time.monotonic() - began
        if self.open_lines >= TRANSACTION_LINES or self._release_due():
            self.commit()
        if took > 0 and n:
            budget = max(self.hold.hold_s * _PACE_MARGIN - self.commit_s,
                         self.hold.hold_s * _PACE_MARGIN / 2)
            self.next_batch = min(self.max_batch, max(MIN_BATCH_LINES, int(n / took * budget)))

    def _release_due(self) -> bool:
        """Whether `WriteHold.pause_point` would let the store go now (a process announced
        that it waits, or the fallback hold ran out): the transaction must end first."""
        hold = self.hold
        if hold.path is None:
            return False
        return (others_waiting(hold.path)
                or time.monotonic() - hold.since >= hold.FALLBACK_HOLDS * hold.hold_s)

    def commit(self) -> None:
        if self.open_lines is not None:
            began = time.monotonic()
            self.con.execute("COMMIT")
            self.open_lines = None
            self.commit_s = time.monotonic() - began

    def pause_point(self) -> None:
        """Between batches: let in whoever waits for the store (only ever between two
        transactions: a transaction is committed first when someone waits)."""
        if self.open_lines is None:
            self.hold.pause_point()

    def finish(self) -> IngestResult:
        self.commit()
        self.close("finished")
        return self.total

    def fail(self, exc: BaseException) -> None:
        """Roll the open transaction back; record why the run stopped, if the store can
        still be written."""
        self.rollback()
        self.stopped_by(exc)

    def rollback(self) -> None:
        if self.open_lines is not None:
            self.open_lines = None
            try:
                self.rollback_transaction()
            except duckdb.Error:
                pass  # the store is gone: nothing was committed


def _mark_dead_runs(con: duckdb.DuckDBPyConnection) -> None:
    """Runs of this host still 'running' whose process is gone were interrupted: say so."""
    host = this_host()
    dead = [ingest_id for ingest_id, pid in con.execute(
        "SELECT ingest_id, pid FROM ingest_log WHERE status = 'running' AND host = ?",
        [host]).fetchall() if pid is None or not _alive(int(pid))]
    if dead:
        con.execute("UPDATE ingest_log SET status = 'interrupted' "
                    f"WHERE ingest_id IN ({', '.join(str(int(i)) for i in dead)})")


def _alive(pid: int) -> bool:
    from meter.store import _pid_alive

    return pid == os.getpid() or _pid_alive(pid)


@dataclass(frozen=True)
class IngestRunState:
    """A row of `ingest_log` with its state as a reader sees it."""

    ingest_id: int
    source: str
    started_ms: int
    finished_ms: int | None
    state: str  # running | finished | failed | interrupted | continued
    lines: int | None
    new_events: int | None
    duplicates: int | None
    records: int | None
    quarantined: int | None
    id_collisions: int | None
    error: str | None


def ingest_runs(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[IngestRunState]:
    """The latest ingests, newest first, each with its state: a run that never finished is
    'running' while its process lives (same host) or its heartbeat is recent, otherwise
    'interrupted'; works read-only, also on a store of an older schema."""
    columns = {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' "
        "AND table_name = 'ingest_log' AND database_name = current_database()").fetchall()}
    extra = ("status, pid, host, heartbeat_ms, id_collisions, error" if "status" in columns
             else "NULL, NULL, NULL, NULL, NULL, NULL")
    rows = con.execute(f"""
        SELECT ingest_id, source, started_ms, finished_ms, lines, new_events, duplicates,
               records, quarantined, {extra}
        FROM ingest_log ORDER BY ingest_id DESC LIMIT {int(limit)}""").fetchall()
    host, now = this_host(), int(time.time() * 1000)
    out = []
    for (ingest_id, source, started, finished, lines, new, dup, records, quarantined,
         status, pid, run_host, heartbeat, collisions, error) in rows:
        if finished is not None:
            state = status or "finished"
        elif status in ("interrupted", "failed"):
            state = status
        elif pid is not None and run_host == host:
            state = "running" if _alive(int(pid)) else "interrupted"
        else:  # another host, or a writer that logs no pid: live while it shows progress
            live = heartbeat is not None and now - heartbeat < _STALE_HEARTBEAT_MS
            state = "running" if live else "interrupted"
        out.append(IngestRunState(int(ingest_id), source, started, finished, state, lines,
                                  new, dup, records, quarantined, collisions, error))
    return out


_STALE_HEARTBEAT_MS = 10 * 60 * 1000


def _feed_batches(run: _IngestRun, con: duckdb.DuckDBPyConnection, lines: Iterable[str], *,
                  first: int, progress: Callable[[int], None] | None) -> None:
    """Lines held in Python through `run`, a batch at a time, numbered from `first`; blank
    lines are skipped (and counted)."""
    line_no = first
    for batch in _batched(lines, run.batch_size):
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
        run.pause_point()


def _logged(run: _IngestRun, work: Callable[[], None]) -> IngestResult:
    """Do `work` for `run`, then close its log row as finished, or as failed/interrupted."""
    try:
        work()
    except BaseException as exc:
        run.fail(exc)
        raise
    return run.finish()


def ingest_lines(
    con: duckdb.DuckDBPyConnection,
    lines: Iterable[str],
    *,
    source: str,
    batch_lines: int = BATCH_LINES,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
    bounds: Bounds | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest JSON lines held in memory (the collector's buffer, stdin) in batches.

    Line numbers count from 1 across the whole iterable; blank lines are skipped. `bounds`
    default to the configured ones (`Bounds.from_settings`).
    """
    run = _IngestRun(con, source, max_future_ms, batch_lines, bounds)
    return _logged(run, lambda: _feed_batches(run, con, lines, first=1, progress=progress))


def _gathered(reader: pa.RecordBatchReader, size: Callable[[], int]
              ) -> Iterator[pa.ChunkedArray]:
    """The first column of a stream of record batches, regrouped into runs of `size()` rows
    (the stream yields small batches; each ingest batch has a fixed cost)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size():
            whole = pa.Table.from_batches(pending)
            cut = size()
            yield whole.column(0).slice(0, cut)
            rest = whole.slice(cut)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending).column(0)


def _numbered(first: int, n: int) -> pa.Array:
    """Line numbers first .. first + n - 1 as an Arrow column, built without a Python loop
    (numpy comes with pyarrow) and without `pa.array`, which would import pandas."""
    import numpy as np

    numbers = np.arange(first, first + n, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(numbers)])


def _file_lines(reader_db: duckdb.DuckDBPyConnection, name: str, compressed: bool,
                size: Callable[[], int]) -> Iterator[pa.ChunkedArray]:
    """The file's lines in runs of `size()` (`_gathered`), read by `reader_db`; its reading
    errors (as the first lines are read, too) are raised by `next`."""
    reader = reader_db.sql(_read_lines_sql(compressed), params={"path": name}
                           ).to_arrow_reader(_READ_CHUNK_LINES)
    yield from _gathered(reader, size)


def _read_lines_sql(compressed: bool) -> str:
    """DuckDB reading a file as one VARCHAR column, one row per line, in file order (a
    streaming query: no window or sort that would hold the whole file)."""
    compression = "gzip" if compressed else "none"
    return (
        "SELECT line FROM read_csv($path, "
        "columns = {'line': 'VARCHAR'}, header = false, delim = '\x1e', quote = '', "
        f"escape = '', auto_detect = false, strict_mode = false, null_padding = true, "
        f"compression = '{compression}')"
    )


def _text_lines(path: str, compressed: bool) -> Iterator[str]:
    """The slow but forgiving reader: undecodable bytes become U+FFFD and get quarantined."""
    raw = gzip.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115
    with raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as text:
        for line in text:
            yield line.rstrip("\r\n")


def is_gzip(path: str) -> bool:
    """Whether the file starts with gzip's magic bytes (whatever its name)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _gzip_problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the compressed stream ends early (truncated file)"
    return str(exc) or type(exc).__name__


def _copy_gzip(source: IO[bytes], target: IO[bytes] | None, name: str) -> None:
    """Decompress `source` to its end into `target` (or nowhere), so that gzip checks each
    member's CRC and length; a corrupt stream is a UsageError naming the file and the fault."""
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
            while chunk := unzipped.read(1 << 20):
                if target is not None:
                    target.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise UsageError(f"{name}: corrupt gzip data: {_gzip_problem(exc)}; nothing from this "
                         "file was stored") from None


def verify_gzip(path: str) -> None:
    """Read a gzip file to its end, checking every member's CRC and length."""
    with open(path, "rb") as raw:
        _copy_gzip(raw, None, path)


def _check_input(name: str) -> None:
    if Path(name).is_dir():
        raise UsageError(f"{name}: is a directory; expected a JSONL file (.jsonl, .jsonl.gz) "
                         "or - for stdin")
    if not Path(name).exists():
        raise FileNotFoundError(f"{name}: no such file")
    if not Path(name).is_file():
        raise UsageError(f"{name}: not a regular file; expected a JSONL file (.jsonl, "
                         ".jsonl.gz) or - for stdin")


def ingest_path(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    batch_lines: int = BATCH_LINES,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
    bounds: Bounds | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest one JSONL file (`.jsonl`, gzip-compressed whatever its name, or `-` for stdin).

    Files are split into lines by DuckDB itself (no Python loop per line) and streamed a batch
    at a time, so memory follows the batch, not the file; from a line that is not valid UTF-8
    on, a Python reader that replaces the bad bytes (to be quarantined) takes over. Gzip data
    (by its magic bytes, also on stdin) is first read to its end: a corrupt stream raises a
    UsageError and stores nothing. A directory is a UsageError too.
    """
    name = str(path)
    if name == "-":
        return _ingest_stdin(con, batch_lines=batch_lines, max_future_ms=max_future_ms,
                             bounds=bounds, progress=progress)
    _check_input(name)
    compressed = is_gzip(name)
    if compressed:
        verify_gzip(name)
    return _ingest_file(con, name, name, compressed, batch_lines=batch_lines,
                        max_future_ms=max_future_ms, bounds=bounds, progress=progress)


def _ingest_stdin(con: duckdb.DuckDBPyConnection, *, batch_lines: int, max_future_ms: int,
                  bounds: Bounds | None, progress: Callable[[int], None] | None
                  ) -> IngestResult:
    """Standard input: gzip data is decompressed (and verified) to a scratch file first and
    ingested from there; text is read line by line."""
    raw = sys.stdin.buffer
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == GZIP_MAGIC:
        with tempfile.TemporaryDirectory(prefix="agenttally-stdin-") as scratch:
            plain = os.path.join(scratch, "stdin.jsonl")
            with open(plain, "wb") as out:
                _copy_gzip(raw, out, "<stdin>")
            return _ingest_file(con, plain, "<stdin>", False, batch_lines=batch_lines,
                                max_future_ms=max_future_ms, bounds=bounds,
                                progress=progress)
    stdin = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
    return ingest_lines(con, (ln.rstrip("\r\n") for ln in stdin), source="<stdin>",
                        batch_lines=batch_lines, max_future_ms=max_future_ms, bounds=bounds,
                        progress=progress)


def _ingest_file(con: duckdb.DuckDBPyConnection, name: str, source: str, compressed: bool, *,
                 batch_lines: int, max_future_ms: int, bounds: Bounds | None,
                 progress: Callable[[int], None] | None) -> IngestResult:
    run = _IngestRun(con, source, max_future_ms, batch_lines, bounds)

    def work() -> None:
        done = 0
        # The file is read by a DuckDB of its own (in memory): nothing of the reader's open
        # query then refers to the store, which is released between batches.
        reader_db = duckdb.connect(":memory:")
        try:
            stream = _file_lines(reader_db, name, compressed, run.batch_size)
            while True:
                try:
                    lines = next(stream, None)
                except (duckdb.InvalidInputException, OSError) as exc:
                    # Not valid UTF-8 from some line on, or a line longer than DuckDB's CSV
                    # reader takes (2 MB; found by the ingest fuzz), raised by DuckDB or
                    # through the Arrow stream as an OSError: the forgiving reader goes on
                    # from the first line not yet ingested. Other errors stand.
                    if not any(sign in str(exc).lower()
                               for sign in ("utf-8", "unicode", "maximum line size")):
                        raise
                    _feed_batches(run, con, islice(_text_lines(name, compressed), done, None),
                                  first=done + 1, progress=progress)
                    return
                if lines is None:
                    return
                n = len(lines)
                # the reader's chunks as they are: copying them into one (DuckDB scans one
                # a little faster) costs more, in fresh memory
                con.register("batch_lines", pa.table({
                    "line_no": _numbered(done + 1, n), "line": lines}))
                try:
                    run.batch()
                finally:
                    con.unregister("batch_lines")
                done += n
                if progress:
                    progress(n)
                run.pause_point()
        finally:
            reader_db.close()

    return _logged(run, work)
