"""The rating engine on tiny stores, every amount computed by hand in the comments."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest

from meter.ingest import ingest_lines
from meter.store import connect
from pricing.check import list_cost_check
from pricing.pricebook import PriceBook, load_pricebooks
from pricing.rating import RatingOptions, rate
from reports.invoice import build_invoice
from tests.conftest import ms, session_record, snapshot, span, status

BOOKS = load_pricebooks()


def agent(model, speed="standard", geo="global"):
    return {"id": "agent_01", "version": 1, "name": "a",
            "model": {"id": model, "speed": speed, "inference_geo": geo}}


def rated(events, as_of="2026-12-31T00:00:00Z", books=BOOKS):
    con = connect(":memory:")
    result = ingest_lines(con, [json.dumps(e) for e in events], source="t",
                          max_future_ms=10**12)
    assert result.quarantined == 0, result.errors
    rate(con, books, RatingOptions(as_of_ms=ms(as_of)))
    return con


def total(con, where="true"):
    value = con.execute(f"SELECT sum(amount_exact) FROM charges WHERE {where}").fetchall()[0][0]
    return Decimal(value or 0)


def worked_example(sid, input, read):
    return [
        session_record(sid, created_at="2026-11-03T08:00:00Z", agent=agent("claude-opus-5")),
        status(sid, f"{sid}_1", "2026-11-03T09:00:00.000Z", "running"),
        snapshot(sid, f"{sid}_2", "2026-11-03T09:59:59.000Z", input=input, output=15_000,
                 read=read),
        status(sid, f"{sid}_3", "2026-11-03T10:00:00.000Z", "idle"),
    ]


def test_official_worked_example_opus_5_one_hour():
    # $0.25 input + $0.375 output + $0.08 runtime = $0.705 (reference section 5)
    assert total(rated(worked_example("s", 50_000, 0))) == Decimal("0.705")


def test_official_worked_example_with_cache_reads():
    # 10,000 uncached x $5/M = $0.05; 40,000 read x $0.50/M = $0.02; $0.375 + $0.08 -> $0.525
    assert total(rated(worked_example("s", 10_000, 40_000))) == Decimal("0.525")


def test_idle_time_is_free():
    con = rated([session_record("s"), status("s", "e1", "2026-11-03T09:00:00Z", "idle")])
    assert total(con) == 0
    assert con.execute("SELECT count(*) FROM charges").fetchall()[0][0] == 0


def test_runtime_is_per_millisecond():
    con = rated([session_record("s"), status("s", "e1", "2026-11-03T09:00:00.000Z", "running"),
                 status("s", "e2", "2026-11-03T09:00:00.450Z", "idle")])
    # 450 ms x 0.08 / 3,600,000 = 0.00001 exactly
    assert total(con) == Decimal("0.00001")


def test_session_crossing_a_month_boundary_is_split_between_invoices():
    con = rated([session_record("s"),
                 status("s", "e1", "2026-10-31T23:30:00Z", "running"),
                 status("s", "e2", "2026-11-01T00:45:00Z", "idle")])
    # 30 min in October = $0.04; 45 min in November = $0.06
    october = build_invoice(con, "2026-10", as_of="x")
    november = build_invoice(con, "2026-11", as_of="x")
    assert (october.total, november.total) == (Decimal("0.04"), Decimal("0.06"))
    assert [ln.quantity for ln in october.lines] == [1_800_000]


def _book(version, start, end=None, runtime="0.08", opus_input="5"):
    return PriceBook.model_validate({
        "name": "test", "version": version, "effective_from": start, "effective_to": end,
        "runtime": {"usd_per_session_hour": runtime}, "web_search": {"usd_per_1000": "10"},
        "modifiers": {"fast_mode_applies": True, "data_residency_applies": True},
        "models": [{"id": "claude-opus-5", "input": opus_input, "output": "25",
                    "cache_write_5m": "6.25", "cache_write_1h": "10", "cache_read": "0.5"}],
    })


def test_a_price_change_on_the_15th_splits_the_month():
    books = [_book("a", "2026-11-01T00:00:00Z", "2026-11-15T00:00:00Z"),
             _book("b", "2026-11-15T00:00:00Z", runtime="0.16", opus_input="4")]
    con = rated([
        session_record("s", agent=agent("claude-opus-5")),
        status("s", "e1", "2026-11-14T23:00:00Z", "running"),
        snapshot("s", "e2", "2026-11-14T23:30:00Z", input=1_000_000),
        snapshot("s", "e3", "2026-11-15T00:30:00Z", input=3_000_000),
        status("s", "e4", "2026-11-15T01:00:00Z", "idle"),
    ], books=books)
    # runtime: 1 h x 0.08 + 1 h x 0.16; input: 1M x $5 + 2M x $4
    assert total(con, "book_version = 'a'") == Decimal("0.08") + Decimal("5")
    assert total(con, "book_version = 'b'") == Decimal("0.16") + Decimal("8")
    lines = build_invoice(con, "2026-11", as_of="x").lines
    runtime = [ln for ln in lines if ln.meter == "runtime"][0]
    assert runtime.unit_price is None and runtime.amount == Decimal("0.24")


def test_every_token_class_for_two_models():
    con = rated([
        session_record("a", agent=agent("claude-opus-5")),
        snapshot("a", "a1", "2026-11-03T09:00:00Z", input=120_000, output=40_000, w5m=80_000,
                 w1h=30_000, read=500_000),
        session_record("b", agent=agent("claude-haiku-4-5-20251001")),
        snapshot("b", "b1", "2026-11-03T09:00:00Z", input=333_333, output=77_777, w5m=12_345,
                 w1h=6_789, read=1_000_001),
    ])
    # Opus 5: 0.6 + 1.0 + 0.5 + 0.3 + 0.25
    assert total(con, "model = 'claude-opus-5'") == Decimal("2.65")
    # Haiku 4.5 (dated id resolves): 0.333333 + 0.388885 + 0.01543125 + 0.013578 + 0.1000001
    assert total(con, "model = 'claude-haiku-4-5'") == Decimal("0.85122735")
    haiku = {ln.token_class: ln.amount for ln in build_invoice(con, "2026-11", as_of="x").lines
             if ln.model == "claude-haiku-4-5"}
    assert haiku == {"input": Decimal("0.33"), "output": Decimal("0.39"),
                     "cache_write_5m": Decimal("0.02"), "cache_write_1h": Decimal("0.01"),
                     "cache_read": Decimal("0.10")}


def test_cache_writes_are_charged_once_not_twice():
    # the snapshot and the span report the same 2,000 written tokens: priced once at $6.25/M
    con = rated([
        session_record("s", agent=agent("claude-opus-5")),
        span("s", "e1", "2026-11-03T09:00:00Z", input=100, write=2_000, read=5_000),
        snapshot("s", "e2", "2026-11-03T09:00:01Z", input=100, w5m=2_000, read=5_000),
    ])
    assert total(con) == Decimal("0.0005") + Decimal("0.0125") + Decimal("0.0025")


def test_spans_after_the_last_snapshot_count_with_5_minute_writes():
    con = rated([
        session_record("s", agent=agent("claude-opus-5")),
        snapshot("s", "e1", "2026-11-03T09:00:00Z", input=1_000),
        span("s", "e0", "2026-11-03T08:59:00Z", input=1_000),  # already in the snapshot
        span("s", "e2", "2026-11-03T09:01:00Z", input=2_000, output=100, write=4_000, read=10),
    ])
    # snapshot: 1,000 x $5 = 0.005; span: 2,000 x $5 + 100 x $25 + 4,000 x $6.25 + 10 x $0.5
    assert total(con) == Decimal("0.005") + Decimal("0.01") + Decimal("0.0025") + \
        Decimal("0.025") + Decimal("0.000005")


def test_long_context_requests_cost_the_long_context_rate_for_all_their_tokens():
    con = rated([
        session_record("s", agent=agent("claude-haiku-5-5")),
        # prompt 110K > 100K: 50,000 x $0.50 + 60,000 x $0.05 + 2,000 x $2.50 = 0.033
        span("s", "e1", "2026-11-03T09:00:00Z", input=50_000, read=60_000, output=2_000),
        # prompt 90K: standard 90,000 x $0.10 + 1,000 x $0.50 = 0.0095
        span("s", "e2", "2026-11-03T09:01:00Z", input=90_000, output=1_000),
    ])
    assert total(con) == Decimal("0.0425")


def test_web_searches_cost_ten_dollars_per_thousand():
    con = rated([session_record("s"),
                 snapshot("s", "e1", "2026-11-03T09:00:00Z", searches=3),
                 snapshot("s", "e2", "2026-11-03T09:05:00Z", searches=7)])
    assert total(con, "meter = 'web_search'") == Decimal("0.07")


def test_unknown_model_is_unrated_never_priced_at_zero():
    con = rated([session_record("s", agent=agent("claude-fable-5-2")),
                 snapshot("s", "e1", "2026-11-03T09:00:00Z", input=1_000, output=10)])
    invoice = build_invoice(con, "2026-11", as_of="x")
    assert invoice.lines == [] and invoice.total == 0
    assert [(u.model, u.token_class, u.quantity) for u in invoice.unrated] == [
        ("claude-fable-5-2", "input", 1_000), ("claude-fable-5-2", "output", 10)]


@pytest.mark.parametrize(("model", "day", "expected"), [
    ("claude-opus-4-6", "2026-09-01", "5.5"),   # 4.6+: 1.1x once the book honours it
    ("claude-opus-4-6", "2026-06-01", "5"),     # April book: geo did not apply in MA
    ("claude-opus-4-1", "2026-09-01", "15"),    # older model: no multiplier
])
def test_us_data_residency_multiplies_token_rates(model, day, expected):
    con = rated([session_record("s", agent=agent(model, geo="us")),
                 snapshot("s", "e1", f"{day}T09:00:00Z", input=1_000_000)])
    assert total(con) == Decimal(expected)


@pytest.mark.parametrize(("day", "expected"), [("2026-09-01", "15"), ("2026-07-30", "7.5")])
def test_fast_mode_uses_fast_rates_where_the_book_has_them(day, expected):
    # Sep: $10 in + 100,000 x $50; July: fast did not apply, $5 + 100,000 x $25
    con = rated([session_record("s", agent=agent("claude-opus-5", speed="fast")),
                 snapshot("s", "e1", f"{day}T09:00:00Z", input=1_000_000, output=100_000)])
    assert total(con) == Decimal(expected)


def test_running_session_is_rated_to_as_of_and_provisional():
    con = rated([session_record("s"), status("s", "e1", "2026-11-03T09:00:00Z", "running")],
                as_of="2026-11-03T09:30:00Z")
    invoice = build_invoice(con, "2026-11", as_of="x")
    assert invoice.provisional and invoice.total == Decimal("0.04")


def test_list_cost_check_shows_drift():
    events = worked_example("s", 50_000, 0)
    events[2]["usage"]["list_cost"] = {"amount": "70", "currency": "USD"}  # we say 0.705
    con = rated(events)
    row = list_cost_check(con, ms("2026-12-31T00:00:00Z")).fetchall()[0]
    # runtime up to the snapshot: 59:59 -> 0.07997778; tokens 0.625
    assert row[2] == Decimal("0.70")
    assert row[3] == Decimal("0.704978")
    assert row[5] is False


SESSIONS = {
    sid: [session_record(sid, agent=agent(model)),
          status(sid, f"{sid}1", "2026-11-03T09:00:00.000Z", "running"),
          snapshot(sid, f"{sid}2", "2026-11-03T09:10:00.123Z", input=n, output=n // 3,
                   w5m=n // 7, read=n * 2, searches=n % 5),
          status(sid, f"{sid}3", "2026-11-03T09:10:00.124Z", "idle"),
          span(sid, f"{sid}4", "2026-11-03T09:20:00.000Z", input=n, write=n)]
    for sid, model, n in [("a", "claude-opus-5", 12_345), ("b", "claude-sonnet-4-6", 777),
                          ("c", "claude-haiku-4-5", 99_999), ("d", "claude-opus-4-8", 5)]
}


def test_rating_is_additive_over_disjoint_sessions():
    whole = total(rated([e for evs in SESSIONS.values() for e in evs]))
    parts = sum(total(rated(evs)) for evs in SESSIONS.values())
    assert whole == parts and whole > 0


def test_rating_is_independent_of_ingest_order():
    events = [e for evs in SESSIONS.values() for e in evs]
    expected = total(rated(events))
    for seed in range(3):
        random.Random(seed).shuffle(events)
        assert total(rated(events)) == expected


def test_thread_spans_use_the_thread_model_and_count_once_with_roster_copies():
    roster = [{"name": "lead", "model": "claude-opus-5"},
              {"name": "researcher", "model": {"id": "claude-haiku-4-5"}},
              {"name": "researcher", "model": {"id": "claude-haiku-4-5"}}]  # copies allowed
    session = session_record("s", agent={**agent("claude-opus-5"),
                                         "multiagent": {"type": "coordinator",
                                                        "agents": roster}})
    con = rated([
        session,
        {"session_id": "s", "type": "session.thread_created", "id": "t1",
         "processed_at": "2026-11-03T09:00:00Z", "session_thread_id": "sthr_r",
         "agent_name": "researcher"},
        span("s", "e1", "2026-11-03T09:00:01Z", input=1_000_000, session_thread_id="sthr_r"),
        span("s", "e2", "2026-11-03T09:00:02Z", input=1_000_000),  # the lead thread
        snapshot("s", "e3", "2026-11-03T09:00:03Z", input=2_000_000, searches=1),
    ])
    # a multi-model session: spans priced at each thread's model, searches from the snapshot
    assert total(con, "model = 'claude-haiku-4-5'") == Decimal("1")
    assert total(con, "model = 'claude-opus-5'") == Decimal("5")
    assert total(con) == Decimal("6.01")


def test_rates_finer_than_a_picodollar_take_the_exact_decimal_path():
    # $0.1234567 per million tokens is 123,456.7 pico-dollars per token: no integer path
    fine = _book("fine", "2026-11-01T00:00:00Z", opus_input="0.1234567")
    con = rated([session_record("s", agent=agent("claude-opus-5")),
                 snapshot("s", "e1", "2026-11-03T09:00:00Z", input=3_000_001, output=1)],
                books=[fine])
    # 3,000,001 x 0.1234567 / 1e6 = 0.3703702234567; 1 output x $25/M = 0.000025
    assert total(con) == Decimal("0.3703702234567") + Decimal("0.000025")
