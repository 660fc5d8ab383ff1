"""Session intervals: each edge case of the metering rules, with hand-checked milliseconds."""

from __future__ import annotations

import random

from meter.intervals import (
    active_time_check,
    build_intervals,
    intervals,
    late_status_events,
    running_ms_by_session,
    split_sql,
)
from tests.conftest import ms, status

AS_OF = ms("2026-11-30T00:00:00.000Z")


def _rows(con, as_of=AS_OF, session="sesn_01"):
    """(status, start_ms, end_ms, duration_ms, provisional) of one session, in time order."""
    return [r[1:] for r in intervals(con, as_of).order("start_ms").fetchall() if r[0] == session]


def _running(con, as_of=AS_OF, session="sesn_01"):
    rows = running_ms_by_session(con, as_of).filter(f"session_id = '{session}'").fetchall()
    return rows[0][1] if rows else None


BASIC = [
    status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running"),
    status("sesn_01", "sevt_02", "2026-11-03T09:00:01.500Z", "idle"),
    status("sesn_01", "sevt_03", "2026-11-03T09:10:00.000Z", "running"),
    status("sesn_01", "sevt_04", "2026-11-03T09:10:00.250Z", "idle"),
]


def test_running_time_is_the_sum_of_running_intervals_to_the_ms(store, feed):
    feed(BASIC)
    assert _running(store) == 1500 + 250
    rows = _rows(store)
    assert [(r[0], r[3]) for r in rows[:3]] == [("running", 1500), ("idle", 598_500),
                                              ("running", 250)]


def test_duplicates_and_shuffled_order_give_identical_intervals(store, feed):
    events = BASIC + BASIC[1:3]
    random.Random(3).shuffle(events)
    result = feed(events)
    assert result.duplicates == 2
    assert _running(store) == 1750


def test_same_status_twice_in_a_row_is_merged(store, feed):
    feed([
        status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running"),
        status("sesn_01", "sevt_02", "2026-11-03T09:00:02.000Z", "running"),
        status("sesn_01", "sevt_03", "2026-11-03T09:00:05.000Z", "idle"),
    ])
    rows = _rows(store)
    assert rows[0][:4] == ("running", ms("2026-11-03T09:00:00.000Z"),
                           ms("2026-11-03T09:00:05.000Z"), 5000)
    assert len([r for r in rows if r[0] == "running"]) == 1


def test_open_session_ends_at_as_of_and_is_provisional(store, feed):
    feed([status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running")])
    as_of = ms("2026-11-03T09:00:42.123Z")
    rows = _rows(store, as_of)
    assert rows == [("running", ms("2026-11-03T09:00:00.000Z"), as_of, 42_123, True)]


def test_events_after_as_of_are_ignored(store, feed):
    feed(BASIC)
    assert _running(store, ms("2026-11-03T09:00:01.000Z")) == 1000


def test_terminated_session_later_events_are_kept_flagged_not_billed(store, feed):
    result = feed([
        status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running"),
        status("sesn_01", "sevt_02", "2026-11-03T09:00:03.000Z", "terminated"),
        status("sesn_01", "sevt_03", "2026-11-03T09:05:00.000Z", "running"),
        status("sesn_01", "sevt_04", "2026-11-03T09:06:00.000Z", "idle"),
    ])
    assert result.new_events == 4
    assert _running(store) == 3000
    rows = _rows(store)
    assert rows[-1] == ("terminated", ms("2026-11-03T09:00:03.000Z"),
                        ms("2026-11-03T09:00:03.000Z"), 0, False)
    late = late_status_events(store).fetchall()
    assert [r[1] for r in late] == ["sevt_03", "sevt_04"]


def test_rescheduling_and_idle_are_free(store, feed):
    feed([
        status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running"),
        status("sesn_01", "sevt_02", "2026-11-03T09:00:01.000Z", "rescheduling"),
        status("sesn_01", "sevt_03", "2026-11-03T09:00:31.000Z", "running"),
        status("sesn_01", "sevt_04", "2026-11-03T09:00:32.000Z", "idle"),
    ])
    row = running_ms_by_session(store, AS_OF).fetchall()[0]
    assert row[1:4] == (2000, AS_OF - ms("2026-11-03T09:00:32.000Z"), 30_000)


def test_interval_crossing_month_is_split_exactly(store, feed):
    feed([
        status("sesn_01", "sevt_01", "2026-10-31T23:59:59.250Z", "running"),
        status("sesn_01", "sevt_02", "2026-11-01T00:00:02.000Z", "idle"),
    ])
    build_intervals(store, ms("2026-11-01T00:00:02.000Z"), table="iv2")
    pieces = store.sql(
        f"SELECT period_start_ms, duration_ms FROM ({split_sql('iv2', 'month')}) "
        "WHERE status = 'running' ORDER BY start_ms").fetchall()
    assert pieces == [(ms("2026-10-01T00:00:00.000Z"), 750),
                      (ms("2026-11-01T00:00:00.000Z"), 2000)]


def test_interval_crossing_days_is_split_at_each_midnight(store, feed):
    feed([
        status("sesn_01", "sevt_01", "2026-11-03T22:00:00.000Z", "running"),
        status("sesn_01", "sevt_02", "2026-11-05T01:00:00.000Z", "idle"),
    ])
    build_intervals(store, ms("2026-11-05T01:00:00.000Z"), table="iv")
    pieces = store.sql(
        f"SELECT period_start_ms, duration_ms FROM ({split_sql('iv', 'day')}) "
        "WHERE status = 'running' ORDER BY start_ms").fetchall()
    hour = 3_600_000
    assert pieces == [(ms("2026-11-03T00:00:00.000Z"), 2 * hour),
                      (ms("2026-11-04T00:00:00.000Z"), 24 * hour),
                      (ms("2026-11-05T00:00:00.000Z"), 1 * hour)]


def test_threads_overlapping_count_once_when_only_thread_events_exist(store, feed):
    def th(eid, at, state, thread):
        return {"session_id": "sesn_01", "type": f"session.thread_status_{state}", "id": eid,
                "processed_at": at, "session_thread_id": thread}
    feed([
        th("sevt_01", "2026-11-03T09:00:00.000Z", "running", "sthr_a"),
        th("sevt_02", "2026-11-03T09:00:02.000Z", "running", "sthr_b"),
        th("sevt_03", "2026-11-03T09:00:05.000Z", "idle", "sthr_a"),
        th("sevt_04", "2026-11-03T09:00:07.000Z", "idle", "sthr_b"),
        th("sevt_05", "2026-11-03T09:01:00.000Z", "running", "sthr_a"),
        th("sevt_06", "2026-11-03T09:01:01.000Z", "idle", "sthr_a"),
    ])
    assert _running(store) == 7000 + 1000


def test_session_level_events_win_over_thread_events(store, feed):
    feed(BASIC + [{"session_id": "sesn_01", "type": "session.thread_status_running",
                   "id": "sevt_t1", "processed_at": "2026-11-03T08:00:00.000Z",
                   "session_thread_id": "sthr_a"}])
    assert _running(store) == 1750


def test_active_seconds_difference_is_shown(store, feed):
    usage = {"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": 0,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
             "active_seconds": 1.75}
    feed(BASIC + [{"session_id": "sesn_01", "type": "session.usage", "id": "sevt_u1",
                   "processed_at": "2026-11-03T09:10:00.250Z", "usage": usage}])
    row = active_time_check(store, AS_OF).fetchall()[0]
    assert row[2:] == (1750, 1750, 0)
    feed([{"session_id": "sesn_01", "type": "session.usage", "id": "sevt_u2",
           "processed_at": "2026-11-03T09:10:00.251Z", "usage": {**usage, "active_seconds": 2}}])
    row = active_time_check(store, AS_OF).fetchall()[0]
    assert row[2:] == (2000, 1750, -250)
