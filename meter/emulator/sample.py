"""A small deterministic day of sessions in the ingest line format, for tests and demos.

Stands in for `meter.simulator` output where the emulator needs data without depending on it:
session records (final state, `updated_at` = the last event) and their events with
`session_id`: user turns, running/idle transitions, model request spans with usage, tool
uses, cumulative `session.usage` before each idle, some metadata updates, a few
rescheduling errors, multiagent threads and terminations. Some events share a millisecond
with the one before, as real events do, so that cursor boundaries get exercised.
"""

from __future__ import annotations

import json
import random
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import NotRequired, TypedDict

from meter.simulator.rates import RateSchedule
from meter.vocabulary import iso_ms, parse_api_time

MODELS = [
    {"id": "claude-opus-5", "speed": "standard", "inference_geo": "global"},
    {"id": "claude-sonnet-5", "speed": "standard", "inference_geo": "global"},
    {"id": "claude-haiku-4-5", "speed": "standard", "inference_geo": "us"},
    {"id": "claude-opus-5", "speed": "fast", "inference_geo": "global"},
]
TEAMS = ["platform", "research", "support", "growth"]
TOOLS = ["bash", "str_replace_based_edit_tool", "web_search", "web_fetch"]


class _ModelUsage(TypedDict):
    """A span.model_request_end's `model_usage`."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    speed: str


class _CacheCreation(TypedDict):
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int


class _ServerToolUse(TypedDict):
    web_search_requests: int
    web_fetch_requests: int


class _ListCost(TypedDict):
    amount: str
    currency: str


class _Usage(TypedDict):
    """A session.usage event's `usage`: the session's totals so far. The running time and
    the list cost are set at the end of each turn (the list cost only with rates)."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation: _CacheCreation
    server_tool_use: _ServerToolUse
    active_seconds: NotRequired[float]
    list_cost: NotRequired[_ListCost]


def sample_day(
    *,
    sessions: int = 24,
    day: str = "2026-11-03",
    seed: int = 5,
    start_hour: int = 8,
    hours: int = 10,
    turns: tuple[int, int] = (1, 4),
    requests_per_turn: tuple[int, int] = (1, 4),
    gap_ms: tuple[int, int] = (30_000, 40 * 60_000),
    request_ms: tuple[int, int] = (800, 20_000),
    rates: RateSchedule | None = None,
) -> list[dict]:
    """Session records and events of `sessions` sessions created over `hours` from `start_hour`.

    The same arguments always give the same lines; event ids are unique across seeds. With
    `rates` (a schedule built from the price books, as the simulator's), each `session.usage`
    carries the `list_cost` the API would report, in cents; without, it carries none: a
    producer prices nothing of its own.
    """
    rng = random.Random(seed)
    day0 = parse_api_time(f"{day}T00:00:00.000Z")
    if day0 is None:
        raise ValueError(f"day: {day!r} is not a date (YYYY-MM-DD)")
    records: list[dict] = []
    events: list[dict] = []
    for i in range(sessions):
        created = day0 + start_hour * 3_600_000 + rng.randrange(hours * 3_600_000)
        record, own = _one_session(rng, f"{seed:03d}{i:05d}", i, created, turns=turns,
                                   requests_per_turn=requests_per_turn, gap_ms=gap_ms,
                                   request_ms=request_ms, rates=rates)
        records.append(record)
        events.extend(own)
    return records + events


def _one_session(
    rng: random.Random,
    tag: str,
    i: int,
    created: int,
    *,
    turns: tuple[int, int],
    requests_per_turn: tuple[int, int],
    gap_ms: tuple[int, int],
    request_ms: tuple[int, int],
    rates: RateSchedule | None,
) -> tuple[dict, list[dict]]:
    sid = f"sesn_{tag}"
    model = rng.choice(MODELS)
    multiagent = rng.random() < 0.15
    t = created + rng.randrange(200, 5_000)
    own: list[dict] = []

    def emit(kind: str, **fields) -> str:
        eid = f"sevt_{tag}_{len(own) + 1:05d}"
        own.append({"session_id": sid, "type": kind, "id": eid,
                    "processed_at": iso_ms(t), **fields})
        return eid

    usage: _Usage = {
        "input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}}
    active_ms = 0
    final = "idle"
    metadata = {"team": TEAMS[i % len(TEAMS)]}
    for turn in range(rng.randint(*turns)):
        emit("user.message", content=[{"type": "text", "text": f"task {turn + 1}"}])
        t += rng.randrange(5, 60)
        run_start = t
        emit("session.status_running")
        thread = None
        if multiagent and turn == 0:
            thread = f"sthr_{tag}"
            emit("session.thread_created", session_thread_id=thread, agent_name="reviewer")
            emit("session.thread_status_running", session_thread_id=thread,
                 agent_name="reviewer")
        for _ in range(rng.randint(*requests_per_turn)):
            t += rng.randrange(10, 200)
            start = emit("span.model_request_start")
            t += rng.randrange(*request_ms)
            mu: _ModelUsage = {
                "input_tokens": rng.randrange(200, 8_000),
                "output_tokens": rng.randrange(50, 3_000),
                "cache_creation_input_tokens": rng.choice([0, 0, rng.randrange(1, 20_000)]),
                "cache_read_input_tokens": rng.choice([0, rng.randrange(1, 60_000)]),
                "speed": model["speed"]}
            emit("span.model_request_end", is_error=False, model_request_start_id=start,
                 model_usage=mu)
            usage["input_tokens"] += mu["input_tokens"]
            usage["output_tokens"] += mu["output_tokens"]
            usage["cache_read_input_tokens"] += mu["cache_read_input_tokens"]
            usage["cache_creation"]["ephemeral_5m_input_tokens"] += \
                mu["cache_creation_input_tokens"]
            if rng.random() < 0.5:
                tool = rng.choice(TOOLS)
                t += rng.choice([0, 1, 3])
                use = emit("agent.tool_use", name=tool, input={}, evaluated_permission="allow")
                if tool == "web_search":
                    usage["server_tool_use"]["web_search_requests"] += 1
                t += rng.randrange(100, 8_000)
                emit("agent.tool_result", tool_use_id=use, content=[], is_error=False)
            if rng.random() < 0.05:
                emit("session.error", error={"type": "model_overloaded_error",
                                             "message": "Overloaded",
                                             "retry_status": {"type": "retrying"}})
                emit("session.status_rescheduled")
                active_ms += t - run_start
                t += rng.randrange(1_000, 30_000)
                run_start = t
                emit("session.status_running")
        if thread:
            t += rng.randrange(1, 500)
            emit("session.thread_status_idle", session_thread_id=thread,
                 agent_name="reviewer", stop_reason={"type": "end_turn"})
        t += rng.choice([0, 0, 5, 40])  # often the same millisecond as the span end
        emit("agent.message", content=[{"type": "text", "text": "done"}])
        active_ms += t - run_start
        usage["active_seconds"] = round(active_ms / 1000, 3)
        cents = _list_cost_cents(rates, model, usage, active_ms, t)
        if cents is not None:
            usage["list_cost"] = {"amount": str(cents), "currency": "USD"}
        emit("session.usage", usage=json.loads(json.dumps(usage)), budget=None)
        emit("session.status_idle", stop_reason={"type": "end_turn"})
        if rng.random() < 0.2:
            t += rng.randrange(1, 5_000)
            metadata = {"team": rng.choice(TEAMS), "ticket": str(turn + 1)}
            emit("session.updated", metadata=dict(metadata))
        t += rng.randrange(*gap_ms)
    if rng.random() < 0.3:
        emit("session.status_terminated")
        final = "terminated"
    record = {
        "type": "session", "id": sid, "created_at": iso_ms(created),
        "updated_at": own[-1]["processed_at"], "status": final, "title": f"session {i + 1}",
        "environment_id": "env_01",
        "agent": {"id": f"agent_{(i % 3) + 1:02d}", "version": 1 + i % 2, "name": "coder",
                  "model": dict(model)},
        "metadata": metadata, "archived_at": None,
    }
    return record, own


def _list_cost_cents(rates: RateSchedule | None, model: dict, usage: _Usage, active_ms: int,
                     at_ms: int) -> int | None:
    """The session's cumulative list cost in cents (half-even) at the rates in force at
    `at_ms`: tokens by class at the model's standard or fast rates (x the US multiplier when
    the card applies it), searches, running time. None without rates or for an unpriced model."""
    if rates is None:
        return None
    card = rates.card_at(at_ms)
    priced = card.resolve(model["id"])
    if priced is None:
        return None
    prices = priced.fast if model["speed"] == "fast" and card.fast_mode_applies \
        and priced.fast is not None else priced.standard
    cache = usage["cache_creation"]
    tokens = (usage["input_tokens"] * prices.input + usage["output_tokens"] * prices.output
              + cache["ephemeral_5m_input_tokens"] * prices.cache_write_5m
              + cache["ephemeral_1h_input_tokens"] * prices.cache_write_1h
              + usage["cache_read_input_tokens"] * prices.cache_read) / 1_000_000
    if model["inference_geo"] == "us" and card.data_residency_applies:
        tokens *= priced.data_residency_multiplier or Decimal(1)
    usd = (tokens + usage["server_tool_use"]["web_search_requests"]
           * card.usd_per_1000_searches / 1000
           + Decimal(active_ms) * card.usd_per_session_hour / 3_600_000)
    return int((usd * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def write_jsonl(lines: list[dict], path: str | Path) -> Path:
    """Write records as JSON lines; returns the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as fh:
        for obj in lines:
            fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
    return path
