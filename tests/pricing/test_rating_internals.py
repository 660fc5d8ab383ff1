"""The rating engine's fast paths, each against its exact twin or a hand-checked amount.

The speed rewrite added shortcuts that must not change a single atto-dollar: runtime priced
in whole money units (money.runtime_units), token prices narrowed to 64-bit decimals
only when exact (rating._narrow_prices), long-context lines from threshold buckets shared
by all models, thread-model lookups, and `charges` as a view that must still fit the store.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from fractions import Fraction

import pytest

from meter.ingest import ingest_lines
from meter.store import connect
from pricing import rating as rating_module
from pricing.money import UNITS_PER_USD, install_sql_macros, runtime_units_per_ms
from pricing.pricebook import PriceBook, load_pricebooks
from pricing.rating import RatingOptions, rate
from tests.conftest import ms, session_record, snapshot, span, status

SHIPPED = load_pricebooks()
DAY = "2026-11-03"


def agent(model, geo="global", **extra):
    return {"id": "agent_01", "version": 1, "name": "a",
            "model": {"id": model, "speed": "standard", "inference_geo": geo}, **extra}


def book(models, runtime="0.08", geo_applies=True):
    return PriceBook.model_validate({
        "name": "test", "version": "1", "effective_from": "2026-11-01T00:00:00Z",
        "runtime": {"usd_per_session_hour": runtime}, "web_search": {"usd_per_1000": "10"},
        "modifiers": {"fast_mode_applies": True, "data_residency_applies": geo_applies},
        "models": models,
    })


def rates(input, output, cache_write_5m, cache_write_1h, cache_read, **extra):
    """USD per MTok of each token class, as a price book's table writes them."""
    return {"input": input, "output": output, "cache_write_5m": cache_write_5m,
            "cache_write_1h": cache_write_1h, "cache_read": cache_read, **extra}


def model(id, *class_rates, **extra):
    return {"id": id, **rates(*class_rates, **extra)}


def plain(**extra):
    """claude-test-plain at $1 / $5 / $1.25 / $2 / $0.1 per MTok."""
    return model("claude-test-plain", "1", "5", "1.25", "2", "0.1", **extra)


def rated(events, books=SHIPPED, as_of="2026-12-31T00:00:00Z", con=None):
    con = con or connect(":memory:")
    result = ingest_lines(con, [json.dumps(e) for e in events], source="t",
                          max_future_ms=10**12)
    assert result.quarantined == 0, result.errors
    rate(con, books, RatingOptions(as_of_ms=ms(as_of)))
    return con


def token_lines(con, tier=None):
    """{(session, model, token_class): (quantity, amount_exact)} of the token charge lines."""
    where = "meter = 'tokens'" + (f" AND tier = '{tier}'" if tier else "")
    return {(s, m, c): (q, a) for s, m, c, q, a in con.execute(
        "SELECT session_id, model, token_class, sum(quantity)::BIGINT, sum(amount_exact) "
        f"FROM charges WHERE {where} GROUP BY ALL").fetchall()}


def said(event, speed):
    """A span event whose request says its speed."""
    event["model_usage"]["speed"] = speed
    return event


def priced(con):
    """The charge lines as (token_class, quantity, unit_price, amount_exact), sorted."""
    return sorted(con.execute("SELECT token_class, quantity, unit_price, amount_exact "
                              "FROM charges").fetchall())


# --- runtime: whole money units per ms, exact against Python's fractions ----------------------

RATES = ("0.08", "0.1", "1.234567", "0.00000001", "12.5", "100000", "300000")


def _ms_values() -> list[int]:
    rng = random.Random(20261103)
    fixed = [0, 1, 2, 3, 8, 9, 10, 3_599_999, 3_600_000, 3_600_001, 86_400_000, 2_700_000_000]
    return fixed + [rng.randrange(0, 2_700_000_000) for _ in range(300)]


@pytest.mark.parametrize("usd_per_hour", RATES)
def test_runtime_units_are_ms_times_the_rate_exactly(usd_per_hour):
    con = connect(":memory:")
    install_sql_macros(con)
    values = _ms_values()
    # the types rating uses: BIGINT ms and the book's DECIMAL(18,8) rate
    rows = con.execute("""
        SELECT ms, runtime_units(ms, CAST($rate AS DECIMAL(18, 8)))
        FROM (SELECT unnest($ms::BIGINT[]) AS ms) ORDER BY ms""",
                       {"rate": usd_per_hour, "ms": values}).fetchall()
    assert len(rows) == len(values)
    per_ms = runtime_units_per_ms(Decimal(usd_per_hour))
    for ms_, units in rows:
        exact = Fraction(ms_) * Fraction(Decimal(usd_per_hour)) / 3_600_000
        assert Fraction(units, UNITS_PER_USD) == exact == Fraction(ms_ * per_ms, UNITS_PER_USD)


def test_a_large_runtime_rate_is_priced_exactly():
    # $200,000 per session-hour: 1 h 0 min 0.001 s = 3,600,001 ms -> 200,000 + 200,000/3,600,000
    # = 200,000.0555555555555555555... -> 200000.055555555555555556 (nearest 1e-18)
    con = rated([session_record("s", agent=agent("claude-opus-5")),
                 status("s", "e1", f"{DAY}T09:00:00.000Z", "running"),
                 status("s", "e2", f"{DAY}T10:00:00.001Z", "idle")],
                books=[book([], runtime="200000")])
    rows = con.execute("SELECT quantity, amount_exact FROM charges").fetchall()
    assert rows == [(3_600_001, Decimal("200000.055555555555555556"))]


# --- token prices: narrowed to DECIMAL(18,12) only when exact ----------------------------------


def _price_type(con):
    return con.execute("SELECT DISTINCT typeof(p_input) FROM token_prices "
                       "WHERE p_input IS NOT NULL").fetchall()


def test_a_unit_price_finer_than_12_decimals_stays_wide_and_exact():
    # 3.00000001 x the residency multiplier 1.00000001 = 3.0000000400000001 USD/MTok: 16
    # decimals, so DECIMAL(18,12) would round it to 3.00000004. Amounts (Decimal by hand):
    #   input  1,230,000 x 3.0000000400000001 / 1e6 = 3.690000049200000123
    #   output    20,000 x 15 x 1.00000001 / 1e6    = 0.300000003
    # A second model in the same book, with ordinary rates, is priced exactly on that path too:
    #   input  1,234,567 x 5 x 1.1 / 1e6 = 6.7901185
    fine = model("claude-test-fine", "3.00000001", "15", "3.75", "6", "0.3",
                 data_residency_multiplier="1.00000001")
    plain = model("claude-test-plain", "5", "25", "6.25", "10", "0.5",
                  data_residency_multiplier="1.1")
    con = rated([
        session_record("f", agent=agent("claude-test-fine", geo="us")),
        snapshot("f", "f1", f"{DAY}T09:00:00Z", input=1_230_000, output=20_000),
        session_record("p", agent=agent("claude-test-plain", geo="us")),
        snapshot("p", "p1", f"{DAY}T09:00:00Z", input=1_234_567),
    ], books=[book([fine, plain])])
    assert _price_type(con) != [("DECIMAL(18,12)",)]
    assert token_lines(con) == {
        ("f", "claude-test-fine", "input"): (1_230_000, Decimal("3.690000049200000123")),
        ("f", "claude-test-fine", "output"): (20_000, Decimal("0.300000003")),
        ("p", "claude-test-plain", "input"): (1_234_567, Decimal("6.7901185")),
    }
    # the hand numbers are the Decimal products, not rounded ones
    assert Decimal("1230000") * Decimal("3.00000001") * Decimal("1.00000001") / 10**6 == \
        Decimal("3.690000049200000123")


def test_list_prices_times_a_multiplier_are_narrowed_and_stay_exact():
    # 5 x 1.1 = 5.5 and 25 x 1.1 = 27.5; 0.12345678 x 1.1 = 0.135802458 (9 decimals): all fit
    # DECIMAL(18,12) exactly, so the 64-bit path is taken. By hand:
    #   input  1,234,567 x 5.5 / 1e6        = 6.7901185
    #   output 7,654,321 x 27.5 / 1e6       = 210.4938275
    #   read   3,000,001 x 0.135802458 / 1e6 = 0.407407509802458
    m = model("claude-test-plain", "5", "25", "6.25", "10", "0.12345678",
              data_residency_multiplier="1.1")
    con = rated([session_record("p", agent=agent("claude-test-plain", geo="us")),
                 snapshot("p", "p1", f"{DAY}T09:00:00Z", input=1_234_567, output=7_654_321,
                          read=3_000_001)], books=[book([m])])
    assert _price_type(con) == [("DECIMAL(18,12)",)]
    assert token_lines(con) == {
        ("p", "claude-test-plain", "input"): (1_234_567, Decimal("6.7901185")),
        ("p", "claude-test-plain", "output"): (7_654_321, Decimal("210.4938275")),
        ("p", "claude-test-plain", "cache_read"): (3_000_001, Decimal("0.407407509802458")),
    }


def test_a_unit_price_of_a_million_dollars_per_mtok_is_priced_not_an_error():
    # DECIMAL(18,12) holds 6 integer digits: a price of a million USD/MTok cannot be narrowed
    # and must stay wide (the exactness probe uses TRY_CAST), not raise a conversion error.
    m = model("claude-test-dear", "1", "1000000", "1", "1", "1")
    con = rated([session_record("d", agent=agent("claude-test-dear")),
                 snapshot("d", "d1", f"{DAY}T09:00:00Z", output=3)], books=[book([m])])
    assert token_lines(con) == {("d", "claude-test-dear", "output"): (3, Decimal("3"))}


# --- long context: each model against its own threshold ----------------------------------------

ALPHA = model("claude-test-alpha", "1", "5", "1.25", "2", "0.1",
              long_context=rates("2", "7.5", "2.5", "4", "0.2", threshold_tokens=100_000))
BETA = model("claude-test-beta", "3", "15", "3.75", "6", "0.3",
             long_context=rates("6", "22.5", "7.5", "12", "0.6", threshold_tokens=200_000))
GAMMA = model("claude-test-gamma", "5", "25", "6.25", "10", "0.5")  # no long-context rates
LC_BOOK = book([ALPHA, BETA, GAMMA])


def test_long_context_lines_use_each_models_own_threshold():
    con = rated([
        session_record("a", agent=agent("claude-test-alpha")),
        # prompt 100,000 = the threshold, not above it: standard
        span("a", "a1", f"{DAY}T09:00:00Z", input=100_000, output=500),
        # prompt 50,000 + 90,000 read + 10,000 written = 150,000 > 100,000: every token at the
        # long-context rate (writes at the default 5m TTL): 50,000 x 2 + 1,000 x 7.5 +
        # 10,000 x 2.5 + 90,000 x 0.2 = 0.1 + 0.0075 + 0.025 + 0.018
        span("a", "a2", f"{DAY}T09:01:00Z", input=50_000, read=90_000, write=10_000,
             output=1_000),
        session_record("b", agent=agent("claude-test-beta")),
        # 150,000 on the 200K model: standard; 200,000 exactly: standard too
        span("b", "b1", f"{DAY}T09:00:00Z", input=150_000, output=1_000),
        span("b", "b3", f"{DAY}T09:02:00Z", input=200_000),
        # 120,000 + 60,000 read + 30,000 written = 210,000 > 200,000: 120,000 x 6 +
        # 2,000 x 22.5 + 30,000 x 7.5 + 60,000 x 0.6 = 0.72 + 0.045 + 0.225 + 0.036
        span("b", "b2", f"{DAY}T09:01:00Z", input=120_000, read=60_000, write=30_000,
             output=2_000),
        session_record("c", agent=agent("claude-test-alpha")),
        # the same 150,000-token request as b1, on the 100K model: 150,000 x 2 + 1,000 x 7.5
        span("c", "c1", f"{DAY}T09:00:00Z", input=150_000, output=1_000),
    ], books=[LC_BOOK])
    assert token_lines(con, tier="long_context") == {
        ("a", "claude-test-alpha", "input"): (50_000, Decimal("0.1")),
        ("a", "claude-test-alpha", "output"): (1_000, Decimal("0.0075")),
        ("a", "claude-test-alpha", "cache_write_5m"): (10_000, Decimal("0.025")),
        ("a", "claude-test-alpha", "cache_read"): (90_000, Decimal("0.018")),
        ("b", "claude-test-beta", "input"): (120_000, Decimal("0.72")),
        ("b", "claude-test-beta", "output"): (2_000, Decimal("0.045")),
        ("b", "claude-test-beta", "cache_write_5m"): (30_000, Decimal("0.225")),
        ("b", "claude-test-beta", "cache_read"): (60_000, Decimal("0.036")),
        ("c", "claude-test-alpha", "input"): (150_000, Decimal("0.3")),
        ("c", "claude-test-alpha", "output"): (1_000, Decimal("0.0075")),
    }
    # the standard lines carry only the other requests: the tiers add up to the usage
    assert token_lines(con, tier="standard") == {
        ("a", "claude-test-alpha", "input"): (100_000, Decimal("0.1")),
        ("a", "claude-test-alpha", "output"): (500, Decimal("0.0025")),
        ("b", "claude-test-beta", "input"): (350_000, Decimal("1.05")),
        ("b", "claude-test-beta", "output"): (1_000, Decimal("0.015")),
    }


def test_long_context_in_a_multi_model_session_follows_each_threads_model():
    # Main thread on the 200K model, one thread on the 100K model, one on a model without
    # long-context rates: the same 150,000-token request is long context only on the 100K one
    # (150,000 x 2 + 1,000 x 7.5), and leaves that thread's standard line empty.
    thread = {"session_id": "m", "type": "session.thread_created",
              "processed_at": f"{DAY}T08:59:00Z"}
    con = rated([
        session_record("m", agent=agent("claude-test-beta")),
        {**thread, "id": "t1", "session_thread_id": "sthr_a", "agent_name": "x",
         "model": {"id": "claude-test-alpha"}},
        {**thread, "id": "t2", "session_thread_id": "sthr_g", "agent_name": "y",
         "model": "claude-test-gamma"},
        span("m", "m1", f"{DAY}T09:00:00Z", input=150_000, output=1_000),
        span("m", "m2", f"{DAY}T09:00:01Z", input=150_000, output=1_000,
             session_thread_id="sthr_a"),
        span("m", "m3", f"{DAY}T09:00:02Z", input=150_000, output=1_000,
             session_thread_id="sthr_g"),
    ], books=[LC_BOOK])
    assert token_lines(con, tier="long_context") == {
        ("m", "claude-test-alpha", "input"): (150_000, Decimal("0.3")),
        ("m", "claude-test-alpha", "output"): (1_000, Decimal("0.0075")),
    }
    assert {k[1] for k in token_lines(con, tier="standard")} == {
        "claude-test-beta", "claude-test-gamma"}


def test_long_context_covered_by_a_snapshot_leaves_its_standard_line_on_the_snapshots_day():
    # The snapshot just after midnight covers both requests; the long-context one (prompt
    # 150,000 > 100,000) is dated at that snapshot, so the day's standard line is the
    # snapshot's increase less that request, and no day goes negative.
    con = rated([
        session_record("s", agent=agent("claude-test-alpha")),
        span("s", "r1", "2026-11-03T23:59:58Z", input=10_000, output=100),
        span("s", "r2", "2026-11-03T23:59:59Z", input=150_000, output=1_000),
        snapshot("s", "u1", "2026-11-04T00:00:01Z", input=160_000, output=1_100),
    ], books=[LC_BOOK], as_of="2026-11-05T00:00:00Z")
    rows = con.execute("SELECT day::VARCHAR, tier, token_class, quantity, amount_exact "
                       "FROM charges WHERE meter = 'tokens' ORDER BY ALL").fetchall()
    assert rows == [
        ("2026-11-04", "long_context", "input", 150_000, Decimal("0.3")),
        ("2026-11-04", "long_context", "output", 1_000, Decimal("0.0075")),
        ("2026-11-04", "standard", "input", 10_000, Decimal("0.01")),
        ("2026-11-04", "standard", "output", 100, Decimal("0.0005")),
    ]


# --- named threads are priced at their own model -----------------------------------------------

ROSTER = [{"name": "lead", "model": "claude-opus-5"},
          {"name": "helper", "model": {"id": "claude-sonnet-4-6"}}]


def coordinator_with_helper_thread(sid, **thread_model):
    """A session on Opus 5 with ROSTER, and its thread sthr_h of agent `helper` created at
    09:00 (`model=` on the event if given)."""
    return [
        session_record(sid, agent=agent("claude-opus-5",
                                        multiagent={"type": "coordinator", "agents": ROSTER})),
        {"session_id": sid, "type": "session.thread_created", "id": "t1",
         "processed_at": f"{DAY}T09:00:00Z", "session_thread_id": "sthr_h",
         "agent_name": "helper", **thread_model},
    ]


def test_thread_requests_use_the_thread_model_beside_main_thread_requests_of_the_same_day():
    # Session on Opus 5; thread sthr_h created with Haiku 4.5 named on the event (a dated id),
    # which wins over the roster's Sonnet for that agent name. Same day, both threads:
    #   Opus 5 (main): 200,000 x $5 = 1.00; 10,000 x $25 = 0.25
    #   Haiku 4.5 (thread): 300,000 x $1 = 0.30; 20,000 x $5 = 0.10
    # The snapshot repeats the sum of both; in a multi-model session it adds nothing.
    con = rated([
        *coordinator_with_helper_thread("s", model={"id": "claude-haiku-4-5-20251001"}),
        span("s", "e1", f"{DAY}T09:00:01Z", input=200_000, output=10_000),
        span("s", "e2", f"{DAY}T09:00:02Z", input=300_000, output=20_000,
             session_thread_id="sthr_h"),
        snapshot("s", "e3", f"{DAY}T09:00:03Z", input=500_000, output=30_000),
    ])
    assert token_lines(con) == {
        ("s", "claude-opus-5", "input"): (200_000, Decimal("1")),
        ("s", "claude-opus-5", "output"): (10_000, Decimal("0.25")),
        ("s", "claude-haiku-4-5", "input"): (300_000, Decimal("0.3")),
        ("s", "claude-haiku-4-5", "output"): (20_000, Decimal("0.1")),
    }


def test_thread_model_from_the_roster_when_the_event_names_none():
    # thread_created names only the agent: its model comes from the session's roster.
    #   Opus 5 main: 100,000 x $5 = 0.5; Sonnet 4.6 thread: 100,000 x $3 = 0.3
    con = rated([
        *coordinator_with_helper_thread("s"),
        span("s", "e1", f"{DAY}T09:00:01Z", input=100_000),
        span("s", "e2", f"{DAY}T09:00:02Z", input=100_000, session_thread_id="sthr_h"),
    ])
    assert token_lines(con) == {
        ("s", "claude-opus-5", "input"): (100_000, Decimal("0.5")),
        ("s", "claude-sonnet-4-6", "input"): (100_000, Decimal("0.3")),
    }


# --- the charges view fits the store's charges table -------------------------------------------


def _columns(con, database):
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = 'main' AND table_name = 'charges' ORDER BY column_index",
        [database]).fetchall()]


def test_charges_view_has_the_store_tables_columns_and_can_be_persisted():
    # runtime, tokens and web search lines, one of them provisional (still running at as_of)
    con = rated([
        session_record("s", agent=agent("claude-opus-5")),
        status("s", "e1", f"{DAY}T09:00:00Z", "running"),
        snapshot("s", "e2", f"{DAY}T09:30:00Z", input=1_000, output=10, searches=2),
        session_record("u"),  # no usage at all
    ], as_of=f"{DAY}T10:00:00Z")
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE temporary "
                       "AND view_name = 'charges'").fetchall() == [(1,)]
    assert _columns(con, "temp") == _columns(con, db)
    assert len(_columns(con, db)) == 19  # migration 2's table and 3's amount_units
    con.execute(f'INSERT INTO "{db}".main.charges SELECT * FROM temp.main.charges')
    stored = con.execute(f'SELECT * FROM "{db}".main.charges ORDER BY ALL').fetchall()
    assert stored == con.execute("SELECT * FROM temp.main.charges ORDER BY ALL").fetchall()
    assert sorted(r[6] for r in stored) == ["runtime", "tokens", "tokens", "web_search"]
    # 1 h x $0.08 + 1,000 x $5/M + 10 x $25/M + 2 x $10/1000
    assert sum(r[14] for r in stored) == Decimal("0.08") + Decimal("0.005") + \
        Decimal("0.00025") + Decimal("0.02")
    assert all(r[17] for r in stored)  # the session is open: every line provisional


# --- provisional: a session running at as_of is open ------------------------------------------


def test_a_session_that_starts_running_exactly_at_as_of_is_open():
    # "the last interval of a live session ends at as_of and is provisional", also when it
    # starts at as_of (0 ms): runtime_days keeps such a row so the session counts as open.
    con = rated([session_record("s", agent=agent("claude-opus-5")),
                 status("s", "e0", f"{DAY}T08:00:00Z", "idle"),
                 snapshot("s", "e1", f"{DAY}T08:30:00Z", input=1_000),
                 status("s", "e2", f"{DAY}T09:00:00Z", "running")],
                as_of=f"{DAY}T09:00:00Z")
    assert con.execute("SELECT meter, quantity, provisional FROM charges").fetchall() == [
        ("tokens", 1_000, True)]


# --- found by a differential review against the engine before the rewrite ---------------------


def test_threads_of_a_session_without_a_record_are_billed_at_their_models():
    # No session record, so no model of its own: a thread on Sonnet 4.6 makes it multi-model
    # and its requests are billed from the spans even before the snapshot.
    #   100 x $3/M = 0.0003; 10 x $15/M = 0.00015
    con = rated([
        {"session_id": "s", "type": "session.thread_created", "id": "t1",
         "processed_at": f"{DAY}T00:30:00Z", "session_thread_id": "sthr_1",
         "agent_name": "helper", "model": {"id": "claude-sonnet-4-6"}},
        span("s", "e1", f"{DAY}T01:00:00Z", input=100, output=10, session_thread_id="sthr_1"),
        snapshot("s", "e2", f"{DAY}T02:00:00Z", input=100, output=10),
    ])
    assert token_lines(con) == {
        ("s", "claude-sonnet-4-6", "input"): (100, Decimal("0.0003")),
        ("s", "claude-sonnet-4-6", "output"): (10, Decimal("0.00015")),
    }
    assert con.execute("SELECT count(*) FROM unrated").fetchall() == [(0,)]


def test_every_day_of_the_open_running_stretch_is_provisional():
    # Running from Nov 1 10:00, repeated on Nov 2 10:00 (merged: one open stretch), as_of
    # Nov 3 06:00: all three days' runtime lines are provisional, as that stretch's pieces.
    con = rated([session_record("s", agent=agent("claude-opus-5")),
                 status("s", "e1", "2026-11-01T10:00:00Z", "running"),
                 status("s", "e2", "2026-11-02T10:00:00Z", "running")],
                as_of="2026-11-03T06:00:00Z")
    assert con.execute("SELECT day::VARCHAR, quantity, provisional FROM charges "
                       "ORDER BY day").fetchall() == [
        ("2026-11-01", 14 * 3_600_000, True), ("2026-11-02", 24 * 3_600_000, True),
        ("2026-11-03", 6 * 3_600_000, True)]


def test_a_closed_stretch_stays_final_when_running_resumes_exactly_at_as_of():
    # Ran 01:00-02:00, resumes at as_of: that hour is final, the session is open (its tokens
    # are provisional).
    con = rated([session_record("s", agent=agent("claude-opus-5")),
                 status("s", "e1", f"{DAY}T01:00:00Z", "running"),
                 status("s", "e2", f"{DAY}T02:00:00Z", "idle"),
                 snapshot("s", "e3", f"{DAY}T02:00:00Z", input=1_000),
                 status("s", "e4", f"{DAY}T12:00:00Z", "running")],
                as_of=f"{DAY}T12:00:00Z")
    assert sorted(con.execute("SELECT meter, quantity, provisional FROM charges").fetchall()) \
        == [("runtime", 3_600_000, False), ("tokens", 1_000, True)]


def test_span_cache_writes_with_no_book_in_force_are_unrated_not_lost():
    # No book before Nov 1 in this set: the request's 500 cache-write tokens are unrated at
    # the API's default TTL (5 min), with its other tokens.
    con = rated([session_record("s", agent=agent("claude-test-plain")),
                 span("s", "e1", "2026-10-31T10:00:00Z", input=100, output=10, write=500,
                      read=7)],
                books=[book([plain()])])
    assert sorted(con.execute("SELECT token_class, quantity, reason FROM unrated").fetchall()) \
        == [("cache_read", 7, "no price book in force"),
            ("cache_write_5m", 500, "no price book in force"),
            ("input", 100, "no price book in force"),
            ("output", 10, "no price book in force")]


def test_fast_and_standard_requests_at_one_input_price_make_one_input_line():
    # Fast rates differ from standard only in output (9 vs 5): the fast and the standard
    # request of the day share the input SKU, so they make one input line of 150 tokens.
    #   input 150 x $1 = 0.00015; output 10 x $9 + 10 x $5 = 0.00009 + 0.00005
    m = plain(fast=rates("1", "9", "1.25", "2", "0.1"))
    con = rated([session_record("s", agent=agent("claude-test-plain")),
                 said(span("s", "e1", f"{DAY}T09:00:00Z", input=100, output=10), "fast"),
                 span("s", "e2", f"{DAY}T10:00:00Z", input=50, output=10)],
                books=[book([m])])
    assert priced(con) == [
        ("input", 150, Decimal("1"), Decimal("0.00015")),
        ("output", 10, Decimal("5"), Decimal("0.00005")),
        ("output", 10, Decimal("9"), Decimal("0.00009"))]


def test_requests_say_their_speed_else_the_sessions_agent_does():
    # The agent runs fast. A request that says 'standard' costs standard rates; one that says
    # 'fast' and one that says nothing cost fast rates (input $1 vs $6, output $5 vs $30), so
    # the two fast ones make one line each per class:
    #   standard: input 100 x $1 = 0.0001, output 10 x $5 = 0.00005
    #   fast: input (20 + 30) x $6 = 0.0003, output (2 + 3) x $30 = 0.00015
    m = plain(fast=rates("6", "30", "7.5", "12", "0.6"))
    fast_agent = agent("claude-test-plain")
    fast_agent["model"]["speed"] = "fast"
    con = rated([session_record("s", agent=fast_agent),
                 said(span("s", "e1", f"{DAY}T09:00:00Z", input=100, output=10), "standard"),
                 said(span("s", "e2", f"{DAY}T10:00:00Z", input=20, output=2), "fast"),
                 span("s", "e3", f"{DAY}T11:00:00Z", input=30, output=3)],
                books=[book([m])])
    assert priced(con) == [
        ("input", 50, Decimal("6"), Decimal("0.0003")),
        ("input", 100, Decimal("1"), Decimal("0.0001")),
        ("output", 5, Decimal("30"), Decimal("0.00015")),
        ("output", 10, Decimal("5"), Decimal("0.00005"))]


def test_charges_are_one_line_per_day_session_and_sku():
    # Token lines are stored wide and unpivoted by the view; runtime lines narrow. Two
    # sessions, two days, two models, runtime and every token class: no line twice, and no
    # line of zero tokens.
    events = [session_record("a", agent=agent("claude-opus-5")),
              session_record("b", agent=agent("claude-sonnet-4-6"))]
    for sid in ("a", "b"):
        for d, hour in (("2026-11-03", "09"), ("2026-11-03", "15"), ("2026-11-04", "09")):
            events += [status(sid, f"{sid}{d}{hour}r", f"{d}T{hour}:00:00Z", "running"),
                       span(sid, f"{sid}{d}{hour}s", f"{d}T{hour}:30:00Z", input=100,
                            output=10, write=5, read=7),
                       status(sid, f"{sid}{d}{hour}i", f"{d}T{hour}:45:00Z", "idle")]
    con = rated(events)
    keys = con.execute("SELECT day, session_id, meter, model, token_class, tier, unit_price, "
                       "book, book_version, quantity FROM charges").fetchall()
    assert len(keys) == 2 * 2 * 5  # 2 sessions x 2 days x (runtime + 4 token classes)
    assert len({k[:-1] for k in keys}) == len(keys)
    assert all(k[-1] > 0 for k in keys)
    runtime = con.execute("SELECT day, sum(quantity)::BIGINT FROM charges "
                          "WHERE meter = 'runtime' GROUP BY ALL ORDER BY ALL").fetchall()
    assert [(str(d), q) for d, q in runtime] == [("2026-11-03", 2 * 2 * 2_700_000),
                                                 ("2026-11-04", 2 * 2_700_000)]


def test_running_time_before_1970_is_cut_at_its_midnight():
    # Events are packed as at_ms x 4 + a code and unpacked with shifts: negative instants
    # too. Running 1969-12-31T23:00 to 1970-01-01T01:30: 1 h on Dec 31 ($0.08) and 1.5 h on
    # Jan 1 ($0.12), with a book in force since 1969.
    old = book([])
    old = old.model_copy(update={"effective_from": old.effective_from.replace(year=1969)})
    con = rated([session_record("s", created_at="1969-12-31T22:00:00.000Z"),
                 status("s", "e1", "1969-12-31T23:00:00Z", "running"),
                 status("s", "e2", "1970-01-01T01:30:00Z", "idle")], books=[old])
    assert [(str(d), q, a) for d, q, a in con.execute(
        "SELECT day, quantity, amount_exact FROM charges ORDER BY day").fetchall()] == [
        ("1969-12-31", 3_600_000, Decimal("0.08")), ("1970-01-01", 5_400_000, Decimal("0.12"))]


def test_price_tables_kept_on_a_connection_price_new_usage_as_a_fresh_connection_does():
    # The first rating prices claude-test-plain only. The second, on the same connection with
    # the same books, meets another model, a fast request (whose input price is the standard
    # one: a shared SKU) and a spelling no book knows: the kept price tables are extended to
    # them, and every line is the one a connection rating it all at once makes.
    books = [book([plain(fast=rates("1", "9", "1.25", "2", "0.1")),
                   model("claude-test-other", "3", "15", "3.75", "6", "0.3")])]
    first = [session_record("a", agent=agent("claude-test-plain")),
             span("a", "e1", f"{DAY}T09:00:00Z", input=100, output=10)]
    later = [session_record("b", agent=agent("claude-test-other")),
             span("b", "e2", f"{DAY}T10:00:00Z", input=200, output=20, read=50),
             said(span("a", "e3", f"{DAY}T11:00:00Z", input=30, output=3), "fast"),
             session_record("c", agent=agent("claude-unknown-9")),
             span("c", "e4", f"{DAY}T12:00:00Z", input=40, output=4)]
    con = rated(first, books=books)
    assert con in rating_module._PRICED  # (the tables are kept for the next rating)
    assert ingest_lines(con, [json.dumps(e) for e in later], source="t",
                        max_future_ms=10**12).quarantined == 0
    rate(con, books, RatingOptions(as_of_ms=ms("2026-12-31T00:00:00Z")))
    assert con.execute("SELECT count(*) FROM price_keys").fetchall()[0][0] == 3
    fresh = rated(first + later, books=books)
    for relation in ("charges", "unrated"):
        query = f"SELECT * FROM {relation} ORDER BY ALL"
        assert con.execute(query).fetchall() == fresh.execute(query).fetchall(), relation
    assert con.execute("SELECT count(*) FROM unrated").fetchall()[0][0] > 0


def test_a_rating_rolled_back_leaves_no_kept_price_table_behind():
    # Rating with other books inside a transaction that is rolled back takes the connection's
    # temp tables back to the first books: the next rating with the other books must load
    # them again, not trust what it kept of the rolled-back load.
    first = [book([plain()])]
    other = [book([plain()], runtime="0.5")]
    events = [session_record("a", agent=agent("claude-test-plain")),
              status("a", "r", f"{DAY}T09:00:00Z", "running"),
              span("a", "e1", f"{DAY}T09:30:00Z", input=100, output=10),
              status("a", "i", f"{DAY}T10:00:00Z", "idle")]
    con = rated(events, books=first)
    con.execute("BEGIN TRANSACTION")
    rate(con, other, RatingOptions(as_of_ms=ms("2026-12-31T00:00:00Z")))
    con.execute("ROLLBACK")
    rate(con, other, RatingOptions(as_of_ms=ms("2026-12-31T00:00:00Z")))
    runtime = con.execute("SELECT amount_exact FROM charges WHERE meter = 'runtime'"
                          ).fetchall()
    assert runtime == [(Decimal("0.5"),)]  # one hour at $0.50, not at the first books' $0.08
    query = "SELECT * FROM charges ORDER BY ALL"
    assert con.execute(query).fetchall() == rated(events, books=other).execute(query).fetchall()
