"""Interval building under fuzz: random transitions against a plain reference, to the ms.

Hypothesis draws sessions with session-level and thread-level transitions in any order, with
repeated statuses, several transitions in one millisecond, terminal events followed by more,
long gaps, and instants anywhere an RFC 3339 timestamp can name (year 1 to year 9999), then an
`as_of` among or beyond them. The rows go straight into a real DuckDB store's `status_events`
in a shuffled order (ingest's own fuzz lives with ingest). For every example:
- `meter.intervals.intervals` equals `reference_intervals` below, row for row, and so does
  `gather_intervals` (each session's events gathered into a list instead of one sort);
- a session's intervals tile its time from its first transition to its end (the next one, the
  terminal instant or `as_of`): no millisecond is lost or counted twice;
- rating's one-sort path (`build_pieces`) gives the same running milliseconds and provisional
  flags per session;
- cutting the intervals at UTC months (and days, where that is not millions of pieces) keeps
  every millisecond.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter.intervals import (
    TERMINAL,
    build_intervals,
    build_pieces,
    gather_intervals,
    intervals,
    split_sql,
)
from meter.store import connect

STATUSES = ("running", "idle", "rescheduling", "terminated", "deleted")
THREAD_STATUSES = ("running", "idle")
FIRST_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
BASE_MS = 1_793_000_000_000  # November 2026
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Transition:
    event_id: str
    session_id: str
    thread_id: str | None
    status: str
    at_ms: int


Interval = tuple[str, str, int, int, int, bool]  # session, status, start, end, ms, provisional

# Found by this fuzz, fixed since: INTERVALS_SQL dropped the interval of a session whose first
# transition is terminal (`NOT (prev_status IN (...) AND ...)` was NULL with no previous
# status); test_a_session_whose_first_transition_is_terminal_has_its_terminal_interval pins it.


def reference_intervals(rows: list[Transition], as_of_ms: int) -> list[Interval]:
    """The documented rules, one session at a time, in plain Python (meter/intervals.py):
    transitions up to `as_of` in (time, id) order; a session without session-level transitions
    is running while any of its threads runs; nothing after the first terminal instant counts
    (at that instant, only terminal transitions); a repeated status (terminal after terminal
    included) continues the interval; the last interval ends at `as_of` and is provisional,
    unless it is terminal (0 ms)."""
    by_session: dict[str, list[Transition]] = defaultdict(list)
    for row in rows:
        by_session[row.session_id].append(row)
    out: list[Interval] = []
    for session, mine in by_session.items():
        timeline = _timeline(mine, as_of_ms)
        terminal_at = min((at for at, _, status in timeline if status in TERMINAL), default=None)
        if terminal_at is not None:
            timeline = [(at, eid, status) for at, eid, status in timeline
                        if at < terminal_at or (at == terminal_at and status in TERMINAL)]
        current: tuple[str, int] | None = None
        for at, _, status in timeline:
            if current is not None and (status == current[0] or (
                    status in TERMINAL and current[0] in TERMINAL)):
                continue
            if current is not None:
                out.append((session, current[0], current[1], at, at - current[1], False))
            current = (status, at)
        if current is not None:
            status, start = current
            end = start if status in TERMINAL else as_of_ms
            out.append((session, status, start, end, end - start, status not in TERMINAL))
    return sorted(out)


def _timeline(mine: list[Transition], as_of_ms: int) -> list[tuple[int, str, str]]:
    """(at, id, status) of the session in (time, id) order: its own transitions if it has any
    (whenever they are), else one per change in whether any thread runs."""
    own = [r for r in mine if r.thread_id is None]
    if own:
        return sorted((r.at_ms, r.event_id, r.status) for r in own if r.at_ms <= as_of_ms)
    running: dict[str, bool] = {}
    timeline = []
    for r in sorted((r for r in mine if r.at_ms <= as_of_ms),
                    key=lambda r: (r.at_ms, r.event_id)):
        assert r.thread_id is not None
        was, now = running.get(r.thread_id, False), r.status == "running"
        running[r.thread_id] = now
        if was != now:
            timeline.append((r.at_ms, r.event_id, "running" if any(running.values())
                             else "idle"))
    return timeline


# --- the store, one for all examples -----------------------------------------------------

@pytest.fixture(scope="module")
def con():
    store = connect(":memory:")
    yield store
    store.close()


def _load(con: duckdb.DuckDBPyConnection, rows: list[Transition], seed: int) -> None:
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)  # arrival order must not matter
    con.execute("DELETE FROM status_events")
    con.execute(  # one statement: lists unnested side by side, in the shuffled order
        "INSERT INTO status_events (event_id, session_id, thread_id, status, at_ms) "
        "SELECT unnest($ids), unnest($sessions), unnest($threads), unnest($statuses), "
        "unnest($ats)",
        {"ids": [r.event_id for r in shuffled], "sessions": [r.session_id for r in shuffled],
         "threads": [r.thread_id for r in shuffled], "statuses": [r.status for r in shuffled],
         "ats": [r.at_ms for r in shuffled]})


# --- what hypothesis draws ----------------------------------------------------------------

# Instants: mostly a few minutes around a base (ties, repeats and short gaps), some far apart
# (days and years), some at the ends of what an RFC 3339 timestamp can say.
instants = st.one_of(
    st.integers(BASE_MS, BASE_MS + 600_000).map(lambda ms: ms - ms % 1000 * (ms % 3 == 0)),
    st.integers(BASE_MS - 40 * DAY_MS, BASE_MS + 40 * DAY_MS),
    st.sampled_from([FIRST_MS, FIRST_MS + 1, 0, -1, LAST_MS - 1, LAST_MS, BASE_MS]),
    st.integers(FIRST_MS, LAST_MS),
)


@st.composite
def stores(draw: st.DrawFn) -> tuple[list[Transition], int]:
    rows: list[Transition] = []
    times: list[int] = []
    for s in range(draw(st.integers(1, 3))):
        session = f"sesn_{s}"
        threads_only = draw(st.booleans())
        for n in range(draw(st.integers(0, 10))):
            at = draw(st.one_of(instants, st.sampled_from(times))) if times else draw(instants)
            times.append(at)
            if threads_only:
                thread, status = f"sthr_{draw(st.integers(0, 2))}", draw(
                    st.sampled_from(THREAD_STATUSES))
            else:
                thread = draw(st.sampled_from([None, None, None, "sthr_0"]))
                status = draw(st.sampled_from(STATUSES if thread is None else THREAD_STATUSES))
            # ids drawn so that (time, id) order and insertion order often disagree
            rows.append(Transition(f"sevt_{draw(st.integers(0, 99)):02d}_{s}_{n}", session,
                                   thread, status, at))
    as_of = draw(st.one_of(st.sampled_from(times), instants) if times else instants)
    return rows, as_of


@st.composite
def untied_stores(draw: st.DrawFn) -> tuple[list[Transition], int]:
    """Sessions whose transitions never share a millisecond, so that `gather_intervals` takes
    its lists' own path for them (repeats, terminal events, late ones after them)."""
    rows: list[Transition] = []
    for s in range(draw(st.integers(1, 3))):
        for n, at in enumerate(draw(st.lists(instants, max_size=12, unique=True))):
            thread = draw(st.sampled_from([None, None, None, None, "sthr_0"]))
            status = draw(st.sampled_from(STATUSES if thread is None else THREAD_STATUSES))
            rows.append(Transition(f"sevt_{n:02d}_{s}", f"sesn_{s}", thread, status, at))
    times = [r.at_ms for r in rows]
    as_of = draw(st.one_of(st.sampled_from(times), instants) if times else instants)
    return rows, as_of


# --- the properties -------------------------------------------------------------------------

# (every example reuses the module's store: hypothesis is told the fixture is meant)
_ONE_STORE = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow]}

def _tiles(rows: list[Interval]) -> None:
    """Each session's intervals follow one another without gap or overlap, from its first
    transition to the end of its last interval."""
    by_session: dict[str, list[Interval]] = defaultdict(list)
    for row in rows:
        by_session[row[0]].append(row)
    for session, mine in by_session.items():
        mine.sort(key=lambda r: (r[2], r[3]))  # a 0 ms interval first at its instant
        for before, after in zip(mine, mine[1:], strict=False):
            assert before[3] == after[2], (session, before, after)
        assert sum(r[4] for r in mine) == mine[-1][3] - mine[0][2], session
        assert all(r[4] >= 0 for r in mine) and sum(r[5] for r in mine) <= 1, session


def _running_by_session(rows: list[Interval]) -> dict[str, tuple[int, bool]]:
    out: dict[str, tuple[int, bool]] = {}
    for session, status, _, _, ms, provisional in rows:
        if status == "running":
            total, open_ = out.get(session, (0, False))
            out[session] = (total + ms, open_ or provisional)
    return out


@settings(max_examples=200, **_ONE_STORE)
@given(drawn=untied_stores(), seed=st.integers(0, 2**16))
def test_gathered_intervals_without_ties_equal_the_reference(con, drawn, seed):
    rows, as_of = drawn
    _load(con, rows, seed)
    gather_intervals(con, as_of, table="fuzz_gathered")
    assert sorted(con.execute("SELECT * FROM fuzz_gathered").fetchall()) == \
        reference_intervals(rows, as_of)


@settings(max_examples=150, **_ONE_STORE)
@given(drawn=stores(), seed=st.integers(0, 2**16))
def test_intervals_equal_the_reference_and_lose_no_millisecond(con, drawn, seed):
    rows, as_of = drawn
    _load(con, rows, seed)
    expected = reference_intervals(rows, as_of)

    build_intervals(con, as_of, table="fuzz_iv")
    got = sorted(con.execute("SELECT * FROM fuzz_iv").fetchall())
    assert got == expected
    _tiles(got)

    gather_intervals(con, as_of, table="fuzz_gathered")
    assert sorted(con.execute("SELECT * FROM fuzz_gathered").fetchall()) == expected

    build_pieces(con, as_of, table="fuzz_pieces")
    pieces = con.execute("SELECT session_id, status, start_ms, end_ms, duration_ms, "
                         "provisional FROM fuzz_pieces").fetchall()
    assert _running_by_session(pieces) == _running_by_session(expected)

    whole = con.execute("SELECT session_id, status, sum(duration_ms) FROM fuzz_iv "
                        "GROUP BY ALL ORDER BY ALL").fetchall()
    longest = max((r[4] for r in expected), default=0)
    grains = ["month"] + (["day"] if longest <= 3_000 * DAY_MS else [])
    for grain in grains:
        cut = con.execute(f"SELECT session_id, status, sum(duration_ms) FROM "
                          f"({split_sql('fuzz_iv', grain)}) GROUP BY ALL ORDER BY ALL").fetchall()
        assert cut == [r for r in whole if r[2]], grain  # (0 ms intervals have no pieces)


def test_the_reference_follows_the_rules_on_a_hand_case():
    """The reference itself, on a case worked by hand: two threads overlapping count once, a
    repeat is merged, nothing after `terminated` counts, an open session ends at as_of."""
    t = Transition
    rows = [
        t("e1", "s_threads", "a", "running", 1_000), t("e2", "s_threads", "b", "running", 1_500),
        t("e3", "s_threads", "a", "idle", 2_000), t("e4", "s_threads", "b", "idle", 3_000),
        t("e5", "s_end", None, "running", 0), t("e6", "s_end", None, "running", 500),
        t("e7", "s_end", None, "terminated", 900), t("e8", "s_end", None, "running", 950),
        t("e9", "s_open", None, "idle", 100), t("eA", "s_open", None, "running", 4_000),
    ]
    assert reference_intervals(rows, 5_000) == [
        ("s_end", "running", 0, 900, 900, False),
        ("s_end", "terminated", 900, 900, 0, False),
        ("s_open", "idle", 100, 4_000, 3_900, False),
        ("s_open", "running", 4_000, 5_000, 1_000, True),
        ("s_threads", "idle", 3_000, 5_000, 2_000, True),
        ("s_threads", "running", 1_000, 3_000, 2_000, False),
    ]


def test_a_session_whose_first_transition_is_terminal_has_its_terminal_interval(con):
    rows = [Transition("sevt_1", "sesn_1", None, "terminated", BASE_MS)]
    _load(con, rows, seed=0)
    assert intervals(con, BASE_MS + 1).fetchall() == [
        ("sesn_1", "terminated", BASE_MS, BASE_MS, 0, False)]
