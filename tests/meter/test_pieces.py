"""Billing pieces (meter.intervals.build_pieces / pieces_sql) against the merged intervals.

The pieces are the rules of INTERVALS_SQL in one sort by processed_at: sessions with two
status events in one millisecond must be recomputed in (processed_at, event id) order, and
whatever the history, each session must get the same running milliseconds (in total and per
UTC day) and the same provisional flag as `build_intervals`, the reference the displays use.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter.intervals import build_intervals, build_pieces, pieces_sql, split_sql
from meter.store import connect
from pricing.pricebook import PriceBook
from pricing.rating import load_books, runtime_days_sql, stage_runtime
from tests.conftest import iso, ms, status

T = ms("2026-11-03T09:00:00.000Z")
AS_OF = ms("2026-11-30T00:00:00.000Z")


def _pieces(con, as_of=AS_OF, session="sesn_01"):
    """(status, start_ms, end_ms, duration_ms, provisional) of one session's pieces."""
    build_pieces(con, as_of, table="pc")
    return con.execute("SELECT status, start_ms, end_ms, duration_ms, provisional FROM pc "
                       "WHERE session_id = ? ORDER BY start_ms, end_ms, status",
                       [session]).fetchall()


def _running_ms(con, table, session="sesn_01"):
    return con.execute(f"SELECT coalesce(sum(duration_ms), 0) FROM {table} "
                       "WHERE session_id = ? AND status = 'running'", [session]).fetchall()[0][0]


def _rating_running_ms(con, as_of=AS_OF, session="sesn_01", has_threads=False):
    """Running ms as rating reads them: pieces_sql(..., running_only=True)."""
    sql = pieces_sql(has_threads, running_only=True)
    rows = con.execute(f"SELECT coalesce(sum(duration_ms), 0) FROM ({sql}) "
                       "WHERE session_id = $s AND status = 'running'",
                       {"as_of": as_of, "s": session}).fetchall()
    return rows[0][0]


# --- two status events in one millisecond: event id order decides ----------------------------


def test_idle_then_running_in_one_ms_runs_until_the_next_event(store, feed):
    # Ingested running-first, but the ids say idle (sevt_a) came before running (sevt_b):
    # idle t..t (0 ms), running t..t+5000, idle t+5000..as_of. Ordering by processed_at
    # alone (insertion order) would give running t..t and 0 running ms.
    feed([
        status("sesn_01", "sevt_b", iso(T), "running"),
        status("sesn_01", "sevt_a", iso(T), "idle"),
        status("sesn_01", "sevt_c", iso(T + 5000), "idle"),
    ])
    assert _pieces(store) == [
        ("idle", T, T, 0, False),
        ("running", T, T + 5000, 5000, False),
        ("idle", T + 5000, AS_OF, AS_OF - T - 5000, True),
    ]
    build_intervals(store, AS_OF, table="iv")
    assert _running_ms(store, "iv") == 5000
    assert _rating_running_ms(store) == 5000


def test_running_then_idle_in_one_ms_runs_for_no_time(store, feed):
    # The mirror: running (sevt_a) then idle (sevt_b) at t, ingested idle-first: 0 running ms.
    # In insertion order it would be idle t..t then running t..t+5000.
    feed([
        status("sesn_01", "sevt_b", iso(T), "idle"),
        status("sesn_01", "sevt_a", iso(T), "running"),
        status("sesn_01", "sevt_c", iso(T + 5000), "idle"),
    ])
    build_pieces(store, AS_OF, table="pc")
    assert _running_ms(store, "pc") == 0
    assert _rating_running_ms(store) == 0
    build_intervals(store, AS_OF, table="iv")
    assert _running_ms(store, "iv") == 0


def test_a_tie_in_one_session_does_not_reorder_another(store, feed):
    # sesn_02 has no tie (fast path); sesn_01 has one (exact path): both right at once.
    feed([
        status("sesn_01", "sevt_b", iso(T), "running"),
        status("sesn_01", "sevt_a", iso(T), "idle"),
        status("sesn_01", "sevt_c", iso(T + 5000), "idle"),
        status("sesn_02", "sevt_z", iso(T), "running"),
        status("sesn_02", "sevt_y", iso(T + 1234), "idle"),
    ])
    build_pieces(store, AS_OF, table="pc")
    assert _running_ms(store, "pc", "sesn_01") == 5000
    assert _running_ms(store, "pc", "sesn_02") == 1234


def test_a_non_terminal_event_tied_with_the_terminal_one_is_dropped(store, feed):
    # running at t; at t+3000 'idle' (sevt_c, after the terminal in id order) and
    # 'terminated' (sevt_b): the session ends at t+3000, 3000 running ms, nothing open.
    feed([
        status("sesn_01", "sevt_c", iso(T + 3000), "idle"),
        status("sesn_01", "sevt_b", iso(T + 3000), "terminated"),
        status("sesn_01", "sevt_a", iso(T), "running"),
    ])
    assert _pieces(store) == [
        ("running", T, T + 3000, 3000, False),
        ("terminated", T + 3000, T + 3000, 0, False),
    ]


# --- thread-only sessions --------------------------------------------------------------------


def _thread(eid, at_ms, state, thread, session="sesn_01"):
    kind = {"rescheduling": "rescheduled"}.get(state, state)
    return {"session_id": session, "type": f"session.thread_status_{kind}", "id": eid,
            "processed_at": iso(at_ms), "session_thread_id": thread}


def test_thread_only_session_runs_while_any_thread_runs(store, feed):
    # a runs 0..5 s, b runs 2..7 s (overlap counted once) -> 7 s; a runs again from 59 s and
    # at 60 s, in one ms, a goes idle (sevt_08) then b running (sevt_09): no gap, 59..63 s
    # when b reschedules -> 4 s more; a runs from 100 s, still running at as_of (+250 ms,
    # provisional).
    feed([
        _thread("sevt_01", T, "running", "sthr_a"),
        _thread("sevt_02", T + 2000, "running", "sthr_b"),
        _thread("sevt_03", T + 5000, "idle", "sthr_a"),
        _thread("sevt_04", T + 7000, "idle", "sthr_b"),
        _thread("sevt_07", T + 59_000, "running", "sthr_a"),
        _thread("sevt_09", T + 60_000, "running", "sthr_b"),
        _thread("sevt_08", T + 60_000, "idle", "sthr_a"),
        _thread("sevt_10", T + 63_000, "rescheduling", "sthr_b"),
        _thread("sevt_11", T + 100_000, "running", "sthr_a"),
    ])
    as_of = T + 100_250
    build_pieces(store, as_of, table="pc")
    build_intervals(store, as_of, table="iv")
    expected = 7000 + 1000 + 3000 + 250
    assert _running_ms(store, "pc") == _running_ms(store, "iv") == expected
    assert _rating_running_ms(store, as_of, has_threads=True) == expected
    provisional = "SELECT bool_or(provisional) FROM {} WHERE status = 'running'"
    assert store.execute(provisional.format("pc")).fetchall()[0][0] is True
    assert store.execute(provisional.format("iv")).fetchall()[0][0] is True


def test_thread_events_are_ignored_where_session_events_exist(store, feed):
    # Session-level events win: the thread's 10 s of running do not count.
    feed([
        status("sesn_01", "sevt_01", iso(T), "running"),
        status("sesn_01", "sevt_02", iso(T + 1500), "idle"),
        _thread("sevt_03", T + 10_000, "running", "sthr_a"),
        _thread("sevt_04", T + 20_000, "idle", "sthr_a"),
    ])
    build_pieces(store, AS_OF, table="pc")
    assert _running_ms(store, "pc") == 1500


# --- equivalence with the merged intervals, over generated histories ---------------------------

SESSION_STATUSES = ("running", "idle", "rescheduling", "terminated", "deleted")
THREAD_STATUSES = ("running", "idle", "rescheduling", "terminated")
# Many zero steps (ties), 1 ms, and steps across midnights and the book boundary below
# (12 h: from a session started at midnight, exactly onto that boundary).
STEPS = (0, 0, 0, 1, 999, 60_000, 3_600_000, 12 * 3_600_000, 13 * 3_600_000, 30 * 3_600_000)
BASE = ms("2026-11-03T20:00:00.000Z")
# Two books with a boundary at noon, so runtime_days also cuts pieces off midnight.
BOUNDARY = "2026-11-04T12:00:00Z"


def _book(version, start, end=None):
    return PriceBook.model_validate({
        "name": "test", "version": version, "effective_from": start, "effective_to": end,
        "runtime": {"usd_per_session_hour": "0.08"}, "web_search": {"usd_per_1000": "10"},
        "modifiers": {"fast_mode_applies": True, "data_residency_applies": True},
    })


BOOKS = [_book("a", "2026-11-03T22:00:00Z", BOUNDARY), _book("b", BOUNDARY)]

_event = st.tuples(st.sampled_from(SESSION_STATUSES), st.sampled_from(STEPS),
                   st.sampled_from(("sthr_a", "sthr_b", "sthr_c")))
_session = st.tuples(
    st.sampled_from(("session", "session", "threads", "both")),
    # start offset: anywhere in six hours, or exactly midnight (4 h after BASE)
    st.one_of(st.integers(0, 6 * 3_600_000), st.just(4 * 3_600_000)),
    st.lists(_event, min_size=1, max_size=10),
)


@st.composite
def histories(draw):
    """(rows for status_events, as_of): sessions of session-level events, thread-level events
    or both, with ties, repeats, late events after a terminal one and events after as_of."""
    rows = []
    for n, (kind, offset, events) in enumerate(draw(st.lists(_session, min_size=1,
                                                             max_size=10))):
        at = BASE + offset
        for i, (state, step, thread) in enumerate(events):
            at += step
            on_thread = kind == "threads" or (kind == "both" and i % 2 == 1)
            if on_thread and state == "deleted":
                state = "terminated"  # threads have no 'deleted' event
            rows.append([None, f"sesn_{n}", thread if on_thread else None, state, at, None])
    # event ids in an order unrelated to time or generation, rows inserted in another one
    ids = draw(st.permutations(range(len(rows))))
    for row, k in zip(rows, ids, strict=True):
        row[0] = f"sevt_{k:03d}"
    rows = draw(st.permutations(rows))
    times = sorted({r[4] for r in rows})
    as_of = draw(st.one_of(st.sampled_from(times),  # exactly on an event
                           st.integers(times[0] - 1000, times[-1] + 3_600_000)))
    return rows, as_of


def _store(rows):
    """An in-memory store with `rows` in status_events and the test books loaded."""
    con = connect(":memory:")
    con.execute("INSERT INTO status_events VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows)), [v for r in rows for v in r])
    load_books(con, BOOKS)
    return con


def _by_session(con, sql, params=None):
    """{session: (running ms, provisional)}, sessions with nothing running or open left out
    (the merged intervals drop a session's lone first terminal event, pieces keep it: 0 ms)."""
    rows = con.execute(f"""
        SELECT session_id, coalesce(sum(duration_ms) FILTER (WHERE status = 'running'), 0),
               bool_or(provisional)
        FROM ({sql}) GROUP BY ALL""", params).fetchall()
    return {s: (run, prov) for s, run, prov in rows if (run, prov) != (0, False)}


def _running_per_day(con, source):
    return sorted(con.execute(f"""
        SELECT session_id, period_start_ms, sum(duration_ms)::BIGINT
        FROM ({split_sql(source, 'day')}) WHERE status = 'running' AND duration_ms > 0
        GROUP BY ALL""").fetchall())


@settings(max_examples=150, deadline=None)
@given(history=histories())
def test_pieces_give_the_merged_intervals_running_ms_and_provisional_flags(history):
    rows, as_of = history
    con = _store(rows)
    has_threads = any(r[2] is not None for r in rows)
    build_intervals(con, as_of, table="iv")
    build_pieces(con, as_of, table="pc")

    # per session: running ms and provisional, build_pieces == build_intervals
    reference = _by_session(con, "SELECT * FROM iv")
    assert _by_session(con, "SELECT * FROM pc") == reference

    # what rating reads (running pieces only): same running ms, and open while running
    running = con.execute(f"""
        SELECT session_id, sum(duration_ms), bool_or(provisional)
        FROM ({pieces_sql(has_threads, running_only=True)}) GROUP BY ALL""",
                          {"as_of": as_of}).fetchall()
    assert con.execute(f"SELECT count(*) FROM ({pieces_sql(has_threads, running_only=True)}) "
                       "WHERE status <> 'running'", {"as_of": as_of}).fetchall()[0][0] == 0
    open_running = {s for (s,) in con.execute(
        "SELECT DISTINCT session_id FROM iv WHERE provisional AND status = 'running'"
    ).fetchall()}
    assert {s: run for s, run, _ in running if run} == {
        s: run for s, (run, _) in reference.items() if run}
    assert {s for s, _, prov in running if prov} == open_running

    # per UTC day: the pieces split at midnight sum as the merged intervals do
    assert _running_per_day(con, "pc") == _running_per_day(con, "iv")

    # and runtime_days (rating's staging, also cut at the noon book boundary) agrees per day
    con.execute(runtime_days_sql(con, pieces_sql(has_threads, running_only=True)),
                {"as_of": as_of})
    # (a session that starts running at as_of keeps a 0 ms row there, to count as open)
    days = sorted(con.execute("SELECT session_id, day_ms, sum(ms)::BIGINT FROM runtime_days "
                              "WHERE ms > 0 GROUP BY ALL").fetchall())
    assert days == _running_per_day(con, "iv")

    # the full rating stages (stage_runtime, from per-session lists) what runtime_days_sql
    # makes of the merged intervals, row for row: ms and the line's provisional flag (time of
    # the open stretch in that day and book); and the same sessions are open (running at as_of)
    lines = "SELECT session_id, day_ms, book_id, ms, provisional FROM runtime_days ORDER BY ALL"
    open_sessions = "SELECT DISTINCT session_id FROM runtime_days WHERE open ORDER BY ALL"
    con.execute(runtime_days_sql(con, "SELECT * FROM iv"))
    reference = con.execute(lines).fetchall(), con.execute(open_sessions).fetchall()
    stage_runtime(con, as_of)
    assert (con.execute(lines).fetchall(), con.execute(open_sessions).fetchall()) == reference
    con.close()


def test_generated_histories_do_contain_ties_threads_and_late_events():
    # Guard on the generator above: the property is only worth something if these occur.
    seen = {"tie": False, "threads": False, "late": False, "after_as_of": False,
            "one_day_and_book": False, "across_days_or_books": False,
            "as_of_on_a_boundary": False}
    boundary = ms(BOUNDARY)

    @settings(max_examples=150, deadline=None, database=None)
    @given(history=histories())
    def collect(history):
        rows, as_of = history
        keys = [(r[1], r[2], r[4]) for r in rows]
        seen["tie"] |= len(set(keys)) < len(keys)
        seen["threads"] |= any(r[2] is not None for r in rows)
        ends = {}
        for r in rows:
            if r[2] is None and r[3] in ("terminated", "deleted"):
                ends[r[1]] = min(ends.get(r[1], r[4]), r[4])
        seen["late"] |= any(r[2] is None and r[1] in ends and r[4] > ends[r[1]] for r in rows)
        seen["after_as_of"] |= any(r[4] > as_of for r in rows)
        # as_of exactly at a midnight or the book boundary, on an event: the 0 ms open piece
        seen["as_of_on_a_boundary"] |= ((as_of % 86_400_000 == 0 or as_of == boundary)
                                         and any(r[4] == as_of for r in rows))
        # stage_runtime sums sessions in one or two days x books in their list, cuts others
        for sid in {r[1] for r in rows if r[2] is None}:
            times = [r[4] for r in rows if r[1] == sid and r[2] is None]
            within = (min(times) // 86_400_000 == max(times) // 86_400_000
                      and (max(times) < boundary or min(times) >= boundary))
            seen["one_day_and_book" if within else "across_days_or_books"] = True

    collect()
    assert all(seen.values()), seen


def test_time_before_the_first_book_is_not_provisional_when_the_open_stretch_starts_after():
    # Running 20:00-22:00 before the first book (from 22:00), then idle and running again in
    # one ms at 22:00: only the stretch from 22:00 is open. Found by the property above.
    t = ms("2026-11-03T20:00:00.000Z")
    rows = [["sevt_1", "sesn_1", None, "running", t, None],
            ["sevt_2", "sesn_1", None, "idle", t + 7_200_000, None],
            ["sevt_3", "sesn_1", None, "running", t + 7_200_000, None]]
    con = _store(rows)
    stage_runtime(con, t + 7_200_001)
    day = ms("2026-11-03T00:00:00.000Z")
    assert con.execute("SELECT day_ms, book_id, ms, provisional, open FROM runtime_days "
                       "ORDER BY ALL").fetchall() == [
        (day, -1, 7_200_000, False, False), (day, 0, 1, True, True)]


def test_a_session_terminated_in_the_ms_it_resumes_running_is_not_provisional():
    # Running at t (three repeats), then 'terminated' and 'running' in one ms at t+1, the
    # terminal event first by id: the session ended at t+1, nothing is open. Found by the
    # property above.
    t = ms("2026-11-03T20:00:00.000Z")
    rows = [[f"sevt_{i}", "sesn_1", None, "running", t, None] for i in range(3)]
    rows += [["sevt_3", "sesn_1", None, "terminated", t + 1, None],
             ["sevt_4", "sesn_1", None, "running", t + 1, None]]
    con = _store(rows)
    stage_runtime(con, t + 2)
    assert con.execute("SELECT ms, provisional, open FROM runtime_days").fetchall() == [
        (1, False, False)]


def _staged_vs_merged(rows, as_of):
    """(stage_runtime's runtime_days rows, the same from the merged intervals)."""
    con = _store(rows)
    build_intervals(con, as_of, table="iv")
    lines = "SELECT session_id, day_ms, book_id, ms, provisional, open FROM runtime_days " \
            "ORDER BY ALL"
    con.execute(runtime_days_sql(con, "SELECT * FROM iv"))
    reference = con.execute(lines).fetchall()
    stage_runtime(con, as_of)
    return con.execute(lines).fetchall(), reference


MIDNIGHT = ms("2026-11-04T00:00:00.000Z")
NOON = ms(BOUNDARY)
HOUR = 3_600_000


@pytest.mark.parametrize("events, as_of", [
    # running again exactly at midnight = as_of: a 0 ms open row on the new day
    ([("running", MIDNIGHT - 14 * HOUR), ("idle", MIDNIGHT - 13 * HOUR),
      ("running", MIDNIGHT)], MIDNIGHT),
    # a repeat at midnight = as_of: the stretch from 23:00 is provisional on the old day only
    ([("running", MIDNIGHT - HOUR), ("running", MIDNIGHT)], MIDNIGHT),
    ([("running", MIDNIGHT)], MIDNIGHT),
    # the same at the book boundary (noon)
    ([("running", NOON - 2 * HOUR), ("idle", NOON - HOUR), ("running", NOON)], NOON),
    ([("running", NOON - HOUR), ("running", NOON)], NOON),
    # across one midnight: closed, open, open from after it
    ([("running", MIDNIGHT - HOUR), ("idle", MIDNIGHT + HOUR)], MIDNIGHT + 5 * HOUR),
    ([("running", MIDNIGHT - HOUR)], MIDNIGHT + HOUR),
    ([("running", MIDNIGHT - HOUR), ("idle", MIDNIGHT - 1), ("running", MIDNIGHT + HOUR)],
     MIDNIGHT + 2 * HOUR),
    # ending exactly at midnight, and idle across it
    ([("running", MIDNIGHT - HOUR), ("idle", MIDNIGHT)], MIDNIGHT + HOUR),
    ([("running", MIDNIGHT - 2 * HOUR), ("idle", MIDNIGHT - HOUR), ("terminated", MIDNIGHT + HOUR)],
     MIDNIGHT + 2 * HOUR),
    # across midnight and the noon boundary: cut three ways
    ([("running", MIDNIGHT - HOUR), ("idle", MIDNIGHT + HOUR), ("running", NOON - HOUR)],
     NOON + HOUR),
    ([("running", MIDNIGHT - HOUR)], NOON + HOUR),
])
def test_runtime_at_and_across_midnight_and_book_boundaries_matches_the_merged_intervals(
        events, as_of):
    rows = [[f"sevt_{i}", "sesn_1", None, state, at, None]
            for i, (state, at) in enumerate(events)]
    staged, reference = _staged_vs_merged(rows, as_of)
    assert staged == reference
