"""The ledger: incremental rating equals a full re-rate, to the money unit, whatever happens.

A property test applies random sequences of appends (in or out of time order: late events),
duplicates, price-book changes (a version added, a rate edited, a version removed) and as-of
moves (forward and back) to one store, and after each step compares the ledger that
`bring_up_to_date` keeps with a full rating of the same store: every column of every charge
and unrated line, every session's spend per period and its time by month. The same for a
reader's overlay at another as-of.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter.ingest import ingest_lines
from meter.intervals import build_session_time
from meter.store import connect
from pricing import rating as rating_module
from pricing.ledger import bring_up_to_date, overlay
from pricing.pricebook import PriceBook, RuntimePrice, load_pricebooks
from pricing.rating import RatingOptions, rate
from tests.conftest import ms, session_record, snapshot, span, status

BASE = load_pricebooks()
LATEST = max(BASE, key=lambda b: b.effective_from_ms)


def _added() -> list[PriceBook]:
    """A third version from 1 Nov 12:00: runtime at $0.09."""
    extra = LATEST.model_copy(update={
        "version": "test-added", "effective_from": datetime(2026, 11, 1, 12, tzinfo=UTC),
        "runtime": RuntimePrice(usd_per_session_hour=Decimal("0.09"))})
    return [*BASE, extra]


def _edited() -> list[PriceBook]:
    """The latest version edited in place (same name and version): Opus 5 input at $6."""
    models = tuple(m.model_copy(update={"input": Decimal("6")}) if m.id == "claude-opus-5"
                   else m for m in LATEST.models)
    return [b if b is not LATEST else LATEST.model_copy(update={"models": models})
            for b in BASE]


def _removed() -> list[PriceBook]:
    """Only the older version: its end leaves later usage unrated."""
    return [b for b in BASE if b is not LATEST]


BOOKS = [BASE, _added(), _edited(), _removed()]


def agent(model: str, speed: str = "standard", geo: str = "global", **extra: object) -> dict:
    return {"id": "agent_01", "version": 1, "name": "a",
            "model": {"id": model, "speed": speed, "inference_geo": geo}, **extra}


def thread_status(sid: str, eid: str, at: str, state: str, thread: str) -> dict:
    return {"session_id": sid, "type": f"session.thread_status_{state}", "id": eid,
            "processed_at": at, "session_thread_id": thread}


ROSTER = [{"name": "lead", "model": "claude-opus-5"},
          {"name": "researcher", "model": {"id": "claude-haiku-4-5"}}]

# Sessions covering every rule: a month boundary, snapshots after spans, long context
# (Haiku 5.5 above 100K prompt tokens), fast mode with US residency and searches, threads on
# another model, a session with no record (unrated), and one left running.
POOL = [
    session_record("a", created_at="2026-10-31T20:00:00Z", agent=agent("claude-opus-5")),
    status("a", "a1", "2026-10-31T23:00:00.000Z", "running"),
    span("a", "a2", "2026-10-31T23:30:00.000Z", input=1_000, output=200, write=300, read=50),
    snapshot("a", "a3", "2026-11-01T00:10:00.000Z", input=1_500, output=300, read=80, w5m=300),
    status("a", "a4", "2026-11-01T00:45:00.250Z", "idle"),
    status("a", "a5", "2026-11-01T13:00:00.000Z", "running"),
    span("a", "a6", "2026-11-01T13:05:00.000Z", input=700, output=90),
    status("a", "a7", "2026-11-01T14:00:00.000Z", "terminated"),
    session_record("b", created_at="2026-11-01T08:00:00Z", agent=agent("claude-haiku-5-5")),
    status("b", "b1", "2026-11-01T09:00:00.000Z", "running"),
    span("b", "b2", "2026-11-01T09:01:00.000Z", input=50_000, read=60_000, output=2_000),
    span("b", "b3", "2026-11-01T09:02:00.000Z", input=90_000, output=1_000),
    snapshot("b", "b4", "2026-11-01T11:00:00.000Z", input=140_000, read=60_000, output=3_000),
    span("b", "b5", "2026-11-01T12:30:00.000Z", input=120_000, output=10),
    status("b", "b6", "2026-11-01T13:30:00.000Z", "idle"),
    session_record("c", created_at="2026-11-01T00:00:00Z",
                   agent=agent("claude-opus-5", speed="fast", geo="us")),
    status("c", "c1", "2026-11-01T10:00:00.000Z", "running"),
    span("c", "c2", "2026-11-01T10:10:00.000Z", input=3_000, output=400),
    snapshot("c", "c3", "2026-11-01T10:20:00.000Z", input=3_000, output=400, searches=3),
    snapshot("c", "c4", "2026-11-01T12:20:00.000Z", input=5_000, output=900, searches=7),
    status("c", "c5", "2026-11-01T12:40:00.000Z", "idle"),
    session_record("d", created_at="2026-11-01T00:00:00Z",
                   agent=agent("claude-opus-5", multiagent={"type": "coordinator",
                                                            "agents": ROSTER})),
    {"session_id": "d", "type": "session.thread_created", "id": "d1",
     "processed_at": "2026-11-01T11:00:00.000Z", "session_thread_id": "sthr_r",
     "agent_name": "researcher"},
    thread_status("d", "d2", "2026-11-01T11:00:00.000Z", "running", "sthr_r"),
    span("d", "d3", "2026-11-01T11:10:00.000Z", input=100_000, session_thread_id="sthr_r"),
    span("d", "d4", "2026-11-01T11:20:00.000Z", input=20_000),
    thread_status("d", "d5", "2026-11-01T12:10:00.000Z", "idle", "sthr_r"),
    status("e", "e1", "2026-11-01T09:00:00.000Z", "running"),  # no session record
    snapshot("e", "e2", "2026-11-01T09:30:00.000Z", input=1_000),
    status("e", "e3", "2026-11-01T10:00:00.000Z", "idle"),
    session_record("f", created_at="2026-11-01T00:00:00Z", agent=agent("claude-sonnet-5-5")),
    status("f", "f1", "2026-11-01T11:45:00.000Z", "running"),  # left running
    span("f", "f2", "2026-11-01T12:15:00.000Z", input=10_000, output=500),
]
AS_OF = [ms(t) for t in ("2026-11-01T00:30:00Z", "2026-11-01T11:30:00Z",
                          "2026-11-01T12:15:00Z", "2026-11-01T13:00:00Z",
                          "2026-11-02T00:00:00Z", "2026-11-05T00:00:00Z")]

STEP = st.one_of(
    st.tuples(st.just("ingest"), st.integers(1, 8)),
    st.tuples(st.just("duplicate"), st.integers(0, len(POOL) - 1)),
    st.tuples(st.just("books"), st.integers(0, len(BOOKS) - 1)),
    st.tuples(st.just("as_of"), st.integers(0, len(AS_OF) - 1)),
)


def _feed(con, events: list[dict]) -> None:
    result = ingest_lines(con, [json.dumps(e) for e in events], source="t",
                          max_future_ms=10**12)
    assert result.quarantined == 0, result.errors


def _full(con, books, as_of_ms: int) -> tuple[list, list]:
    """What a full rating gives (on the connection, the ledger untouched), with nothing kept
    from the connection's earlier ratings (its books and price tables built again)."""
    rating_module._BOOKS_OF.pop(con, None)
    rating_module._PRICED.pop(con, None)
    rate(con, books, RatingOptions(as_of_ms=as_of_ms))
    return (con.execute("SELECT * FROM temp.main.charges ORDER BY ALL").fetchall(),
            con.execute("SELECT * FROM temp.main.unrated ORDER BY ALL").fetchall())


def _time(con, as_of_ms: int) -> tuple[list, list]:
    """The stored time by month and open intervals, and what they are from scratch."""
    stored = (con.execute("SELECT * FROM main.session_months ORDER BY ALL").fetchall(),
              con.execute("SELECT * FROM main.session_tails ORDER BY ALL").fetchall())
    months, tails = build_session_time(con, as_of_ms, "check")
    fresh = (con.execute(f"SELECT * FROM {months} ORDER BY ALL").fetchall(),
             con.execute(f"SELECT * FROM {tails} ORDER BY ALL").fetchall())
    return stored, fresh


def _periods(con) -> list:
    """The ledger's stored row per session and period."""
    return con.execute("SELECT * FROM main.session_periods ORDER BY ALL").fetchall()


def _fresh_periods(con, as_of_ms: int) -> list:
    """The same from the full rating on the connection (`_full`) and a time by month built
    from scratch: each session's spend in a period and its row of that month (if any), and its
    open interval."""
    months, tails = build_session_time(con, as_of_ms, "periods")
    return con.execute(f"""
        SELECT s.*, m.running_ms, m.idle_between_ms, m.idle_parked_ms, m.rescheduling_ms,
               m.spans, m.started_hours, m.parked, t.status, t.since_ms, t.tied_run
        FROM (SELECT period, session_id, any_value(agent_id), any_value(tags),
                     sum(amount_units) FROM temp.main.charges GROUP BY period, session_id) s
        LEFT JOIN {months} m ON m.session_id = s.session_id
             AND strftime(make_timestamp(m.month_start_ms * 1000), '%Y-%m') = s.period
        LEFT JOIN {tails} t ON t.session_id = s.session_id
        ORDER BY ALL""").fetchall()


def _read(con) -> tuple[list, list]:
    """charges and unrated as reports read them."""
    return (con.execute("SELECT * FROM charges ORDER BY ALL").fetchall(),
            con.execute("SELECT * FROM unrated ORDER BY ALL").fetchall())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(order=st.permutations(range(len(POOL))), steps=st.lists(STEP, min_size=1, max_size=7),
       reader_as_of=st.integers(0, len(AS_OF) - 1))
def test_incremental_rating_equals_a_full_rerate_after_every_step(order, steps, reader_as_of):
    con = connect(":memory:")
    fed: list[int] = []
    books, as_of = BASE, AS_OF[-1]
    for kind, value in steps:
        if kind == "ingest":
            new = order[len(fed):len(fed) + value]
            _feed(con, [POOL[i] for i in new])
            fed += new
        elif kind == "duplicate":
            _feed(con, [POOL[value]])
        elif kind == "books":
            books = BOOKS[value]
        else:
            as_of = AS_OF[value]
        run = bring_up_to_date(con, books, RatingOptions(as_of_ms=as_of))
        ledger = _read(con)
        assert ledger == _full(con, books, as_of), (kind, value, run)
        assert _periods(con) == _fresh_periods(con, as_of), (kind, value, run)
        stored, fresh = _time(con, as_of)
        assert stored == fresh, (kind, value, run)
        # a reader at another as-of: the ledger with the stale sessions replaced
        overlay(con, books, RatingOptions(as_of_ms=AS_OF[reader_as_of]))
        assert _read(con) == _full(con, books, AS_OF[reader_as_of]), ("overlay", kind, value)
    con.close()


def _ledger_store(events):
    con = connect(":memory:")
    _feed(con, events)
    return con


def test_a_run_rates_only_the_sessions_that_changed():
    con = _ledger_store(POOL[:8] + POOL[8:15])  # sessions a and b
    first = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    assert first.kind == "full"
    _feed(con, POOL[15:21])  # session c arrives
    run = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    assert (run.kind, run.sessions_rated) == ("incremental", 1)
    assert run.reasons["ingested"] == 1
    again = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    assert again.sessions_rated == 0
    _feed(con, POOL[15:21])  # the same again: duplicates change nothing
    assert bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1])).sessions_rated == 0


def test_an_open_session_is_rated_again_as_the_as_of_moves():
    con = _ledger_store(POOL[8:15] + POOL[29:32])  # b, and f left running
    bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-2]))
    run = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    assert (run.kind, run.sessions_rated, run.reasons["open"]) == ("incremental", 1, 1)
    # f ran from 11:45 on 1 Nov to the as-of, 5 Nov 00:00: 84.25 h x $0.08 = $6.74
    runtime = con.execute("SELECT sum(amount_exact) FROM charges WHERE session_id = 'f' "
                          "AND meter = 'runtime'").fetchall()[0][0]
    assert runtime == Decimal("6.74")


def test_a_price_book_edit_rates_again_only_the_sessions_on_its_days():
    con = _ledger_store(POOL)
    bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    run = bring_up_to_date(con, _added(), RatingOptions(as_of_ms=AS_OF[-1]))
    # the added version starts 1 Nov 12:00: sessions with lines on 1 Nov or later
    assert run.kind == "incremental" and run.reasons["books"] == 6
    assert _read(con) == _full(con, _added(), AS_OF[-1])


def test_other_rating_options_rate_everything():
    con = _ledger_store(POOL)
    bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    run = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1], span_cache_ttl="1h"))
    assert run.kind == "full"


@pytest.mark.parametrize("full", [False, True])
def test_rate_full_rebuilds_the_same_ledger(full):
    con = _ledger_store(POOL)
    bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[2]))
    run = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]), full=full)
    assert run.kind == ("full" if full else "incremental")
    assert _read(con) == _full(con, BASE, AS_OF[-1])


@pytest.mark.parametrize("early_arrives_late", [False, True])
def test_a_session_with_events_days_before_its_creation_is_rated_as_in_full(
        early_arrives_late):
    # The record says 10 Nov; the file holds an hour of running on 2 Nov (malformed, but
    # stored). A later append re-rates the session incrementally: its copy of the events must
    # start at its earliest event (session_starts), not at its creation, or the 2 Nov hour
    # ($0.08) is lost. The early events may also arrive after the session was rated.
    early = [status("s", "r1", "2026-11-02T09:00:00.000Z", "running"),
             status("s", "i1", "2026-11-02T10:00:00.000Z", "idle")]
    record = [session_record("s", created_at="2026-11-10T00:00:00.000Z"),
              status("s", "r0", "2026-11-10T09:00:00.000Z", "running"),
              status("s", "i0", "2026-11-10T09:15:00.000Z", "idle")]
    con = _ledger_store(record + ([] if early_arrives_late else early))
    options = RatingOptions(as_of_ms=ms("2026-12-01T00:00:00.000Z"))
    bring_up_to_date(con, BASE, options)
    _feed(con, [status("s", "r2", "2026-11-20T09:00:00.000Z", "running"),
                status("s", "i2", "2026-11-20T09:30:00.000Z", "idle")]
          + (early if early_arrives_late else []))
    assert bring_up_to_date(con, BASE, options).kind == "incremental"
    assert _read(con) == _full(con, BASE, options.as_of_ms)
    runtime = con.execute("SELECT sum(amount_exact) FROM charges WHERE meter = 'runtime'"
                          ).fetchall()[0][0]
    assert runtime == Decimal("0.14")  # 1 h + 15 min + 30 min at $0.08/h


def test_rows_stored_under_the_last_runs_ingest_after_it_are_rated():
    # One ingest can span a run (it commits batch by batch under one ingest id): the rows it
    # stores after the run carry the id the run went through, and must still be rated.
    con = _ledger_store(POOL[:8] + POOL[8:15])  # sessions a and b, ingest 1
    first = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    through = con.execute("SELECT max(ingest_id) FROM events").fetchall()[0][0]
    _feed(con, POOL[15:21])  # session c, stored as if by the same ingest
    for table in ("events", "sessions"):
        con.execute(f"UPDATE {table} SET ingest_id = $t WHERE ingest_id > $t", {"t": through})
    run = bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1]))
    # (which of the ingest's rows came after the run is not known: its sessions a, b and c
    # are all rated again)
    assert (first.kind, run.kind, run.sessions_rated) == ("full", "incremental", 3)
    assert run.reasons["ingested"] == 3
    assert _read(con) == _full(con, BASE, AS_OF[-1])
    # and once rated, the same rows make nothing stale
    assert bring_up_to_date(con, BASE, RatingOptions(as_of_ms=AS_OF[-1])).sessions_rated == 0
