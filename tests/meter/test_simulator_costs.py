"""list_cost in the simulated usage snapshots is exact: recomputed here from the events alone.

The recomputation is independent of the simulator's integer arithmetic: Decimal, from the
JSON lines and the shipped price books, by the billing rules of reference §5 and §10.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest

from meter.ingest import ingest_path
from meter.simulator import RateCard, UnratedModelError
from meter.simulator.rates import CompiledRates, ModelRates, RateSchedule, TokenPrices
from meter.simulator.writers import write_jsonl
from meter.store import connect
from pricing.check import list_cost_check
from pricing.pricebook import PriceBook, load_pricebooks
from pricing.rating import RatingOptions, rate
from tests.meter.test_simulator import FUTURE_OK, TINY, by_session, read_lines, simulation

BOOKS = [b for b in load_pricebooks() if b.name == "anthropic-list"]
CENT = Decimal("0.01")
HALF_CENT = Decimal("0.005")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def book_at(at_ms: int) -> PriceBook:
    return next(b for b in BOOKS if b.covers(at_ms))


def token_cost(book: PriceBook, model_id: str, speed: str, geo: str,
               tokens: dict[str, int], *, one_request: bool = True) -> Decimal:
    """Token cost of one request (or, `one_request` false, of several at standard tier):
    classes disjoint, fast rates where the book applies them, long-context rates for every
    token of a large prompt, the data-residency multiplier on all classes."""
    model = book.resolve(model_id)
    assert model is not None, f"{model_id} unpriced in {book.version}"
    rates = model.standard
    if speed == "fast" and book.modifiers.fast_mode_applies and model.fast:
        rates = model.fast
    elif model.long_context is not None and one_request:
        prompt = tokens["input"] + tokens["cache_read"] + tokens["cache_write_5m"] \
            + tokens["cache_write_1h"]
        if prompt > model.long_context.threshold_tokens:
            rates = model.long_context
    mult = model.geo_multiplier if geo == "us" and book.modifiers.data_residency_applies \
        else Decimal(1)
    return sum((Decimal(n) * rates.rate(c) * mult / 1_000_000 for c, n in tokens.items()),
               Decimal(0))


def runtime_cost(intervals: list[tuple[int, int]]) -> Decimal:
    """Running milliseconds x $/session-hour, split where the book changes."""
    total = Decimal(0)
    for start, end in intervals:
        cuts = sorted({start, end, *(b.effective_from_ms for b in BOOKS
                                     if start < b.effective_from_ms < end)})
        for a, b in zip(cuts, cuts[1:], strict=False):
            total += Decimal(b - a) * book_at(a).runtime.usd_per_session_hour / 3_600_000
    return total


def running_intervals(evs: list[dict], until: int) -> list[tuple[int, int]]:
    statuses = [(ms(e["processed_at"]), e["type"]) for e in evs
                if e["type"].startswith("session.status_")]
    return [(a, min(b, until)) for (a, kind), (b, _) in zip(statuses, statuses[1:], strict=False)
            if kind == "session.status_running" and a < until]


def exact_cost(session: dict, evs: list[dict]) -> Decimal:
    """The session's cost up to its last usage snapshot.

    Token classes from the snapshot increases (the only place with the 5 min / 1 h split),
    each priced at the book in force when it is reported; multi-model sessions request by
    request from the spans, at each thread's own model. Searches from the snapshots.
    """
    model = session["agent"]["model"]
    threads = {e["session_thread_id"]: e["model"] for e in evs
               if e["type"] == "session.thread_created"}
    multi_model = any(m != model["id"] for m in threads.values())
    snaps = [e for e in evs if e["type"] == "session.usage"]
    last = ms(snaps[-1]["processed_at"])
    total = Decimal(0)
    before = {"input": 0, "output": 0, "cache_read": 0, "cache_write_5m": 0,
              "cache_write_1h": 0, "searches": 0}
    for snap in snaps:
        u = snap["usage"]
        now = {"input": u["input_tokens"], "output": u["output_tokens"],
               "cache_read": u["cache_read_input_tokens"],
               "cache_write_5m": u["cache_creation"]["ephemeral_5m_input_tokens"],
               "cache_write_1h": u["cache_creation"]["ephemeral_1h_input_tokens"],
               "searches": u["server_tool_use"]["web_search_requests"]}
        book = book_at(ms(snap["processed_at"]))
        delta = {k: now[k] - before[k] for k in now}
        total += Decimal(delta.pop("searches")) * book.web_search.usd_per_1000 / 1000
        if not multi_model and any(delta.values()):
            total += _by_requests(book, model, evs, snap, before_ms=_previous(snaps, snap),
                                  totals=delta)
        before = now
    if multi_model:
        for e in evs:
            if e["type"] == "span.model_request_end" and ms(e["processed_at"]) <= last:
                mu = e["model_usage"]
                total += token_cost(
                    book_at(ms(e["processed_at"])), threads.get(e.get("session_thread_id"),
                                                                model["id"]),
                    mu["speed"], model["inference_geo"],
                    {"input": mu["input_tokens"], "output": mu["output_tokens"],
                     "cache_read": mu["cache_read_input_tokens"],
                     "cache_write_5m": mu["cache_creation_input_tokens"], "cache_write_1h": 0})
    return total + runtime_cost(running_intervals(evs, last))


def _previous(snaps: list[dict], snap: dict) -> int:
    i = snaps.index(snap)
    return ms(snaps[i - 1]["processed_at"]) if i else -1


def _by_requests(book: PriceBook, model: dict, evs: list[dict], snap: dict, *, before_ms: int,
                 totals: dict[str, int]) -> Decimal:
    """A snapshot increase priced request by request where a request's prompt decides its
    tier (long context), else as one block. Requests of a large prompt write to the cache
    at the default 5 min TTL (a span does not say which), the rest is the snapshot's split."""
    at = ms(snap["processed_at"])
    spans = [e["model_usage"] for e in evs if e["type"] == "span.model_request_end"
             and before_ms < ms(e["processed_at"]) <= at]
    priced = book.resolve(model["id"])
    threshold = priced.long_context.threshold_tokens if priced.long_context else None
    rest = dict(totals)
    total = Decimal(0)
    for mu in spans:
        prompt = mu["input_tokens"] + mu["cache_read_input_tokens"] \
            + mu["cache_creation_input_tokens"]
        if threshold is not None and prompt > threshold:
            one = {"input": mu["input_tokens"], "output": mu["output_tokens"],
                   "cache_read": mu["cache_read_input_tokens"],
                   "cache_write_5m": mu["cache_creation_input_tokens"], "cache_write_1h": 0}
            total += token_cost(book, model["id"], model["speed"], model["inference_geo"], one)
            for k, v in one.items():
                rest[k] -= v
    assert all(v >= 0 for v in rest.values())
    return total + token_cost(book, model["id"], model["speed"], model["inference_geo"], rest,
                              one_request=False)


def check_all(lines: list[dict]) -> int:
    sessions = {line["id"]: line for line in lines if line["type"] == "session"}
    checked = 0
    with localcontext() as ctx:
        ctx.prec = 60
        for sid, evs in by_session(lines).items():
            snaps = [e for e in evs if e["type"] == "session.usage"]
            if not snaps:
                continue
            cents = Decimal(snaps[-1]["usage"]["list_cost"]["amount"]) * CENT
            exact = exact_cost(sessions[sid], evs)
            assert abs(exact - cents) <= HALF_CENT, (sid, exact, cents)
            checked += 1
    return checked


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("costs") / "tiny.jsonl"
    write_jsonl(path, simulation())
    return path


def test_last_list_cost_of_every_session_equals_an_exact_recomputation(tiny):
    assert check_all(read_lines(tiny)) > 200


def test_list_cost_is_exact_across_a_price_book_change(tmp_path):
    """2026-08-07: fast mode and US data residency start to apply; runtime split there."""
    text = (TINY.replace("claude-sonnet-5-5", "claude-sonnet-4-6")
            .replace("claude-opus-5-5", "claude-opus-5")
            .replace("claude-haiku-5-5", "claude-haiku-4-5")
            .replace("claude-opus-4-8", "claude-opus-4-7"))
    text = text.replace('inference_geo = "us"\nenvironment = "env-a"\ntools = ["read", '
                        '"web_search"]', 'environment = "env-a"\ntools = ["read", "web_search"]')
    path = tmp_path / "change.jsonl"
    write_jsonl(path, simulation(days=3, start=date(2026, 8, 5), text=text))
    lines = read_lines(path)
    assert check_all(lines) > 100
    speeds = {(e["processed_at"] >= "2026-08-07", e["model_usage"]["speed"]) for e in lines
              if e["type"] == "span.model_request_end"}
    assert {(False, "fast"), (True, "fast")} <= speeds


def test_a_budget_is_checked_before_each_request_and_overshoots_by_at_most_one(tiny):
    """The saver agent writes its cache at 5 min only, so each span prices exactly."""
    lines = read_lines(tiny)
    sessions = {line["id"]: line for line in lines if line["type"] == "session"}
    stopped = 0
    for sid, evs in by_session(lines).items():
        session = sessions[sid]
        if session["agent"]["name"] != "saver" or session["budget"] is None:
            continue
        idle = [e for e in evs if e["type"] == "session.status_idle"]
        if idle[-1]["stop_reason"]["type"] != "budget_reached":
            continue
        stopped += 1
        cap = Decimal(session["budget"]["max_list_cost"]["amount"]) * CENT
        ends = [e for e in evs if e["type"] == "span.model_request_end"]
        starts = {e["id"]: e for e in evs if e["type"] == "span.model_request_start"}
        last_start = ms(starts[ends[-1]["model_request_start_id"]]["processed_at"])
        spent = runtime_cost(running_intervals(evs, last_start))
        model = session["agent"]["model"]
        for e in ends[:-1]:
            mu = e["model_usage"]
            spent += token_cost(book_at(ms(e["processed_at"])), model["id"], mu["speed"],
                                model["inference_geo"],
                                {"input": mu["input_tokens"], "output": mu["output_tokens"],
                                 "cache_read": mu["cache_read_input_tokens"],
                                 "cache_write_5m": mu["cache_creation_input_tokens"],
                                 "cache_write_1h": 0})
        searches = sum(1 for e in evs if e["type"] == "agent.tool_use"
                       and e["name"] == "web_search" and ms(e["processed_at"]) < last_start)
        spent += Decimal(searches) * Decimal("0.01")
        final = Decimal([e for e in evs if e["type"] == "session.usage"][-1]
                        ["usage"]["list_cost"]["amount"])
        assert spent < cap, (sid, spent, cap)  # the last request was allowed to start
        assert final * CENT >= cap - HALF_CENT  # ...and the session stopped after it
    assert stopped >= 5


def test_the_lead_rating_engine_agrees_with_every_list_cost(tiny, tmp_path):
    con = connect(tmp_path / "s.duckdb")
    assert ingest_path(con, tiny, max_future_ms=FUTURE_OK).quarantined == 0
    rate(con, BOOKS, RatingOptions(as_of_ms=2**62))
    rows = list_cost_check(con, 2**62).fetchall()
    assert len(rows) > 200
    assert [r for r in rows if r[-1]] == []  # none flagged


def test_a_model_without_a_price_is_refused_naming_model_and_book():
    with pytest.raises(UnratedModelError, match="claude-fable-5-2.*anthropic-list 2026-08-07"):
        simulation(days=1, text=TINY.replace('model = "claude-sonnet-5-5"\nenvironment',
                                             'model = "claude-fable-5-2"\nenvironment', 1))


def test_integer_units_reproduce_the_official_worked_example():
    """Reference §5: Opus 5, 1 h running, 50,000 in / 15,000 out = $0.705; with 40,000 of
    the input read from cache = $0.525."""
    opus = ModelRates(standard=TokenPrices(Decimal(5), Decimal(25), Decimal("6.25"),
                                           Decimal(10), Decimal("0.50")))
    card = RateCard(usd_per_session_hour=Decimal("0.08"), usd_per_1000_searches=Decimal(10),
                    models={"claude-opus-5": opus})
    rates = CompiledRates.compile(RateSchedule.single(card), ["claude-opus-5"])
    assert rates.den == 9  # $0.08/h = 200000/9 pico-dollars per ms

    def usd(inp: int, read: int) -> Fraction:
        tokens = {k: np.array([v]) for k, v in {"input": inp, "output": 15_000,
                                                "cache_read": read, "cw5": 0, "cw1h": 0}.items()}
        units = rates.request_units(tokens, np.array([0]), np.array([False]),
                                    np.array([False]), np.array([0]))[0]
        units += rates.runtime_units(np.array([0]), np.array([3_600_000]))[0]
        return Fraction(int(units), 10**12 * rates.den)

    assert usd(50_000, 0) == Fraction("0.705")
    assert usd(10_000, 40_000) == Fraction("0.525")
    assert list(rates.cents(np.array([5 * rates.units_per_cent // 10,
                                      15 * rates.units_per_cent // 10]))) == [0, 2]


def test_sessions_cut_at_an_instant_still_have_exact_snapshots(tmp_path):
    sim = simulation(days=2, as_of_ms=simulation(days=2).start_ms + 30 * 3_600_000)
    path = tmp_path / "cut.jsonl"
    write_jsonl(path, sim)
    assert check_all(read_lines(path)) > 50
