"""Time by month (meter.intervals.build_session_time / month_time), what the ledger keeps for
the runtime-utilisation view, equals the view's former derivation from the status events of
the month, on random histories: out-of-order and tied events, repeats, terminal events with
late ones after them, months crossed, sessions left open, thread-only sessions; every month,
several as-ofs. Plus one history checked by hand.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from meter.ingest import ingest_lines
from meter.intervals import INTERVALS_SQL, MonthTime, build_session_time, month_time, split_sql
from meter.store import connect
from tests.conftest import iso, ms, status

MONTHS = [ms(t) for t in ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z",
                          "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")]
HOUR = 3_600_000

# The utilisation view's query before the ledger kept time by month: the intervals of the
# status events before the month's end, as of min(as-of, end), cut at months; an idle piece is
# parked when it starts after every running start.
_ORACLE = f"""
    WITH iv AS ({INTERVALS_SQL}),
    tagged AS (
        SELECT *, status = 'idle' AND start_ms > coalesce(max(
                      CASE WHEN status = 'running' THEN start_ms END)
                      OVER (PARTITION BY session_id), -1) AS last_idle
        FROM iv),
    pieces AS ({split_sql('tagged', 'month')})
    SELECT coalesce(sum(duration_ms) FILTER (WHERE status = 'running'), 0)::BIGINT,
           coalesce(sum(duration_ms) FILTER (WHERE status = 'idle' AND NOT last_idle), 0)::BIGINT,
           coalesce(sum(duration_ms) FILTER (WHERE status = 'idle' AND last_idle), 0)::BIGINT,
           coalesce(sum(duration_ms) FILTER (WHERE status = 'rescheduling'), 0)::BIGINT,
           count(*) FILTER (WHERE status = 'running'),
           coalesce(sum((duration_ms + 3599999) // 3600000)
                    FILTER (WHERE status = 'running'), 0)::BIGINT,
           count(DISTINCT session_id) FILTER (WHERE status = 'idle' AND last_idle
                                              AND duration_ms > 0)
    FROM pieces WHERE period_start_ms = $p0
"""


def _oracle(con, start_ms: int, end_ms: int, as_of_ms: int) -> MonthTime:
    con.execute("CREATE OR REPLACE TEMP TABLE status_events AS "
                "SELECT * FROM main.status_events WHERE at_ms < $end", {"end": end_ms})
    try:
        row = con.execute(_ORACLE, {"as_of": min(as_of_ms, end_ms), "p0": start_ms}
                          ).fetchall()[0]
    finally:
        con.execute("DROP TABLE temp.main.status_events")
    return MonthTime(*(int(v) for v in row))


def _store(events: list[dict]):
    con = connect(":memory:")
    result = ingest_lines(con, [json.dumps(e) for e in events], source="t",
                          max_future_ms=10**13)
    assert result.quarantined == 0, result.errors
    return con


def _time(con, start_ms: int, end_ms: int, as_of_ms: int) -> MonthTime:
    months, tails = build_session_time(con, as_of_ms)
    return month_time(con, months, tails, "SELECT DISTINCT session_id FROM main.status_events",
                      start_ms, end_ms, as_of_ms)


def thread_status(sid: str, eid: str, at_ms: int, state: str, thread: str) -> dict:
    return {"session_id": sid, "type": f"session.thread_status_{state}", "id": eid,
            "processed_at": iso(at_ms), "session_thread_id": thread}


STATES = st.sampled_from(["running", "idle", "idle", "running", "rescheduling", "terminated"])
# instants from mid-October to mid-December, and a few (month starts and the hours around
# them) drawn often, so that ties and boundaries happen
INSTANT = st.one_of(
    st.integers(0, 60 * 24).map(lambda k: MONTHS[0] + 14 * 86_400_000 + k * HOUR),
    st.sampled_from([m + d for m in MONTHS[1:3] for d in (-HOUR, 0, 1, HOUR)]))


@st.composite
def histories(draw) -> list[dict]:
    events = []
    for n in range(draw(st.integers(1, 4))):
        sid = f"s{n}"
        threaded = draw(st.booleans()) and n == 0
        for k, (at, state) in enumerate(draw(st.lists(st.tuples(INSTANT, STATES),
                                                      min_size=1, max_size=7))):
            if threaded and state in ("running", "idle"):
                events.append(thread_status(sid, f"{sid}e{k:02d}", at, state,
                                            f"t{k % 2}"))
            elif not threaded:
                events.append(status(sid, f"{sid}e{k:02d}", iso(at), state))
    return events or [status("s0", "s0e00", iso(MONTHS[1]), "running")]


@settings(max_examples=100, deadline=None)
@given(events=histories(), as_of=INSTANT)
def test_time_by_month_equals_the_months_intervals(events, as_of):
    con = _store(events)
    for start_ms, end_ms in zip(MONTHS, MONTHS[1:], strict=False):
        if start_ms > as_of:
            break
        assert _time(con, start_ms, end_ms, as_of) == _oracle(con, start_ms, end_ms, as_of)
    con.close()


def test_time_by_month_by_hand():
    # s: runs 30 Oct 22:00 -> 1 Nov 01:00 (26 h in October, 1 h in November), idle to
    # 1 Nov 02:00, runs 30 min, idle from 02:30 on (parked, open); as of 3 Nov 00:00.
    # t: idle 31 Oct 20:00, runs 1 Nov 10:00 -> 10:00:00.001, terminated then.
    con = _store([
        status("s", "s1", "2026-10-30T22:00:00.000Z", "running"),
        status("s", "s2", "2026-11-01T01:00:00.000Z", "idle"),
        status("s", "s3", "2026-11-01T02:00:00.000Z", "running"),
        status("s", "s4", "2026-11-01T02:30:00.000Z", "idle"),
        status("t", "t1", "2026-10-31T20:00:00.000Z", "idle"),
        status("t", "t2", "2026-11-01T10:00:00.000Z", "running"),
        status("t", "t3", "2026-11-01T10:00:00.001Z", "terminated"),
    ])
    as_of = ms("2026-11-03T00:00:00Z")
    october = _time(con, MONTHS[0], MONTHS[1], as_of)
    # October: s ran 26 h (one span, 26 started hours); t idle 4 h before its run in
    # November: parked as seen in October (no run there after it)
    assert october == MonthTime(running_ms=26 * HOUR, idle_between_ms=0,
                                idle_parked_ms=4 * HOUR, rescheduling_ms=0, spans=1,
                                started_hours=26, parked_sessions=1)
    november = _time(con, MONTHS[1], MONTHS[2], as_of)
    # November: s ran 1 h + 30 min (2 spans, 2 started hours), idle 1 h between, parked from
    # 02:30 to the as-of (45 h 30 min); t ran 1 ms (1 started hour), idle 10 h before it
    assert november == MonthTime(running_ms=HOUR + HOUR // 2 + 1,
                                 idle_between_ms=HOUR + 10 * HOUR,
                                 idle_parked_ms=45 * HOUR + HOUR // 2, rescheduling_ms=0,
                                 spans=3, started_hours=3, parked_sessions=1)
    assert october == _oracle(con, MONTHS[0], MONTHS[1], as_of)
    assert november == _oracle(con, MONTHS[1], MONTHS[2], as_of)
    con.close()


def test_an_open_idle_interval_tied_with_a_run_counts_as_between_runs():
    """Running and idle in one millisecond (the run first by event id), then idle to the
    as-of: the 0 ms run starts at the same instant as the idle interval, so the idle counts
    as between runs, as a closed interval tied that way does (found by the property test)."""
    con = _store([status("s0", "s0e00", "2026-10-15T00:00:00.000Z", "running"),
                  status("s0", "s0e01", "2026-10-15T00:00:00.000Z", "idle")])
    as_of = ms("2026-10-15T01:00:00Z")
    assert _time(con, MONTHS[0], MONTHS[1], as_of) == MonthTime(
        running_ms=0, idle_between_ms=HOUR, idle_parked_ms=0, rescheduling_ms=0, spans=0,
        started_hours=0, parked_sessions=0) == _oracle(con, MONTHS[0], MONTHS[1], as_of)
    con.close()


def test_idle_after_a_run_in_the_same_millisecond_is_between_runs_in_every_month_it_crosses():
    # u runs and goes idle at 31 Oct 23:00 in one millisecond (running first by event id: a
    # 0 ms run), idle until terminated 1 Nov 02:00. The idle time follows a run in both
    # months (the run starts at its very start): idle between runs, not parked, in October
    # (1 h) and in November (2 h), though no run starts in November.
    con = _store([
        status("u", "u1", "2026-10-31T23:00:00.000Z", "running"),
        status("u", "u2", "2026-10-31T23:00:00.000Z", "idle"),
        status("u", "u3", "2026-11-01T02:00:00.000Z", "terminated"),
    ])
    as_of = ms("2026-11-03T00:00:00Z")
    october = _time(con, MONTHS[0], MONTHS[1], as_of)
    november = _time(con, MONTHS[1], MONTHS[2], as_of)
    assert october == MonthTime(running_ms=0, idle_between_ms=HOUR, idle_parked_ms=0,
                                rescheduling_ms=0, spans=0, started_hours=0,
                                parked_sessions=0)  # (a 0 ms run is no span)
    assert november == MonthTime(running_ms=0, idle_between_ms=2 * HOUR, idle_parked_ms=0,
                                 rescheduling_ms=0, spans=0, started_hours=0,
                                 parked_sessions=0)
    assert (october, november) == (_oracle(con, MONTHS[0], MONTHS[1], as_of),
                                   _oracle(con, MONTHS[1], MONTHS[2], as_of))
