"""Simulated batches out: JSON lines exactly as the API returns them, or rows in the store.

Both outputs start from the same per-kind Arrow tables, whose ids and timestamps are built
once (``ids``), and the same SQL expressions, so a line in the file and a row in the store
cannot disagree: ingesting the JSONL with ``meter.ingest`` gives the same store content as
:func:`write_store` (a test holds the two to it). The store path parses no JSON at all;
only unbilled events keep their whole line, as the ingest keeps it.

Readers while the simulator writes: DuckDB lets no other process open a file while one
writes it, so :func:`write_store` commits in transactions of about half the write hold
(AGENTTALLY_WRITE_HOLD_S) each and lets the file go between two of them, as ingest does
(`meter.store.WriteHold`: when a reader announced that it waits, or after a longer fallback
time), then takes it back. What was committed stays, with its counts in `ingest_log`; a run
stopped anywhere is completed by running it again (ids already stored are skipped).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypedDict, TypeVar

import duckdb
import numpy as np
import pyarrow as pa

from meter.simulator.events import (
    AGENT_TEXTS,
    ERRORS,
    EVENT_KINDS,
    RETRY_STATUS,
    STOP_REASONS,
    TITLES,
    TOOL_INPUTS,
    USER_TEXTS,
)
from meter.simulator.generate import Batch, Simulation
from meter.simulator.ids import (
    event_ids,
    format_ms,
    session_ids,
    thread_ids,
    timestamps,
    with_nulls,
)
from meter.store import LoggedRun, WriteHold, latest_wins, session_starts_upsert

__all__ = ["WriteResult", "record_lines", "write_jsonl", "write_store"]

T = TypeVar("T")
R = TypeVar("R")

SESSION_STATUS = ("idle", "running", "rescheduling", "terminated")
BATCH_EVENTS = 4_000_000  # at most this many events per store transaction (whole days)
FIRST_GROUP_EVENTS = 200_000  # the first transaction's size, before the write rate is known
ROW_GROUP = 122_880  # DuckDB's row group: Arrow chunks of this size scan in parallel

# Per kind: (column holding an event number of the same session, id column it becomes).
_REFS = {"tool_confirmation": ("ref", "ref_id"), "idle": ("ref", "ref_id"),
         "request_end": ("start_seq", "start_id")}
_THREADED = {"request_start", "request_end", "tool_use", "message", "thread_created",
             "thread_running", "thread_idle"}
_STATUS_KINDS = {"running": "running", "idle": "idle", "rescheduled": "rescheduling",
                 "terminated": "terminated", "thread_running": "running",
                 "thread_idle": "idle"}
_OTHER_KINDS = ("user_message", "tool_confirmation", "error", "request_start", "message")


# --- JSON lines as SQL -------------------------------------------------------------------
# One concat() of flat parts per line: chained || copies each prefix again (quadratic).

def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _concat(parts: list[str]) -> str:
    return "concat(" + ", ".join(parts) + ")"


def _case(cond: str, then: list[str], otherwise: str = "''") -> str:
    return f"CASE WHEN {cond} THEN {_concat(then)} ELSE {otherwise} END"


_BUDGET = _case("budget >= 0", [_lit('{"type":"limit","max_list_cost":{"amount":"'), "budget",
                                _lit('","currency":"USD"}}')], "'null'")

# What follows the common head ({"session_id", "type", "id", "processed_at"}) per kind.
_EXTRA: dict[str, list[str]] = {
    "user_message": [_lit(',"content":[{"type":"text","text":"'), "text", _lit('"}]')],
    "tool_confirmation": [_lit(',"tool_use_id":"'), "ref_id", _lit('","result":"allow"')],
    "running": [],
    "rescheduled": [],
    "terminated": [],
    "idle": [_lit(',"stop_reason":{"type":"'), "stop", _lit('"'),
             _case("ref >= 0", [_lit(',"event_ids":["'), "ref_id", _lit('"]')]), _lit("}")],
    "error": [_lit(',"error":{"type":"'), "error", _lit('","message":"'), "message",
              _lit('","retry_status":{"type":"'), "retry", _lit('"}}')],
    "request_start": [],
    "request_end": [
        _lit(',"is_error":'), "CASE WHEN is_error THEN 'true' ELSE 'false' END",
        _lit(',"model_request_start_id":"'), "start_id",
        _lit('","model_usage":{"input_tokens":'), "input",
        _lit(',"output_tokens":'), "output",
        _lit(',"cache_creation_input_tokens":'), "cache_write",
        _lit(',"cache_read_input_tokens":'), "cache_read",
        _lit(',"speed":"'), "CASE WHEN fast THEN 'fast' ELSE 'standard' END", _lit('"}')],
    "tool_use": [_lit(',"name":"'), "name", _lit('","input":'), "tool_input",
                 _lit(',"evaluated_permission":"'), "CASE WHEN ask THEN 'ask' ELSE 'allow' END",
                 _lit('"')],
    "message": [_lit(',"content":[{"type":"text","text":"'), "text", _lit('"}]')],
    "usage": [
        _lit(',"usage":{"input_tokens":'), "input",
        _lit(',"output_tokens":'), "output",
        _lit(',"cache_read_input_tokens":'), "cache_read",
        _lit(',"cache_creation":{"ephemeral_5m_input_tokens":'), "cw5",
        _lit(',"ephemeral_1h_input_tokens":'), "cw1h",
        _lit('},"server_tool_use":{"web_search_requests":'), "searches",
        _lit(',"web_fetch_requests":0},"active_seconds":'), "active_ms // 1000",
        _lit("."), "lpad((active_ms % 1000)::VARCHAR, 3, '0')",
        _lit(',"list_cost":{"amount":"'), "cents", _lit('","currency":"USD"}},"budget":'),
        _BUDGET],
    "thread_created": [_lit(',"agent_name":"'), "name", _lit('","model":"'), "model",
                       _lit('"')],
    "thread_running": [_lit(',"agent_name":"'), "name", _lit('"')],
    "thread_idle": [_lit(',"agent_name":"'), "name",
                    _lit('","stop_reason":{"type":"end_turn"}')],
}


def _line_sql(kind: str, newline: bool = False) -> str:
    """One event as the API returns it: keys in the API's order, minified."""
    thread = [_case("thr >= 0", [_lit(',"session_thread_id":"'), "tid", _lit('"')])] \
        if kind in _THREADED else []
    return _concat([
        _lit('{"session_id":"'), "sid", _lit(f'","type":"{EVENT_KINDS[kind]}","id":"'), "eid",
        _lit('","processed_at":"'), "ts", _lit('"'), *thread, *_EXTRA[kind], _lit("}"),
        *(["chr(10)"] if newline else [])])


_SESSION_LINE = _concat([
    _lit('{"type":"session","id":"'), "sid", _lit('","created_at":"'), "created_ts",
    _lit('","updated_at":"'), "updated_ts", _lit('","status":"'), "status",
    _lit('","archived_at":'), _case("archived >= 0", [_lit('"'), "archived_ts", _lit('"')],
                                    "'null'"),
    _lit(',"environment_id":"'), "environment_id", _lit('","agent":'), "agent_json",
    _lit(',"metadata":'), "metadata", _lit(',"title":"'), "title", _lit('","budget":'),
    _BUDGET, _lit("}"), "chr(10)"])


# --- Arrow tables ------------------------------------------------------------------------

def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _SnapshotRow(TypedDict):
    """The session table's columns taken from one agent snapshot (see _Strings)."""

    agent_id: str
    name: str
    model: str
    speed: str
    geo: str
    roster: str | None


class _Strings:
    """The dictionaries behind coded columns, and the records' JSON."""

    def __init__(self, sim: Simulation):
        fleet, profile = sim.fleet, sim.profile
        self.tag = sim.tag
        self.tool_names = list(fleet.tool_names)
        self.tool_inputs = [TOOL_INPUTS[t] for t in self.tool_names]
        self.roster_names = list(fleet.roster_names)
        self.models = list(fleet.model_ids)
        envs = {e["name"]: e["id"] for e in sim.environment_records()}
        self.env_of_agent = [envs[a.environment] for a in profile.agents]
        # One agent snapshot per (agent, version), as the session object embeds it.
        snap_off: list[int] = []
        self.snapshots: list[str] = []
        self.snap_rows: list[_SnapshotRow] = []
        for i, (agent, versions) in enumerate(zip(profile.agents, fleet.agent_versions(),
                                                  strict=True)):
            snap_off.append(len(self.snapshots))
            agent_id = sim.agent_id(i)
            roster = [{"name": e.name, "model": e.model} for e in agent.multiagent]
            for version, _since, model in versions:
                snap = {"id": agent_id, "version": version, "name": agent.name,
                        "model": {"id": fleet.model_ids[model], "speed": agent.speed,
                                  "inference_geo": agent.inference_geo},
                        "multiagent": {"type": "coordinator", "agents": roster} if roster
                        else None}
                self.snapshots.append(_dumps(snap))
                self.snap_rows.append({
                    "agent_id": agent_id, "name": agent.name, "model": fleet.model_ids[model],
                    "speed": agent.speed, "geo": agent.inference_geo,
                    "roster": _dumps(roster) if roster else None})
        self.snap_off = np.array(snap_off, dtype=np.int64)
        self.metadata = [
            _dumps({"team": team.name, "project": project.name,
                    "cost_center": project.cost_center or team.cost_center})
            for team, project in fleet.projects]


def _dict(codes: np.ndarray, values: Sequence[str | None]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values))


def _chunked(table: pa.Table) -> pa.Table:
    """Row-group sized chunks, so that DuckDB scans (and compresses) them in parallel."""
    return pa.Table.from_batches(table.to_batches(max_chunksize=ROW_GROUP), table.schema) \
        if table.num_rows > ROW_GROUP else table


def _event_table(kind: str, cols: dict[str, np.ndarray], s: _Strings) -> pa.Table:
    sess, seq = cols["sess"], cols["seq"]
    data: dict[str, pa.Array | np.ndarray] = {
        "sess": sess, "seq": seq, "at_ms": cols["at_ms"], "thr": cols["thr"],
        "eid": event_ids(s.tag, sess, seq), "sid": session_ids(s.tag, sess),
        "tid": thread_ids(s.tag, sess, cols["thr"]),
    }
    for name, values in cols.items():
        data.setdefault(name, values)
    if kind in _REFS:
        col, out = _REFS[kind]
        ref = cols[col]
        ids = event_ids(s.tag, sess, np.maximum(ref, 0))
        data[out] = with_nulls(ids, ref >= 0)
    if kind == "user_message":
        data["text"] = _dict(cols["text"], list(USER_TEXTS))
    elif kind == "message":
        data["text"] = _dict(cols["text"], list(AGENT_TEXTS))
    elif kind == "tool_use":
        data["name"] = _dict(cols["name"], s.tool_names)
        data["tool_input"] = _dict(cols["name"], s.tool_inputs)
    elif kind == "idle":
        data["stop"] = _dict(cols["stop"], list(STOP_REASONS))
    elif kind == "error":
        data["message"] = _dict(cols["error"], [m for _, m in ERRORS])
        data["error"] = _dict(cols["error"], [t for t, _ in ERRORS])
        data["retry"] = _dict(cols["retry"], list(RETRY_STATUS))
    elif kind.startswith("thread_"):
        data["name"] = _dict(cols["name"], s.roster_names)
        if kind == "thread_created":
            data["model"] = _dict(cols["model"], s.models)
    return pa.table(data)


def _with_timestamps(table: pa.Table, columns: dict[str, str]) -> pa.Table:
    for source, name in columns.items():
        table = table.append_column(name, timestamps(table[source].to_numpy()))
    return table


def _session_table(cols: dict[str, np.ndarray], s: _Strings) -> pa.Table:
    snap = s.snap_off[cols["agent"]] + cols["version"] - 1
    rows = s.snap_rows
    archived = cols["archived"]
    return pa.table({
        "sess": cols["sess"], "sid": session_ids(s.tag, cols["sess"]),
        "created": cols["created"], "updated": cols["updated"], "archived": archived,
        "archived_ts": with_nulls(timestamps(np.maximum(archived, 0)), archived >= 0),
        "budget": cols["budget"],
        "status": _dict(cols["status"], list(SESSION_STATUS)),
        "title": _dict(cols["title"], list(TITLES)),
        "environment_id": _dict(cols["agent"], s.env_of_agent),
        "agent_json": _dict(snap, s.snapshots),
        "agent_id": _dict(snap, [r["agent_id"] for r in rows]),
        "agent_version": cols["version"],
        "agent_name": _dict(snap, [r["name"] for r in rows]),
        "model_id": _dict(snap, [r["model"] for r in rows]),
        "model_speed": _dict(snap, [r["speed"] for r in rows]),
        "inference_geo": _dict(snap, [r["geo"] for r in rows]),
        "roster": _dict(snap, [r["roster"] for r in rows]),
        "metadata": _dict(cols["project"], s.metadata),
    })


def _tables(group: list[Batch], s: _Strings, *, lines: bool) -> dict[str, pa.Table]:
    """A group of batches as Arrow tables `k_<kind>` and `k_sessions` (no connection used,
    so this can run in another thread while DuckDB writes the previous group)."""
    parts: dict[str, list[pa.Table]] = {}
    for batch in group:
        for kind, cols in batch.events.items():
            if len(cols["seq"]):
                parts.setdefault(kind, []).append(_event_table(kind, cols, s))
    out = {}
    for kind, tables in parts.items():
        table = pa.concat_tables(tables, promote_options="permissive")
        if lines or kind in _OTHER_KINDS:
            table = _with_timestamps(table, {"at_ms": "ts"})
        out[f"k_{kind}"] = _chunked(table)
    sessions = [_session_table(b.sessions, s) for b in group if len(b.sessions["sess"])]
    if sessions:
        table = pa.concat_tables(sessions, promote_options="permissive")
        if lines:
            table = _with_timestamps(table, {"created": "created_ts", "updated": "updated_ts"})
        out["k_sessions"] = _chunked(table)
    return out


class _Registered:
    """Tables registered on a connection for the length of one group's writes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]):
        self.con, self.names = con, list(tables)
        for name, table in tables.items():
            con.register(name, table)
        self.kinds = [n[2:] for n in tables if n != "k_sessions"]
        self.n_sessions = tables["k_sessions"].num_rows if "k_sessions" in tables else 0

    def close(self) -> None:
        for name in self.names:
            self.con.unregister(name)


def _one_ahead(items: Iterable[T], prepare: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """(item, prepare(item)) pairs, producing and preparing the next item in a worker thread
    while the caller works on the current one (DuckDB releases the GIL while it writes)."""
    source = iter(items)

    def step() -> tuple[T, R] | None:
        item = next(source, None)
        return None if item is None else (item, prepare(item))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate") as pool:
        pending = pool.submit(step)
        while (ready := pending.result()) is not None:
            pending = pool.submit(step)
            yield ready


# --- JSONL -------------------------------------------------------------------------------

@dataclass
class WriteResult:
    """What a write did: sessions and events written, records, events already stored."""

    sessions: int = 0
    events: int = 0
    records: int = 0
    duplicates: int = 0


def record_lines(sim: Simulation) -> list[str]:
    """Environment and agent records (a handful): one JSON line each."""
    lines = []
    for e in sim.environment_records():
        lines.append(_dumps({"type": "environment", "id": e["id"], "name": e["name"],
                             "metadata": e["metadata"], "created_at": format_ms(e["created_ms"]),
                             "updated_at": format_ms(e["updated_ms"])}))
    for a in sim.agent_records():
        lines.append(_dumps({
            "type": "agent", "id": a["id"], "version": a["version"], "name": a["name"],
            "model": {"id": a["model"], "speed": a["speed"], "inference_geo": a["inference_geo"]},
            "tools": [{"type": "agent_toolset", "name": t} for t in a["tools"]],
            "multiagent": {"type": "coordinator", "agents": a["multiagent"]}
            if a["multiagent"] else None,
            "environment_id": a["environment_id"], "metadata": a["metadata"],
            "created_at": format_ms(a["created_ms"]), "updated_at": format_ms(a["updated_ms"])}))
    return lines


def _write_strings(out: BinaryIO, column: pa.ChunkedArray) -> None:
    """Write the concatenated bytes of a string column (each value ends with a newline)."""
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        _validity, offsets, data = chunk.buffers()
        offs = np.frombuffer(offsets, dtype=width)[chunk.offset: chunk.offset + len(chunk) + 1]
        out.write(memoryview(data)[int(offs[0]): int(offs[-1])])


def write_jsonl(path: str | Path, sim: Simulation, *,
                progress: Callable[[int], None] | None = None) -> WriteResult:
    """Write the run as JSON lines: environments, agents, then day by day each session's
    record and its events in emission order. Same simulation, same bytes."""
    result = WriteResult()
    s = _Strings(sim)
    con = duckdb.connect()
    try:
        with open(path, "wb") as out:
            head = record_lines(sim)
            out.write("".join(line + "\n" for line in head).encode())
            result.records += len(head)
            for batch, tables in _one_ahead(sim.batches(),
                                            lambda b: _tables([b], s, lines=True)):
                reg = _Registered(con, tables)
                try:
                    parts = ([f"SELECT sess, -1 AS seq, {_SESSION_LINE} AS line FROM k_sessions"]
                             if reg.n_sessions else [])
                    parts += [f"SELECT sess, seq, {_line_sql(k, newline=True)} AS line "
                              f"FROM k_{k}" for k in reg.kinds]
                    if parts:
                        sql = f"SELECT line FROM ({' UNION ALL '.join(parts)}) ORDER BY sess, seq"
                        _write_strings(out, con.sql(sql).to_arrow_table()["line"])
                finally:
                    reg.close()
                result.sessions += reg.n_sessions
                result.records += reg.n_sessions
                result.events += batch.n_events
                if progress:
                    progress(batch.n_events)
    finally:
        con.close()
    return result


# --- the store ---------------------------------------------------------------------------

def _selects(kind: str) -> dict[str, str]:
    """Per target table, the SELECT of one kind's rows, as the ingest fills the tables
    (meter.ingest._write_typed_rows): every event in `events`, and in its typed table."""
    type_ = EVENT_KINDS[kind]
    out = {"events": f"SELECT eid, sid, '{type_}', at_ms, tid, $ingest FROM k_{kind}"}
    if kind in _STATUS_KINDS:
        stop = {"idle": "stop", "thread_idle": "'end_turn'"}.get(kind, "NULL::VARCHAR")
        out["status_events"] = (f"SELECT eid, sid, tid, '{_STATUS_KINDS[kind]}', at_ms, {stop} "
                                f"FROM k_{kind}")
    elif kind == "request_end":
        out["model_requests"] = (
            f"SELECT eid, sid, tid, at_ms, input, output, cache_write, cache_read, "
            f"CASE WHEN fast THEN 'fast' ELSE 'standard' END, is_error FROM k_{kind}")
    elif kind == "usage":
        out["usage_snapshots"] = (
            f"SELECT eid, sid, at_ms, input, output, cache_read, cw5, cw1h, searches, 0, "
            f"active_ms, cents, 'USD' FROM k_{kind}")
    elif kind == "tool_use":
        out["tool_uses"] = f"SELECT eid, sid, tid, at_ms, 'builtin', name FROM k_{kind}"
    elif kind == "thread_created":
        out["threads"] = f"SELECT eid, sid, tid, name, model, at_ms FROM k_{kind}"
    elif kind in _OTHER_KINDS:
        out["other_events"] = (f"SELECT eid, sid, '{type_}', at_ms, "
                               f"CAST({_line_sql(kind)} AS JSON) FROM k_{kind}")
    return out


def _inserts(kinds: list[str], where: str) -> list[str]:
    """One INSERT per table for all kinds (one partial row group per table, not per kind)."""
    by_table: dict[str, list[str]] = {}
    for kind in kinds:
        for table, select in _selects(kind).items():
            by_table.setdefault(table, []).append(f"{select} {where}")
    return [f"INSERT INTO {table} " + " UNION ALL ".join(selects)
            for table, selects in by_table.items()]


# The ingest's upsert: the latest record wins (meter.ingest._apply_records).
_SESSIONS_UPSERT = f"""
INSERT INTO sessions
SELECT sid, created, updated, status, title, environment_id, agent_id, agent_version,
       agent_name, model_id, model_speed, inference_geo, CAST(metadata AS JSON),
       CAST(roster AS JSON), CASE WHEN archived >= 0 THEN archived END, $ingest
FROM k_sessions
{latest_wins("sessions")}
"""

_ENVIRONMENTS_UPSERT = f"""
INSERT INTO environments VALUES (?, ?, CAST(? AS JSON), ?, ?)
{latest_wins("environments")}
"""

_AGENTS_UPSERT = f"""
INSERT INTO agents VALUES (?, ?, ?, ?, ?, ?, CAST(? AS JSON), ?, ?)
{latest_wins("agents")}
"""


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> None:
    """Execute with the parameters the statement names (DuckDB refuses extra ones)."""
    con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})


def _write_records(con: duckdb.DuckDBPyConnection, sim: Simulation, ingest: int) -> int:
    envs, agents = sim.environment_records(), sim.agent_records()
    con.executemany(_ENVIRONMENTS_UPSERT, [
        [e["id"], e["name"], _dumps(e["metadata"]), e["updated_ms"], ingest] for e in envs])
    con.executemany(_AGENTS_UPSERT, [
        [a["id"], a["version"], a["name"], a["model"], a["speed"], a["inference_geo"],
         _dumps(a["metadata"]), a["updated_ms"], ingest] for a in agents])
    return len(envs) + len(agents)


class _GroupSize:
    """How many events the next transaction takes: whole batches (days) up to `limit`, which
    the writer sets from the rate it measures so that a transaction takes about `target_s`."""

    def __init__(self, first: int, most: int, target_s: float):
        self.most = max(1, most)
        self.limit = min(first, self.most)
        self.target_s = target_s

    def measured(self, events: int, seconds: float) -> None:
        if events and seconds > 0:
            self.limit = int(min(self.most, max(10_000, events / seconds * self.target_s)))


def _grouped(batches: Iterable[Batch], size: _GroupSize) -> Iterator[list[Batch]]:
    group: list[Batch] = []
    events = 0
    for batch in batches:
        group.append(batch)
        events += batch.n_events
        if events >= size.limit:
            yield group
            group, events = [], 0
    if group:
        yield group


def _existing(con: duckdb.DuckDBPyConnection, tag: str, group: list[Batch],
              reg: _Registered) -> tuple[str, int]:
    """A WHERE clause skipping ids the store already holds, and how many it skips.

    A group's ids lie between its first and last session's id prefixes, so one range probe
    usually proves there is nothing to skip and the inserts need no anti-join.
    """
    numbers = [c["sess"] for b in group for c in b.events.values() if len(c["sess"])]
    if not numbers:
        return "", 0
    lo = min(int(a.min()) for a in numbers)
    hi = max(int(a.max()) for a in numbers)
    bounds = [f"sevt_01{tag}{lo:08d}", f"sevt_01{tag}{hi:08d}~"]
    if not con.execute("SELECT count(*) FROM events WHERE event_id BETWEEN ? AND ?",
                       bounds).fetchall()[0][0]:
        return "", 0
    con.execute("CREATE OR REPLACE TEMP TABLE _stored_ids AS SELECT event_id FROM events "
                "WHERE event_id BETWEEN ? AND ?", bounds)
    found = sum(con.execute(f"SELECT count(*) FROM k_{kind} "
                            "WHERE eid IN (SELECT event_id FROM _stored_ids)").fetchall()[0][0]
                for kind in reg.kinds)
    return "WHERE eid NOT IN (SELECT event_id FROM _stored_ids)", found


def write_store(con: duckdb.DuckDBPyConnection, sim: Simulation, *,
                batches: Iterable[Batch] | None = None, source: str | None = None,
                batch_events: int = BATCH_EVENTS, hold_s: float | None = None,
                progress: Callable[[int], None] | None = None) -> WriteResult:
    """Write the run straight into the store's typed tables: one transaction per group of
    days (about half of `hold_s` of work each, at most `batch_events` events), events whose
    ids the store already holds skipped, logged in `ingest_log` like an ingest.

    Between transactions the store file is let go for readers that wait for it
    (`meter.store.WriteHold`; `hold_s` defaults to AGENTTALLY_WRITE_HOLD_S). `batches`
    defaults to all of ``sim.batches()`` (the benchmark passes pre-generated ones to time
    the writing alone).
    """
    source = source or (f"simulate:{sim.profile.name}:seed={sim.seed}:"
                        f"{sim.start.isoformat()}+{sim.days}d")
    # The run's `ingest_log` row, kept as ingest keeps its own (`LoggedRun`).
    run = LoggedRun(con, source)
    hold = WriteHold(con, hold_s=hold_s)
    result = WriteResult()
    s = _Strings(sim)
    # Row order inside the tables means nothing (every reader sorts); letting DuckDB insert
    # out of order lets it compress row groups in parallel. Restored afterwards.
    preserve = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = false")
    try:
        _write_groups(con, sim, s, run, hold, result,
                      sim.batches() if batches is None else batches,
                      _GroupSize(FIRST_GROUP_EVENTS, batch_events, hold.hold_s / 2), progress)
    except BaseException as exc:
        run.stopped_by(exc)
        raise
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if preserve else 'false'}")
    run.close("finished")
    return result


def _write_groups(con: duckdb.DuckDBPyConnection, sim: Simulation, s: _Strings,
                  run: LoggedRun, hold: WriteHold, result: WriteResult,
                  batches: Iterable[Batch], size: _GroupSize,
                  progress: Callable[[int], None] | None) -> None:
    run.begin_transaction()
    try:
        records = _write_records(con, sim, run.current_id())
        run.advance(lines=records, new_events=0, duplicates=0, records=records)
        con.execute("COMMIT")
    except BaseException:
        run.rollback_transaction()
        raise
    result.records += records
    for group, tables in _one_ahead(_grouped(batches, size),
                                    lambda g: _tables(g, s, lines=False)):
        hold.pause_point()
        began = time.monotonic()
        reg = _Registered(con, tables)
        events = sum(b.n_events for b in group)
        run.begin_transaction()
        try:
            ingest = run.current_id()
            where, found = _existing(con, sim.tag, group, reg)
            for sql in _inserts(reg.kinds, where):
                _run(con, sql, {"ingest": ingest})
            if reg.kinds:
                _run(con, session_starts_upsert(" UNION ALL ".join(
                    f"SELECT sid AS session_id, at_ms FROM k_{kind} {where}"
                    for kind in reg.kinds)), {})
            if reg.n_sessions:
                _run(con, _SESSIONS_UPSERT, {"ingest": ingest})
            con.execute("DROP TABLE IF EXISTS _stored_ids")
            run.advance(lines=events + reg.n_sessions, new_events=events - found,
                        duplicates=found, records=reg.n_sessions)
            con.execute("COMMIT")
        except BaseException:
            run.rollback_transaction()
            raise
        finally:
            reg.close()
        size.measured(events, time.monotonic() - began)
        result.events += events - found
        result.duplicates += found
        result.sessions += reg.n_sessions
        result.records += reg.n_sessions
        if progress:
            for b in group:
                progress(b.n_events)
