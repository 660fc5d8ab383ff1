"""The workload simulator: API-shaped, reproducible, consistent with the store's ingest."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest

from agenttally._simulation import schedule_for
from meter.events import parse_line
from meter.ingest import ingest_path
from meter.simulator import Simulation, parse_profile
from meter.simulator.writers import write_jsonl, write_store
from meter.store import connect

START = date(2026, 10, 5)  # a Monday, inside price book anthropic-list 2026-08-07
FUTURE_OK = 10**13  # simulated days may lie in the future: accept every timestamp

# A small fleet that exercises every feature: errors and budgets (coder), tight budgets
# (saver), a coordinator with threads on other models (lead), fast mode, US inference with
# Haiku 5.5 long context, web search, and the three incidents inside a four-day window.
TINY = """
name = "tiny"
[calendar]
growth_per_month = 0.1
daily_noise = 0.1

[behaviors.coding]
turns_mean = 3
running_s = { median = 30, sigma = 0.8 }
idle_s = { median = 60, sigma = 1.0 }
long_share = 0.05
long_running_s = { median = 1800, sigma = 0.3 }
seconds_per_request = 8
cache_1h_share = 0.3
searches_per_request = 0.3
requires_action_share = 0.2
error_rate = 0.05
exhausted_share = 0.2
terminal_share = 0.1

[behaviors.research]
turns_mean = 2
running_s = { median = 60, sigma = 0.5 }
prompt_tokens = { median = 80000, sigma = 0.6 }
searches_per_request = 0.5
threads_per_turn = 2
thread_running_s = { median = 40, sigma = 0.5 }

[behaviors.frugal]
turns_mean = 4
running_s = { median = 40, sigma = 0.6 }
seconds_per_request = 6
prompt_tokens = { median = 60000, sigma = 0.5 }
cache_1h_share = 0.0
searches_per_request = 0.4

[[environments]]
name = "env-a"
metadata = { tier = "standard" }

[[agents]]
name = "coder"
model = "claude-sonnet-5-5"
environment = "env-a"
tools = ["bash", "read", "edit", "web_search"]
behavior = "coding"
budget = { share = 0.5, cents = 20 }

[[agents]]
name = "saver"
model = "claude-sonnet-5-5"
environment = "env-a"
tools = ["bash", "web_search"]
behavior = "frugal"
budget = { share = 1.0, cents = 15 }

[[agents]]
name = "fast-coder"
model = "claude-opus-5-5"
speed = "fast"
environment = "env-a"
behavior = "coding"

[[agents]]
name = "helper"
model = "claude-haiku-5-5"
inference_geo = "us"
environment = "env-a"
tools = ["read", "web_search"]
behavior = "research"

[[agents]]
name = "lead"
model = "claude-opus-5-5"
inference_geo = "us"
environment = "env-a"
tools = ["web_search", "read"]
behavior = "research"
multiagent = [{ name = "scout", model = "claude-haiku-5-5" },
              { name = "critic", model = "claude-sonnet-5-5" }]

[[teams]]
name = "alpha"
cost_center = "CC-1"
sessions_per_day = 40
  [[teams.projects]]
  name = "apps"
  agents = ["coder", "fast-coder", "saver"]

[[teams]]
name = "beta"
cost_center = "CC-2"
sessions_per_day = 25
utc_offset_hours = 9
  [[teams.projects]]
  name = "research"
  agents = ["lead", "helper"]
  cost_center = "CC-22"

[[incidents]]
type = "runaway"
agent = "coder"
after_days = 1.25
hours = 24

[[incidents]]
type = "burst"
team = "beta"
after_days = 2.5
hours = 2
multiplier = 20

[[incidents]]
type = "model_switch"
agent = "fast-coder"
after_days = 2
model = "claude-opus-4-8"
"""


def tiny_profile(text: str = TINY):
    return parse_profile(tomllib.loads(text), source="tiny.toml")


def simulation(days: int = 4, seed: int = 7, *, start: date = START, text: str = TINY,
               **kwargs) -> Simulation:
    begin = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
    rates = schedule_for(begin, begin + (days + 7) * 86_400_000)
    return Simulation(tiny_profile(text), rates, start=start, days=days, seed=seed, **kwargs)


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_session(lines: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        if "session_id" in line:
            out[line["session_id"]].append(line)
    return out


@pytest.fixture(scope="module")
def tiny_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "tiny.jsonl"
    write_jsonl(path, simulation())
    return path


@pytest.fixture(scope="module")
def tiny_lines(tiny_jsonl):
    return read_lines(tiny_jsonl)


# --- the output is what the API returns ----------------------------------------------


def test_every_line_passes_the_metering_core_validation_with_zero_quarantined(tiny_jsonl,
                                                                              tmp_path):
    con = connect(tmp_path / "s.duckdb")
    result = ingest_path(con, tiny_jsonl, max_future_ms=FUTURE_OK)
    assert result.quarantined == 0, result.errors
    assert result.duplicates == 0
    assert result.new_events + result.records == result.lines
    for line in tiny_jsonl.read_text().splitlines():
        parse_line(line, max_future=timedelta(days=3650))


def test_events_have_the_api_shapes(tiny_lines):
    kinds = {line["type"]: line for line in tiny_lines}
    assert {"session", "agent", "environment", "session.status_running",
            "session.status_idle", "session.usage", "span.model_request_start",
            "span.model_request_end", "agent.tool_use", "agent.message", "user.message",
            "session.thread_created", "session.thread_status_running",
            "session.thread_status_idle", "session.error", "session.status_rescheduled",
            "session.status_terminated", "user.tool_confirmation"} <= set(kinds)
    end = kinds["span.model_request_end"]
    assert list(end) == ["session_id", "type", "id", "processed_at", "is_error",
                         "model_request_start_id", "model_usage"] or "session_thread_id" in end
    assert set(end["model_usage"]) == {"input_tokens", "output_tokens", "speed",
                                       "cache_creation_input_tokens", "cache_read_input_tokens"}
    usage = kinds["session.usage"]["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "cache_read_input_tokens",
                          "cache_creation", "server_tool_use", "active_seconds", "list_cost"}
    assert usage["list_cost"]["currency"] == "USD"
    assert usage["server_tool_use"]["web_fetch_requests"] == 0
    session = kinds["session"]
    assert set(session["metadata"]) == {"team", "project", "cost_center"}
    assert set(session["agent"]["model"]) == {"id", "speed", "inference_geo"}
    created = kinds["session.thread_created"]
    assert created["session_thread_id"].startswith("sthr_") and created["model"]
    for line in tiny_lines:
        for key in ("processed_at", "created_at", "updated_at"):
            if key in line:
                assert len(line[key]) == 24 and line[key].endswith("Z"), line[key]


def test_event_ids_are_unique_and_sort_in_emission_order(tiny_lines):
    events = [line for line in tiny_lines if "session_id" in line]
    assert len({e["id"] for e in events}) == len(events)
    for sid, evs in by_session(tiny_lines).items():
        ids = [e["id"] for e in evs]
        assert ids == sorted(ids), sid
        times = [e["processed_at"] for e in evs]
        assert times == sorted(times), sid


def test_no_two_status_events_of_a_session_share_a_millisecond(tiny_lines):
    for sid, evs in by_session(tiny_lines).items():
        stamps = [e["processed_at"] for e in evs if "status_" in e["type"]]
        assert len(stamps) == len(set(stamps)), sid


def test_usage_comes_right_before_every_idle_with_cumulative_totals(tiny_lines):
    for sid, evs in by_session(tiny_lines).items():
        previous = None
        for before, event in zip(evs, evs[1:], strict=False):
            if event["type"] == "session.status_idle":
                assert before["type"] == "session.usage", sid
                assert before["processed_at"] == event["processed_at"]
            if event["type"] == "session.usage":
                u = event["usage"]
                if previous is not None:
                    assert u["output_tokens"] >= previous["output_tokens"]
                    assert int(u["list_cost"]["amount"]) >= int(previous["list_cost"]["amount"])
                previous = u


def test_requires_action_names_the_tool_call_and_the_next_turn_answers_it(tiny_lines):
    ids = {line["id"]: line for line in tiny_lines if "session_id" in line}
    asked = [e for e in tiny_lines if e["type"] == "session.status_idle"
             and e["stop_reason"]["type"] == "requires_action"]
    assert asked
    for idle in asked:
        (tool,) = idle["stop_reason"]["event_ids"]
        assert ids[tool]["type"] == "agent.tool_use"
        assert ids[tool]["evaluated_permission"] == "ask"
    answers = [e for e in tiny_lines if e["type"] == "user.tool_confirmation"]
    assert answers and all(ids[a["tool_use_id"]]["evaluated_permission"] == "ask"
                           for a in answers)


def test_errors_reschedule_exhaust_or_terminate(tiny_lines):
    for evs in by_session(tiny_lines).values():
        for i, event in enumerate(evs):
            if event["type"] != "session.error":
                continue
            status = event["error"]["retry_status"]["type"]
            failed = evs[i - 1]
            assert failed["type"] == "span.model_request_end" and failed["is_error"]
            assert failed["model_usage"]["input_tokens"] == 0
            following = [e["type"] for e in evs[i + 1: i + 3]]
            if status == "retrying":
                assert following == ["session.status_rescheduled", "session.status_running"]
            elif status == "exhausted":
                assert following == ["session.usage", "session.status_idle"]
                assert evs[i + 2]["stop_reason"]["type"] == "retries_exhausted"
            else:
                assert following == ["session.usage", "session.status_terminated"]
                assert i + 3 == len(evs), "a terminal error ends the session"


def test_a_budget_stops_the_session_once_its_cap_is_reached(tiny_lines):
    """(That the cap was not yet reached before the last request is checked, with exact
    costs, in test_simulator_costs.)"""
    sessions = {line["id"]: line for line in tiny_lines if line["type"] == "session"}
    stopped = 0
    for sid, evs in by_session(tiny_lines).items():
        idles = [e for e in evs if e["type"] == "session.status_idle"]
        if any(e["stop_reason"]["type"] == "budget_reached" for e in idles):
            stopped += 1
            cap = int(sessions[sid]["budget"]["max_list_cost"]["amount"])
            last = [e for e in evs if e["type"] == "session.usage"][-1]["usage"]
            assert int(last["list_cost"]["amount"]) >= cap
            assert idles[-1]["stop_reason"]["type"] == "budget_reached"
            assert not any(e["type"] == "span.model_request_start"
                           for e in evs if e["processed_at"] > idles[-1]["processed_at"])
    assert stopped > 0


# --- reproducible --------------------------------------------------------------------


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(tiny_jsonl, tmp_path):
    again, other = tmp_path / "again.jsonl", tmp_path / "other.jsonl"
    write_jsonl(again, simulation())
    write_jsonl(other, simulation(seed=8))
    assert _digest(again) == _digest(tiny_jsonl)
    assert _digest(other) != _digest(tiny_jsonl)


def test_a_day_does_not_depend_on_how_many_days_follow():
    # The run tag names the window, so ids differ between windows; the events do not.
    a, b = simulation(days=3).day(1), simulation(days=5).day(1)
    assert a.n_events == b.n_events
    for kind, cols in a.events.items():
        for name in ("sess", "seq", "at_ms", "thr"):
            assert (cols[name] == b.events[kind][name]).all(), (kind, name)


# --- the store -----------------------------------------------------------------------

TABLES = ("events", "status_events", "model_requests", "usage_snapshots", "tool_uses",
          "threads", "session_updates", "other_events", "sessions", "agents", "environments",
          "quarantine")


def _rows(con, table: str) -> list[tuple]:
    columns = [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall()]
    select = ", ".join(f"CAST({c} AS VARCHAR)" for c in columns)
    return con.execute(f"SELECT {select} FROM {table} ORDER BY ALL").fetchall()


def test_direct_store_writes_equal_ingesting_the_jsonl(tmp_path):
    sim = simulation(days=2)
    path = tmp_path / "run.jsonl"
    write_jsonl(path, sim)
    ingested = connect(tmp_path / "ingested.duckdb")
    via_file = ingest_path(ingested, path, max_future_ms=FUTURE_OK)
    direct = connect(tmp_path / "direct.duckdb")
    written = write_store(direct, simulation(days=2))
    for table in TABLES:
        assert _rows(ingested, table) == _rows(direct, table), table
    log = "SELECT ingest_id, lines, new_events, duplicates, records, quarantined FROM ingest_log"
    assert ingested.execute(log).fetchall() == direct.execute(log).fetchall()
    assert (written.events, written.records) == (via_file.new_events, via_file.records)


def test_writing_a_run_twice_skips_every_event_already_stored(tmp_path):
    con = connect(tmp_path / "s.duckdb")
    first = write_store(con, simulation(days=1))
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
    second = write_store(con, simulation(days=1))
    assert (second.events, second.duplicates) == (0, first.events)
    assert counts == {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                      for t in TABLES}
    other = write_store(con, simulation(days=1, seed=8))
    assert other.duplicates == 0 and other.events > 0


# --- timing semantics ----------------------------------------------------------------


def _running_ms(events: list[dict], thread: str | None = None) -> list[tuple[int, int]]:
    """Running intervals from status events (session-level, or one thread's)."""
    def ms(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

    prefix = "session.thread_status_" if thread else "session.status_"
    statuses = [(ms(e["processed_at"]), e["type"].removeprefix(prefix)) for e in events
                if e["type"].startswith(prefix) and e.get("session_thread_id") == thread]
    return [(at, nxt) for (at, state), (nxt, _) in zip(statuses, statuses[1:], strict=False)
            if state == "running"]


def test_running_time_from_status_events_equals_active_seconds_to_the_ms(tiny_lines):
    for sid, evs in by_session(tiny_lines).items():
        snaps = [e for e in evs if e["type"] == "session.usage"]
        running = sum(b - a for a, b in _running_ms(evs))
        active_ms = round(snaps[-1]["usage"]["active_seconds"] * 1000)
        assert running == active_ms, sid


def test_a_multi_agent_session_runs_while_any_of_its_threads_runs(tiny_lines):
    checked = 0
    for sid, evs in by_session(tiny_lines).items():
        threads = {e["session_thread_id"] for e in evs if e["type"] == "session.thread_created"}
        if not threads:
            continue
        session_running = _running_ms(evs)
        for thread in threads:
            for a, b in _running_ms(evs, thread):
                assert any(s <= a and b <= e for s, e in session_running), (sid, thread)
                checked += 1
        # Thread spans carry the thread id and happen while the thread runs.
        spans = [e for e in evs if e["type"] == "span.model_request_end"
                 and e.get("session_thread_id")]
        assert spans
    assert checked > 10


def test_cutting_at_an_instant_keeps_exactly_the_earlier_events(tmp_path):
    sim = simulation(days=2)
    cut_ms = sim.start_ms + 36 * 3_600_000
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    write_jsonl(full, sim)
    write_jsonl(cut, simulation(days=2, as_of_ms=cut_ms))
    full_events = {e["id"]: e for e in read_lines(full) if "session_id" in e}
    cut_lines = read_lines(cut)
    cut_events = {e["id"]: e for e in cut_lines if "session_id" in e}
    expected = {i for i, e in full_events.items()
                if datetime.fromisoformat(e["processed_at"].replace("Z", "+00:00"))
                .timestamp() * 1000 <= cut_ms}
    assert set(cut_events) == expected
    assert all(cut_events[i] == full_events[i] for i in expected)
    statuses = {line["status"] for line in cut_lines if line["type"] == "session"}
    assert "running" in statuses  # sessions live at the cut say so


# --- incidents -----------------------------------------------------------------------


def test_a_runaway_session_runs_for_a_day_without_a_pause(tiny_lines):
    longest = max(b - a for evs in by_session(tiny_lines).values()
                  for a, b in _running_ms(evs))
    assert longest >= 24 * 3_600_000


def test_a_burst_multiplies_arrivals_and_a_model_switch_makes_a_new_agent_version():
    sim = simulation()
    beta = sim.hour_counts[1]
    burst = slice(60, 62)  # after_days = 2.5 -> hours 60 and 61 of the window
    assert beta[burst].sum() > 8 * beta[36:38].sum()
    sessions = [s for d in range(4) for s in [sim.day(d).sessions]]
    switch_ms = sim.start_ms + 2 * 86_400_000
    fast = sim.profile.agent_index("fast-coder")
    for s in sessions:
        mine = s["agent"] == fast
        before, after = mine & (s["created"] < switch_ms), mine & (s["created"] >= switch_ms)
        assert (s["version"][before] == 1).all() and (s["version"][after] == 2).all()
        models = {sim.fleet.model_ids[m] for m in s["model"][after]}
        assert models <= {"claude-opus-4-8"}
    agent = next(a for a in sim.agent_records() if a["name"] == "fast-coder")
    assert (agent["version"], agent["model"]) == (2, "claude-opus-4-8")
