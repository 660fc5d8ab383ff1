"""Status events to time intervals, exact to the millisecond.

Runtime is billed on the time a session spends `running`. The API reports transitions, not
durations, and they can arrive late, twice or out of order, so intervals are always derived
from the whole set of stored transitions at query time, never accumulated as they arrive:
ingest order cannot change the answer.

Rules (each has a test with hand-checked milliseconds):
- events are ordered by (processed_at, event id); a status repeated in a row is merged;
- an interval ends at the next transition; the last one of a live session ends at `as_of`
  and is `provisional`;
- `terminated` and `deleted` are terminal: later status events are kept in the store but
  flagged by `late_after_terminal` and never billed;
- events after `as_of` are ignored, so a report for a past instant is reproducible;
- a session that only has thread-level transitions is running while any thread runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

TERMINAL = ("terminated", "deleted")

# Thread transitions -> session transitions, for sessions that lack session-level events:
# the session is running while at least one thread is running (overlaps count once).
_THREAD_DERIVED = """
    thread_ev AS (
        SELECT session_id, thread_id, status, at_ms, event_id,
               lag(status) OVER (PARTITION BY session_id, thread_id
                                 ORDER BY at_ms, event_id) AS prev
        FROM status_events
        WHERE thread_id IS NOT NULL AND at_ms <= $as_of
          AND session_id NOT IN (SELECT session_id FROM status_events WHERE thread_id IS NULL)
    ), thread_steps AS (
        SELECT session_id, at_ms, event_id,
               CASE WHEN status = 'running' AND coalesce(prev, '') <> 'running' THEN 1
                    WHEN status <> 'running' AND prev = 'running' THEN -1 ELSE 0 END AS step
        FROM thread_ev
    ), thread_running AS (
        SELECT session_id, at_ms, event_id,
               sum(step) OVER (PARTITION BY session_id ORDER BY at_ms, event_id
                               ROWS UNBOUNDED PRECEDING) AS n_running,
               step
        FROM thread_steps WHERE step <> 0
    ), derived AS (
        SELECT session_id, CASE WHEN n_running > 0 THEN 'running' ELSE 'idle' END AS status,
               at_ms, event_id
        FROM thread_running
    ),"""

def _merged_sql(sessions: str | None = None, has_threads: bool = True) -> str:
    """SQL (parameter `$as_of`) of the merged intervals, of every session or (`sessions`, a
    query listing session_id) of those sessions and every thread-only session."""
    among = "" if sessions is None else f" AND session_id IN ({sessions})"
    return f"""
WITH {_THREAD_DERIVED if has_threads else _NO_THREADS}
    ev AS (
        SELECT session_id, status, at_ms, event_id FROM status_events
        WHERE thread_id IS NULL AND at_ms <= $as_of{among}
        UNION ALL
        SELECT session_id, status, at_ms, event_id FROM derived
    ), ends AS (  -- an aggregate, not a window: one fewer sort of every transition
        SELECT session_id, min(at_ms) AS terminal_ms FROM ev
        WHERE status IN {TERMINAL} GROUP BY session_id
    ), live AS (
        SELECT ev.session_id, ev.status, ev.at_ms, ev.event_id,
               lag(ev.status) OVER w AS prev_status
        FROM ev LEFT JOIN ends USING (session_id)
        WHERE ends.terminal_ms IS NULL OR ev.at_ms < ends.terminal_ms
           OR (ev.at_ms = ends.terminal_ms AND ev.status IN {TERMINAL})
        WINDOW w AS (PARTITION BY ev.session_id ORDER BY ev.at_ms, ev.event_id)
    ), changes AS (
        SELECT session_id, status, at_ms,
               lead(at_ms) OVER (PARTITION BY session_id ORDER BY at_ms, event_id) AS next_ms
        FROM live
        WHERE prev_status IS DISTINCT FROM status
          -- coalesce: a session's first transition has no previous status (NULL), and a
          -- first terminal transition keeps its 0 ms interval
          AND NOT (coalesce(prev_status IN {TERMINAL}, false) AND status IN {TERMINAL})
    )
SELECT session_id, status, at_ms AS start_ms,
       CASE WHEN next_ms IS NOT NULL THEN next_ms
            WHEN status IN {TERMINAL} THEN at_ms
            ELSE $as_of END AS end_ms,
       CASE WHEN next_ms IS NOT NULL THEN next_ms
            WHEN status IN {TERMINAL} THEN at_ms
            ELSE $as_of END - at_ms AS duration_ms,
       next_ms IS NULL AND status NOT IN {TERMINAL} AS provisional
FROM changes
"""


INTERVALS_SQL = _merged_sql()

# Each session's session-level status events gathered into one list (a hash aggregate) and that
# small list sorted, instead of sorting every transition: what rating's runtime and the merged
# intervals below are both computed from. An event is packed as at_ms x 8 + its status's
# position in STATUSES (5 for another status, `odd`), so one BIGINT orders a session's events
# by time; the list ends at the session's terminal instant (what follows is never counted).
# `tied`: two events in one millisecond (their order is then by event id, which the list does
# not know: such sessions take the window-based rules).
STATUSES = ("idle", "running", "rescheduling", "terminated", "deleted")
_STATUS_CODE = ("CASE status " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STATUSES))
                + f" ELSE {len(STATUSES)} END")
_TERMINAL_CODES = tuple(STATUSES.index(s) for s in TERMINAL)
_STATUS_OF = "[" + ", ".join(f"'{s}'" for s in STATUSES) + "]"

STATUS_LISTS_SQL = f"""
WITH gathered AS (
    SELECT session_id, list(at_ms * 8 + {_STATUS_CODE}) AS ev,
           min(at_ms) FILTER (WHERE status IN {TERMINAL}) AS terminal_ms,
           bool_or(status NOT IN {STATUSES}) AS odd
    FROM status_events WHERE thread_id IS NULL AND at_ms <= $as_of
    GROUP BY session_id
), increasing AS (  -- events usually arrive in order: then there is nothing to sort and no tie
    SELECT *, coalesce(list_bool_and(list_transform(ev[2:], lambda e, i: e >> 3 > ev[i] >> 3)),
                       true) AS increasing
    FROM gathered
), sorted AS (
    SELECT session_id, terminal_ms, odd, increasing,
           CASE WHEN increasing THEN ev ELSE list_sort(ev) END AS ev
    FROM increasing
)
SELECT session_id,
       -- (nearly always the terminal event is the last one: nothing to cut)
       CASE WHEN terminal_ms IS NULL OR ev[-1] >> 3 = terminal_ms THEN ev
            ELSE list_filter(ev, lambda e: e >> 3 <= terminal_ms) END AS ev,
       CASE WHEN increasing THEN false ELSE coalesce(list_bool_or(
           list_transform(ev[2:], lambda e, i: e >> 3 = ev[i] >> 3)), false) END AS tied,
       odd
FROM sorted
"""


@dataclass(frozen=True)
class StatusLists:
    """A temp table of STATUS_LISTS_SQL's rows, and whether the status events they were
    gathered from have thread-only sessions (has_thread_only_sessions: the lists leave them
    out, the exact rules take them)."""

    table: str
    thread_only: bool


def gather_status_lists(con: duckdb.DuckDBPyConnection, as_of_ms: int,
                        table: str) -> StatusLists:
    """Materialise STATUS_LISTS_SQL as of `as_of_ms` into temp table `table`."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {STATUS_LISTS_SQL}",
                {"as_of": as_of_ms})
    return StatusLists(table, has_thread_only_sessions(con))


# The merged intervals of the lists' sessions that are neither tied nor odd: repeats are
# dropped, and each remaining event starts an interval ending at the next one (the others, and
# thread-only sessions, are left to INTERVALS_SQL).
_GATHERED_INTERVALS = f"""
SELECT session_id, status, start_ms, end_ms, end_ms - start_ms AS duration_ms, provisional
FROM (
    SELECT session_id, {_STATUS_OF}[(e & 7) + 1] AS status, e >> 3 AS start_ms,
           CASE WHEN nx IS NOT NULL THEN nx >> 3 WHEN e & 7 IN {_TERMINAL_CODES} THEN e >> 3
                ELSE $as_of END AS end_ms,
           nx IS NULL AND e & 7 NOT IN {_TERMINAL_CODES} AS provisional
    FROM (SELECT session_id, unnest(changes) AS e, unnest(changes[2:] || [NULL]) AS nx
          FROM (SELECT session_id, list_filter(ev, lambda e, i: i = 1 OR e & 7 <> ev[i - 1] & 7)
                           AS changes
                FROM {{lists}} WHERE NOT tied AND NOT odd)))
"""


def build_intervals(
    con: duckdb.DuckDBPyConnection, as_of_ms: int, table: str = "intervals"
) -> str:
    """Materialise the intervals as of `as_of_ms` into temp table `table`; returns its name.

    Columns: session_id, status, start_ms, end_ms, duration_ms, provisional.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {INTERVALS_SQL}", {"as_of": as_of_ms})
    return table


def gather_intervals(con: duckdb.DuckDBPyConnection, as_of_ms: int,
                     table: str = "intervals", lists: StatusLists | None = None) -> str:
    """`build_intervals`' rows, from each session's events gathered rather than from a sort of
    all of them (STATUS_LISTS_SQL; `lists`: those already gathered as of `as_of_ms` from the
    same status events); returns `table`."""
    params = {"as_of": as_of_ms}
    source = lists or gather_status_lists(con, as_of_ms, f"{table}_lists")
    sql = _GATHERED_INTERVALS.format(lists=source.table)
    exact = f"SELECT session_id FROM {source.table} WHERE tied OR odd"
    if source.thread_only or con.execute(f"SELECT count(*) FROM ({exact})").fetchall()[0][0]:
        sql += f" UNION ALL SELECT * FROM ({_merged_sql(exact, source.thread_only)})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}", params)
    if lists is None:
        con.execute(f"DROP TABLE {source.table}")
    return table


def intervals(con: duckdb.DuckDBPyConnection, as_of_ms: int) -> duckdb.DuckDBPyRelation:
    """The intervals as a relation (not materialised), for ad-hoc queries and tests."""
    return con.sql(INTERVALS_SQL, params={"as_of": as_of_ms})


def late_status_events(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """Session-level status events that arrived for a session after it ended (not billed)."""
    return con.sql(f"""
        WITH ends AS (
            SELECT session_id, min(at_ms) AS terminal_ms FROM status_events
            WHERE thread_id IS NULL AND status IN {TERMINAL} GROUP BY session_id
        )
        SELECT s.session_id, s.event_id, s.status, s.at_ms, e.terminal_ms
        FROM status_events s JOIN ends e USING (session_id)
        WHERE s.thread_id IS NULL AND (s.at_ms > e.terminal_ms
              OR (s.at_ms = e.terminal_ms AND s.status NOT IN {TERMINAL}))
        ORDER BY s.session_id, s.at_ms
    """)


# Billing pieces: the rules of INTERVALS_SQL in one sort of the status events, for rating.
# Repeats are not merged (a run of `running` rows sums to the merged interval), which saves
# the second window. Rows are ordered by processed_at alone, exact unless a session has two
# events in one millisecond: such sessions, flagged in the same pass, are recomputed in
# (processed_at, event id) order. Events after a session's terminal instant are dropped
# afterwards; the row before them ends at that instant either way, and terminal rows last 0 ms.
_NO_THREADS = """
    derived AS (SELECT NULL::VARCHAR AS session_id, NULL::VARCHAR AS status,
                       NULL::BIGINT AS at_ms, NULL::VARCHAR AS event_id WHERE false),"""

_ENDS = f"""
    ends AS (  -- each session's terminal instant
        SELECT session_id, min(at_ms) AS terminal_ms FROM status_events
        WHERE thread_id IS NULL AND at_ms <= $as_of AND status IN {TERMINAL}
        GROUP BY session_id
    )"""

# Rows (session_id, status, at_ms, next_ms) of relation {rows} as pieces; what follows a
# session's terminal instant is dropped, and terminal rows last 0 ms.
_AS_PIECES = f"""
SELECT p.session_id, p.status, p.at_ms AS start_ms,
       CASE WHEN p.status IN {TERMINAL} THEN p.at_ms ELSE coalesce(p.next_ms, $as_of) END
           AS end_ms,
       CASE WHEN p.status IN {TERMINAL} THEN p.at_ms ELSE coalesce(p.next_ms, $as_of) END
           - p.at_ms AS duration_ms,
       p.next_ms IS NULL AND p.status NOT IN {TERMINAL} AS provisional
FROM {{rows}} p LEFT JOIN ends e USING (session_id)
WHERE e.terminal_ms IS NULL OR p.at_ms < e.terminal_ms
   OR (p.at_ms = e.terminal_ms AND p.status IN {TERMINAL})
"""

# Rows in (processed_at, event id) order of the session-level events of the sessions listed by
# query {sessions}, and of every thread-only session (CTE `derived`).
_EXACT_ROWS = """
    exact AS (
        SELECT session_id, status, at_ms,
               lead(at_ms) OVER (PARTITION BY session_id ORDER BY at_ms, event_id) AS next_ms
        FROM (SELECT session_id, status, at_ms, event_id FROM status_events
              WHERE thread_id IS NULL AND at_ms <= $as_of AND session_id IN ({sessions})
              UNION ALL SELECT session_id, status, at_ms, event_id FROM derived)
    )"""


def pieces_sql(has_threads: bool, running_only: bool = False) -> str:
    """SQL (parameter `$as_of`) of the billing pieces: session_id, status, start_ms, end_ms,
    duration_ms, provisional. `running_only` keeps only what runtime is billed on."""
    keep = "status = 'running'" if running_only else "true"
    exact = _EXACT_ROWS.format(sessions="SELECT session_id FROM tied_sessions")
    return f"""
WITH {_THREAD_DERIVED if has_threads else _NO_THREADS}{_ENDS}, fast AS (
        SELECT *, next_ms = at_ms AS tied FROM (
            SELECT session_id, status, at_ms,
                   lead(at_ms) OVER (PARTITION BY session_id ORDER BY at_ms) AS next_ms
            FROM status_events WHERE thread_id IS NULL AND at_ms <= $as_of
        ) WHERE {keep} OR next_ms = at_ms
    ), tied_sessions AS (
        SELECT DISTINCT session_id FROM fast WHERE tied
    ),{exact}, pieces AS (
        SELECT session_id, status, at_ms, next_ms FROM fast
        WHERE {keep} AND session_id NOT IN (SELECT session_id FROM tied_sessions)
        UNION ALL SELECT session_id, status, at_ms, next_ms FROM exact WHERE {keep}
    )
{_AS_PIECES.format(rows="pieces")}"""


def exact_pieces_sql(sessions: str, has_threads: bool) -> str:
    """SQL (parameter `$as_of`) of the billing pieces, in (processed_at, event id) order, of
    the sessions listed by query `sessions` and of every thread-only session: what rating's
    one-sort pass leaves to this slower one."""
    derived = _THREAD_DERIVED if has_threads else _NO_THREADS
    return f"""
WITH {derived}{_ENDS},{_EXACT_ROWS.format(sessions=sessions)}
{_AS_PIECES.format(rows="exact")}"""


def open_stretch_sql(sessions: str, has_threads: bool) -> str:
    """SQL (parameter `$as_of`): for each session listed by query `sessions` that is running at
    `as_of`, the start of that last running stretch (what the merged intervals would show as
    its provisional interval): the first running event after its last other one, in
    (processed_at, event id) order."""
    derived = _THREAD_DERIVED if has_threads else _NO_THREADS
    return f"""
WITH {derived}
    events AS (
        SELECT session_id, status, at_ms, event_id FROM status_events
        WHERE thread_id IS NULL AND at_ms <= $as_of AND session_id IN ({sessions})
        UNION ALL
        SELECT session_id, status, at_ms, event_id FROM derived
        WHERE session_id IN ({sessions})
    ), last_other AS (  -- each session's last event that is not `running`, in that order
        SELECT session_id, max({{'at_ms': at_ms, 'event_id': event_id}}) AS k FROM events
        WHERE status <> 'running' GROUP BY session_id
    )
SELECT e.session_id, min(e.at_ms) AS start_ms
FROM events e LEFT JOIN last_other o USING (session_id)
WHERE e.status = 'running'
  AND (o.k IS NULL OR {{'at_ms': e.at_ms, 'event_id': e.event_id}} > o.k)
GROUP BY e.session_id
"""


def has_thread_only_sessions(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether some session has thread-level status events and no session-level one: its
    status is derived from its threads' (_THREAD_DERIVED, which yields nothing otherwise, so
    the queries leave it out then). Multi-agent sessions with session-level events too are
    billed from those."""
    return con.execute("SELECT count(*) FROM (SELECT session_id FROM status_events "
                       "GROUP BY session_id HAVING count(*) FILTER (thread_id IS NULL) = 0 "
                       "LIMIT 1)").fetchall()[0][0] > 0


def build_pieces(con: duckdb.DuckDBPyConnection, as_of_ms: int, table: str = "intervals") -> str:
    """Materialise billing pieces as of `as_of_ms` into temp table `table`; returns its name.

    Same columns as `build_intervals`, and the same running milliseconds per session and per
    day, but consecutive rows of one status are not merged (billing sums them; displays use
    `build_intervals`). One sort of the status events instead of two.
    """
    sql = pieces_sql(has_thread_only_sessions(con))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}", {"as_of": as_of_ms})
    return table


SPLIT_GRAINS = {"day": "1 DAY", "month": "1 MONTH"}


def split_sql(source: str, grain: str) -> str:
    """SQL splitting intervals of relation `source` at UTC `grain` boundaries.

    Each piece keeps every column of the source, with start_ms/end_ms/duration_ms clipped to
    its period and a `period_start_ms` column. Pieces sum exactly to the original durations.
    """
    step = SPLIT_GRAINS[grain]
    return f"""
    WITH pieces AS (
        SELECT *, epoch_ms(unnest(range(
                    date_trunc('{grain}', make_timestamp(start_ms * 1000)),
                    make_timestamp(end_ms * 1000), INTERVAL {step}))) AS period_start_ms
        FROM {source} WHERE end_ms > start_ms
    )
    SELECT * REPLACE (
            greatest(start_ms, period_start_ms) AS start_ms,
            least(end_ms, epoch_ms(make_timestamp(period_start_ms * 1000) + INTERVAL {step}))
                AS end_ms,
            least(end_ms, epoch_ms(make_timestamp(period_start_ms * 1000) + INTERVAL {step}))
                - greatest(start_ms, period_start_ms) AS duration_ms)
    FROM pieces
    """


RUNNING_BY_SESSION_SQL = f"""
SELECT session_id,
       sum(duration_ms) FILTER (WHERE status = 'running')::BIGINT AS running_ms,
       sum(duration_ms) FILTER (WHERE status = 'idle')::BIGINT AS idle_ms,
       sum(duration_ms) FILTER (WHERE status = 'rescheduling')::BIGINT AS rescheduling_ms,
       bool_or(provisional) AS provisional
FROM ({INTERVALS_SQL}) GROUP BY session_id
"""


def running_ms_by_session(
    con: duckdb.DuckDBPyConnection, as_of_ms: int
) -> duckdb.DuckDBPyRelation:
    """Per session: running, idle and rescheduling milliseconds as of `as_of_ms`."""
    return con.sql(RUNNING_BY_SESSION_SQL, params={"as_of": as_of_ms})


def active_time_check(con: duckdb.DuckDBPyConnection, as_of_ms: int) -> duckdb.DuckDBPyRelation:
    """Our running time vs the API's `active_seconds`, at each session's last usage snapshot.

    The snapshot is emitted just before the session goes idle, so the running time up to the
    snapshot instant is what it reports. A difference is shown, never hidden.
    """
    return con.sql(f"""
        WITH last_snap AS (
            SELECT session_id, at_ms, active_ms FROM usage_snapshots
            WHERE at_ms <= $as_of AND active_ms IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY session_id
                                       ORDER BY at_ms DESC, event_id DESC) = 1
        ), iv AS ({INTERVALS_SQL}), metered AS (
            SELECT s.session_id, s.at_ms AS snapshot_ms, s.active_ms AS api_active_ms,
                   coalesce(sum(least(iv.end_ms, s.at_ms) - iv.start_ms)
                            FILTER (WHERE iv.status = 'running'), 0)::BIGINT
                       AS metered_running_ms
            FROM last_snap s
            LEFT JOIN iv ON iv.session_id = s.session_id AND iv.start_ms < s.at_ms
            GROUP BY s.session_id, s.at_ms, s.active_ms
        )
        SELECT *, metered_running_ms - api_active_ms AS difference_ms FROM metered
    """, params={"as_of": as_of_ms})


# Sessions as of $as_of: those that existed then (created, or first seen in events, at or
# before it), with the status they had then and their time up to then, both from the same
# intervals (INTERVALS_SQL's rules: (time, event id) order, terminal is terminal, thread-only
# sessions by their threads). A session's last interval is its terminal one, else the one
# still open (provisional): exactly one of the two. A session without transitions by then has
# its record's status if the record was updated by then, else idle (how a session starts).
_SESSIONS_AS_OF = f"""
WITH born AS (
    SELECT session_id, min(at_ms) AS born_ms FROM (
        SELECT session_id, created_ms AS at_ms FROM sessions
        UNION ALL SELECT session_id, min(at_ms) FROM events GROUP BY session_id)
    GROUP BY session_id HAVING min(at_ms) <= $as_of
), spent AS (
    SELECT session_id,
           coalesce(any_value(status) FILTER (WHERE status IN {TERMINAL}),
                    any_value(status) FILTER (WHERE provisional)) AS status,
           sum(duration_ms) FILTER (WHERE status = 'running')::BIGINT AS running_ms,
           sum(duration_ms) FILTER (WHERE status = 'idle')::BIGINT AS idle_ms,
           bool_or(provisional) AS provisional
    FROM ({INTERVALS_SQL}) GROUP BY session_id
)
SELECT b.session_id, s.metadata->>'$.team' AS team, s.metadata->>'$.project' AS project,
       s.model_id AS model,
       coalesce(r.status, CASE WHEN s.updated_ms <= $as_of THEN s.status END, 'idle') AS status,
       coalesce(r.running_ms, 0) AS running_ms, coalesce(r.idle_ms, 0) AS idle_ms,
       coalesce(r.provisional, false) AS provisional
FROM born b
LEFT JOIN sessions s USING (session_id)
LEFT JOIN spent r USING (session_id)
ORDER BY b.session_id
"""


@dataclass(frozen=True)
class SessionAsOf:
    """A session as it stood at an instant: its status then, its time up to then."""

    session_id: str
    team: str | None
    project: str | None
    model: str | None
    status: str
    running_ms: int
    idle_ms: int
    provisional: bool  # its last interval was still open at the instant


def sessions_as_of(con: duckdb.DuckDBPyConnection, as_of_ms: int) -> list[SessionAsOf]:
    """Every session that existed at `as_of_ms`, as it stood then, by session id."""
    rows = con.execute(_SESSIONS_AS_OF, {"as_of": as_of_ms}).fetchall()
    return [SessionAsOf(sid, team, project, model, status, int(run), int(idle), bool(prov))
            for sid, team, project, model, status, run, idle, prov in rows]


# Time by month: what the runtime-utilisation view shows, kept by the ledger so that a page
# sums stored rows instead of deriving the intervals of a month's sessions on every read.
# A session's intervals that have ended (not provisional) are cut at UTC month starts and
# summed per session x month; its provisional interval (if any) is kept as its status and
# start, so the as-of only clips it at read time and moving the as-of changes no stored row.
# An idle piece is *parked* in its month when no running interval starts from its start to
# the month's end (the session ran no more in that month): what the view calls idle after the
# last run, as opposed to idle between runs. Running pieces count as spans, and each started
# hour of a span in the month as an hour (what per-started-hour billing would charge).
_MONTH_OF = "date_trunc('month', make_timestamp({ms} * 1000))"

SESSION_MONTHS_SQL = f"""
WITH closed AS (
    SELECT *, start_ms AS from_ms,
           {_MONTH_OF.format(ms="start_ms")} + INTERVAL 1 MONTH AS month_end
    FROM {{intervals}} WHERE NOT provisional AND end_ms > start_ms
), inside AS (  -- (nearly all intervals lie inside one month: only the others are cut)
    SELECT * EXCLUDE (month_end), epoch_ms(month_end - INTERVAL 1 MONTH) AS period_start_ms
    FROM closed WHERE end_ms <= epoch_ms(month_end)
), crossing AS ({split_sql(
    "(SELECT * EXCLUDE (month_end) FROM closed WHERE end_ms > epoch_ms(month_end))", "month")}
), cut AS (
    SELECT * FROM inside UNION ALL SELECT * FROM crossing
), runs AS (  -- a session's last running start in each month it starts one in (the open
              -- interval's and 0 ms ones included)
    SELECT session_id, epoch_ms({_MONTH_OF.format(ms="start_ms")}) AS month_start_ms,
           max(start_ms) AS run_ms
    FROM {{intervals}} WHERE status = 'running' GROUP BY ALL
), last_run AS (  -- per session and month with idle time: its last running start before the
                  -- month's end
    SELECT i.session_id, i.period_start_ms, max(r.run_ms) AS run_ms
    FROM (SELECT DISTINCT session_id, period_start_ms FROM cut WHERE status = 'idle') i
    JOIN runs r ON r.session_id = i.session_id AND r.month_start_ms <= i.period_start_ms
    GROUP BY ALL
), pieces AS (  -- an idle piece is parked when no run starts from its interval's start on
    SELECT c.*, c.status = 'idle' AND coalesce(l.run_ms < c.from_ms, true) AS parked
    FROM cut c LEFT JOIN last_run l USING (session_id, period_start_ms)
)
SELECT session_id, period_start_ms AS month_start_ms,
       coalesce(sum(duration_ms) FILTER (WHERE status = 'running'), 0)::BIGINT AS running_ms,
       coalesce(sum(duration_ms) FILTER (WHERE status = 'idle' AND NOT parked), 0)::BIGINT
           AS idle_between_ms,
       coalesce(sum(duration_ms) FILTER (WHERE parked), 0)::BIGINT AS idle_parked_ms,
       coalesce(sum(duration_ms) FILTER (WHERE status = 'rescheduling'), 0)::BIGINT
           AS rescheduling_ms,
       count(*) FILTER (WHERE status = 'running')::BIGINT AS spans,
       coalesce(sum((duration_ms + 3599999) // 3600000) FILTER (WHERE status = 'running'),
                0)::BIGINT AS started_hours,
       bool_or(parked) AS parked
FROM pieces GROUP BY ALL
"""

# A session's open interval, clipped to the as-of when read. `tied_run`: a 0 ms running
# interval starts at the same instant (running and idle in one millisecond): an idle tail
# then counts as idle between runs, as SESSION_MONTHS_SQL counts a closed one (peers).
SESSION_TAILS_SQL = """
SELECT t.session_id, t.status, t.start_ms AS since_ms, z.session_id IS NOT NULL AS tied_run
FROM {intervals} t
LEFT JOIN (SELECT DISTINCT session_id, start_ms FROM {intervals}
           WHERE status = 'running' AND duration_ms = 0) z
       ON z.session_id = t.session_id AND z.start_ms = t.start_ms
WHERE t.provisional
"""


def build_session_time(con: duckdb.DuckDBPyConnection, as_of_ms: int,
                       prefix: str = "time", lists: StatusLists | None = None
                       ) -> tuple[str, str]:
    """Materialise, from `status_events` as of `as_of_ms` (and `lists`, their status lists
    if already gathered), temp tables `{prefix}_months` (SESSION_MONTHS_SQL's columns) and
    `{prefix}_tails` (session_id, status, since_ms); returns their names."""
    intervals = gather_intervals(con, as_of_ms, f"{prefix}_intervals", lists)
    months, tails = f"{prefix}_months", f"{prefix}_tails"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {months} AS "
                + SESSION_MONTHS_SQL.format(intervals=intervals))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tails} AS "
                + SESSION_TAILS_SQL.format(intervals=intervals))
    con.execute(f"DROP TABLE {intervals}")
    return months, tails


@dataclass(frozen=True)
class MonthTime:
    """Time of a set of sessions in one month (milliseconds), as the utilisation view adds it."""

    running_ms: int
    idle_between_ms: int
    idle_parked_ms: int
    rescheduling_ms: int
    spans: int
    started_hours: int
    parked_sessions: int


# The columns of a session's time in one month as one row: its stored row of the month (closed
# intervals: NULL when it has none) and its open interval (`tail_*`, NULL when it has none).
TIME_COLUMNS = ("running_ms", "idle_between_ms", "idle_parked_ms", "rescheduling_ms", "spans",
                "started_hours", "parked", "tail_status", "tail_since_ms", "tail_tied_run")

# The time of such rows in month [$start, $end) as of $as_of: the stored sums, plus each open
# interval clipped to the month and the as-of. A session is parked when its month's row says
# so or its open interval is idle after its last run.
_PERIOD_TIME = """
WITH clipped AS (
    SELECT *, CASE WHEN tail_since_ms < least($as_of, $end) AND least($as_of, $end) > $start
                   THEN least($as_of, $end) - greatest(tail_since_ms, $start) END AS tail_ms
    FROM ({rows})
)
SELECT coalesce(sum(running_ms), 0)
         + coalesce(sum(tail_ms) FILTER (WHERE tail_status = 'running'), 0),
       coalesce(sum(idle_between_ms), 0)
         + coalesce(sum(tail_ms) FILTER (WHERE tail_status = 'idle' AND tail_tied_run), 0),
       coalesce(sum(idle_parked_ms), 0)
         + coalesce(sum(tail_ms) FILTER (WHERE tail_status = 'idle' AND NOT tail_tied_run), 0),
       coalesce(sum(rescheduling_ms), 0)
         + coalesce(sum(tail_ms) FILTER (WHERE tail_status = 'rescheduling'), 0),
       coalesce(sum(spans), 0) + count(tail_ms) FILTER (WHERE tail_status = 'running'),
       coalesce(sum(started_hours), 0) + coalesce(sum((tail_ms + 3599999) // 3600000)
                                                  FILTER (WHERE tail_status = 'running'), 0),
       count(*) FILTER (WHERE parked OR (tail_ms IS NOT NULL AND tail_status = 'idle'
                                         AND NOT tail_tied_run))
FROM clipped
"""


def period_time(con: duckdb.DuckDBPyConnection, rows: str, start_ms: int, end_ms: int,
                as_of_ms: int) -> MonthTime:
    """The time in month [`start_ms`, `end_ms`) as of `as_of_ms` of query `rows`: a row per
    session with TIME_COLUMNS (as the ledger's `session_periods` keeps them)."""
    row = con.execute(_PERIOD_TIME.format(rows=rows),
                      {"as_of": as_of_ms, "start": start_ms, "end": end_ms}).fetchall()[0]
    return MonthTime(*(int(v) for v in row))


def time_rows_sql(months: str, tails: str, sessions: str, month_start: str) -> str:
    """SQL: a row per session of query `sessions` (a column session_id, each session once)
    with TIME_COLUMNS, from time-by-month tables `months` and `tails` for the month starting
    at SQL expression `month_start` (epoch ms)."""
    return f"""
        SELECT s.*, m.running_ms, m.idle_between_ms, m.idle_parked_ms, m.rescheduling_ms,
               m.spans, m.started_hours, m.parked, t.status AS tail_status,
               t.since_ms AS tail_since_ms, t.tied_run AS tail_tied_run
        FROM ({sessions}) s
        LEFT JOIN {months} m ON m.session_id = s.session_id AND m.month_start_ms = {month_start}
        LEFT JOIN {tails} t ON t.session_id = s.session_id"""


def month_time(con: duckdb.DuckDBPyConnection, months: str, tails: str, sessions: str,
               start_ms: int, end_ms: int, as_of_ms: int) -> MonthTime:
    """The time in month [`start_ms`, `end_ms`) as of `as_of_ms` of the sessions listed by
    query `sessions` (a column session_id, each session once): their stored rows of that
    month, plus their provisional intervals clipped to the month and the as-of."""
    return period_time(con, time_rows_sql(months, tails, f"SELECT session_id FROM ({sessions})",
                                          "$start"), start_ms, end_ms, as_of_ms)
