"""Stores for the dashboard tests: a tiny hand-checked one, an empty one, a missing one.

The tiny store (rated as of 2026-11-20T00:00:00Z with the shipped books: runtime $0.08 per
session-hour, Opus 5 $5/$25, Sonnet 4.6 $3/$15 per million tokens, web search $10 per 1,000):

  A  platform / agent "coder" / Opus 5, 2026-11-03: running 09:00-10:00, idle, running
     11:00-11:30, idle; 50,000 input + 15,000 output tokens.
     runtime 1.5 h = $0.12; input $0.25; output $0.375; total $0.745
  B  search / agent "researcher" / Sonnet 4.6, 2026-11-05: running 12:00-12:15, idle;
     100,000 input + 10,000 output tokens, 3 web searches.
     runtime 0.25 h = $0.02; input $0.30; output $0.15; search $0.03; total $0.50
  C  platform / "coder" / Opus 5, 2026-10-20: running 09:00-10:00; 200,000 input tokens.
     runtime $0.08; input $1.00; total $1.08 (October)
  D  platform, 2026-11-06: created and idle only: no charge.

November's invoice lines (meter x model x token class, each rounded half-even once):
runtime $0.14, Opus input $0.25, Opus output $0.375 -> $0.38, Sonnet input $0.30, Sonnet
output $0.15, search $0.03: total $1.25 (the exact sum, $1.245, would round to $1.24).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meter.ingest import ingest_lines
from meter.store import connect
from tests.conftest import session_record, status

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-20T00:00:00Z"
NOVEMBER_TOTAL = "$1.25"


def agent(agent_id: str, name: str, model: str) -> dict:
    return {"id": agent_id, "version": 1, "name": name,
            "model": {"id": model, "speed": "standard", "inference_geo": "global"}}


def snapshot(sid, eid, at, input=0, output=0, searches=0) -> dict:
    return {"session_id": sid, "type": "session.usage", "id": eid, "processed_at": at,
            "usage": {"input_tokens": input, "output_tokens": output,
                      "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                         "ephemeral_1h_input_tokens": 0},
                      "server_tool_use": {"web_search_requests": searches,
                                          "web_fetch_requests": 0}}}


def request(sid, eid, at, input=0, output=0) -> dict:
    return {"session_id": sid, "type": "span.model_request_end", "id": eid, "processed_at": at,
            "model_usage": {"input_tokens": input, "output_tokens": output,
                            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


CODER = agent("agent_01", "coder", "claude-opus-5")
RESEARCHER = agent("agent_02", "researcher", "claude-sonnet-4-6")

EVENTS = [
    session_record("sesn_A", created_at="2026-11-03T08:00:00.000Z", agent=CODER,
                   title="Fix the flaky build", metadata={"team": "platform", "project": "ci"}),
    status("sesn_A", "a1", "2026-11-03T09:00:00.000Z", "running"),
    request("sesn_A", "a2", "2026-11-03T09:30:00.000Z", input=50_000, output=15_000),
    snapshot("sesn_A", "a3", "2026-11-03T09:59:59.000Z", input=50_000, output=15_000),
    status("sesn_A", "a4", "2026-11-03T10:00:00.000Z", "idle"),
    status("sesn_A", "a5", "2026-11-03T11:00:00.000Z", "running"),
    status("sesn_A", "a6", "2026-11-03T11:30:00.000Z", "idle"),
    session_record("sesn_B", created_at="2026-11-05T11:00:00.000Z", agent=RESEARCHER,
                   title="Market scan", metadata={"team": "search", "project": "scan"}),
    status("sesn_B", "b1", "2026-11-05T12:00:00.000Z", "running"),
    snapshot("sesn_B", "b2", "2026-11-05T12:14:00.000Z", input=100_000, output=10_000,
             searches=3),
    status("sesn_B", "b3", "2026-11-05T12:15:00.000Z", "idle"),
    session_record("sesn_C", created_at="2026-10-20T08:00:00.000Z", agent=CODER,
                   title="Bump dependencies", metadata={"team": "platform", "project": "ci"}),
    status("sesn_C", "c1", "2026-10-20T09:00:00.000Z", "running"),
    snapshot("sesn_C", "c2", "2026-10-20T09:59:00.000Z", input=200_000),
    status("sesn_C", "c3", "2026-10-20T10:00:00.000Z", "terminated"),
    session_record("sesn_D", created_at="2026-11-06T08:00:00.000Z", agent=CODER,
                   metadata={"team": "platform"}),
    status("sesn_D", "d1", "2026-11-06T08:00:01.000Z", "idle"),
]


def rate_and_store(path: Path, as_of: str = AS_OF) -> None:
    """`agenttally rate --as-of`, on this store."""
    from agenttally.cli import main

    assert main(["rate", "--db", str(path), "--as-of", as_of]) == 0


def build_tiny_store(path: Path, *, rated: bool = True) -> Path:
    con = connect(path)
    try:
        result = ingest_lines(con, [json.dumps(e) for e in EVENTS], source="tiny.jsonl",
                              max_future_ms=10**12)
        assert result.quarantined == 0, result.errors
        # one refused line, so that the Data page has a quarantine to show
        ingest_lines(con, ['{"type": "session.status_idle"}'], source="broken.jsonl",
                     max_future_ms=10**12)
    finally:
        con.close()
    if rated:
        rate_and_store(path)
    return path


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    return build_tiny_store(tmp_path_factory.mktemp("tiny") / "tiny.duckdb")


@pytest.fixture(scope="session")
def unrated_store(tmp_path_factory) -> Path:
    return build_tiny_store(tmp_path_factory.mktemp("unrated") / "unrated.duckdb", rated=False)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("empty") / "empty.duckdb"
    connect(path).close()
    return path


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """The simulator's demo profile over two weeks, rated: a realistic small fleet."""
    from datetime import date

    from tests.conftest import seeded_demo

    path = seeded_demo(tmp_path_factory.mktemp("demo") / "demo.duckdb", days=14,
                       end=date(2026, 11, 19))
    rate_and_store(path)
    return path
