"""Shared fixtures: a fresh store on disk and a way to feed it events written as dicts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from meter.ingest import IngestResult, ingest_lines
from meter.store import connect, open_store


def seeded_demo(path: Path, *, days: int, end: date) -> Path:
    """A store file at `path` holding the demo profile's `days` days up to `end` (not rated)."""
    from agenttally._simulation import seed_demo

    con = connect(path)
    try:
        seed_demo(con, days=days, end=end)
    finally:
        con.close()
    return path


def ms(text: str) -> int:
    """'2026-11-03T09:00:00.000Z' -> epoch milliseconds."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def iso(epoch_ms: int) -> str:
    dt = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def status(session_id: str, event_id: str, at: str, state: str, **extra) -> dict:
    """A session.status_* event as the API sends it (plus session_id)."""
    kind = {"rescheduling": "rescheduled"}.get(state, state)
    return {"session_id": session_id, "type": f"session.status_{kind}", "id": event_id,
            "processed_at": at, **extra}


def session_record(session_id: str, created_at: str = "2026-11-01T00:00:00.000Z",
                   model: str = "claude-opus-5", **extra) -> dict:
    record = {
        "type": "session", "id": session_id, "created_at": created_at, "status": "idle",
        "environment_id": "env_01",
        "agent": {"id": "agent_01", "version": 1, "name": "coder",
                  "model": {"id": model, "speed": "standard", "inference_geo": "global"}},
        "metadata": {"team": "platform"},
    }
    record.update(extra)
    return record


def snapshot(sid: str, eid: str, at: str, input: int = 0, output: int = 0, read: int = 0,
             w5m: int = 0, w1h: int = 0, searches: int = 0, **extra) -> dict:
    """A session.usage event: cumulative usage of the session at `at`."""
    usage = {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": read,
             "cache_creation": {"ephemeral_5m_input_tokens": w5m,
                                "ephemeral_1h_input_tokens": w1h},
             "server_tool_use": {"web_search_requests": searches, "web_fetch_requests": 0},
             **extra}
    return {"session_id": sid, "type": "session.usage", "id": eid, "processed_at": at,
            "usage": usage}


def span(sid: str, eid: str, at: str, input: int = 0, output: int = 0, write: int = 0,
         read: int = 0, **extra) -> dict:
    """A span.model_request_end event: the tokens of one model request."""
    return {"session_id": sid, "type": "span.model_request_end", "id": eid, "processed_at": at,
            "model_usage": {"input_tokens": input, "output_tokens": output,
                            "cache_creation_input_tokens": write,
                            "cache_read_input_tokens": read}, **extra}


# The tables ingest fills from events and session records, with their keys: what a collector
# stored is compared with a direct ingest of the same lines row for row (bookkeeping left out).
COMPARED = {
    "events": "event_id", "status_events": "event_id", "model_requests": "event_id",
    "usage_snapshots": "event_id", "tool_uses": "event_id", "threads": "event_id",
    "session_updates": "event_id", "other_events": "event_id", "sessions": "session_id",
}
JSON_COLUMNS = {"payload", "metadata", "roster"}


def stored_tables(db: Path) -> dict[str, list[tuple]]:
    """The rows of every `COMPARED` table of the store at `db` (without `ingest_id`, JSON
    parsed), in key order, and the quarantine's errors."""
    out = {}
    with open_store(db, read_only=True) as con:
        for table, key in COMPARED.items():
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()
                    if r[0] != "ingest_id"]
            rows = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {key}").fetchall()
            out[table] = [tuple(json.loads(v) if c in JSON_COLUMNS and v is not None else v
                                for c, v in zip(cols, row, strict=True)) for row in rows]
        out["quarantine"] = con.execute("SELECT error FROM quarantine").fetchall()
    return out


@pytest.fixture
def store(tmp_path):
    con = connect(tmp_path / "store.duckdb")
    yield con
    con.close()


@pytest.fixture
def feed(store):
    """feed(records, source=...) ingests dicts (or raw strings) as JSON lines."""

    def _feed(records, source: str = "test.jsonl", **kwargs) -> IngestResult:
        lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
        return ingest_lines(store, lines, source=source, **kwargs)

    return _feed
