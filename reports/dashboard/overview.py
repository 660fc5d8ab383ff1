"""Overview numbers: month-to-date spend, spend per day by meter, top spenders, utilisation.

Money follows the invoice's rule (reports.invoice): a line is the exact sum (in money units,
pricing.money) of one meter x model x token class x tier, rounded once half-even to the cent,
and a total is the sum of its rounded lines, so the month-to-date total here equals
`agenttally invoice` for the same period.
Chart values are rounded to the cent per bar segment, for display only.

The period's charges are scanned twice per batch, into small temp tables (`stage`): lines per
day x meter x model x token class x tier (this month and last), and lines per tags x agent x
meter x model x token class x tier; one row per session (its spend and its time that month)
comes from the ledger's `session_periods` (or a third scan, when models are filtered, and the
time from the ledger's time by month). Every number of the page is then
a query over those (the top sessions' own lines excepted: they are read again, for ten
sessions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import duckdb
import pandas as pd

from meter.intervals import TIME_COLUMNS, build_session_time, month_time, period_time
from meter.store import current_catalog
from meter.vocabulary import Period
from pricing.ledger import session_periods_stored, session_time_stored
from pricing.money import usd_of_units
from reports.dashboard.filters import (
    AGENT_NAMES,
    Filters,
    filtered_charges,
    period_bounds,
    team_sql,
)

__all__ = ["MonthToDate", "Utilisation", "daily_by_meter", "month_to_date", "previous_period",
           "stage", "top_spenders", "utilisation"]


def previous_period(period: str) -> str:
    return str(Period.parse(period).previous())


def stage(con: duckdb.DuckDBPyConnection, f: Filters) -> None:
    """Aggregate the filtered charges of `f.period` (and the month before) into temp tables.

    `dash_lines`: period, day, meter, model, token_class, tier, exact, quantity, provisional;
    for this period only, `dash_sessions` (session_id, agent_id, tags, exact; from the
    ledger's `session_periods` unless models are filtered, with the sessions' time that month
    too) and `dash_groups`
    (tags, agent_id, meter, model, token_class, tier, exact); `exact` in money units.
    Idempotent per filter: a second call with the same filters on the same connection does
    nothing.
    """
    if not f.period:
        raise ValueError("the overview needs a period")
    key = f.key()
    done = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary "
                       "AND table_name = 'dash_stage_key'").fetchall()[0][0]
    if done and con.execute("SELECT any_value(k) FROM dash_stage_key").fetchall()[0][0] == key:
        return
    sub, params = filtered_charges(f, periods=(f.period, previous_period(f.period)))
    # A line's period is its day's month: carried, not grouped by.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dash_lines AS
        SELECT any_value(period) AS period, day, meter, model, token_class, tier,
               sum(amount_units) AS exact, sum(quantity)::BIGINT AS quantity,
               bool_or(provisional) AS provisional
        FROM {sub} GROUP BY day, meter, model, token_class, tier
    """, params)
    sub, params = filtered_charges(f)
    with_time = not f.models and session_periods_stored(con)
    if with_time:
        # the ledger's row per session and period: its spend and its time, nothing to group
        rows, rows_params = filtered_charges(f, source="session_periods")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE dash_sessions AS
            SELECT session_id, agent_id, tags, amount_units AS exact, {", ".join(TIME_COLUMNS)}
            FROM {rows}
        """, rows_params)
    else:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE dash_sessions AS
            SELECT session_id, agent_id, tags, sum(amount_units) AS exact FROM {sub}
            GROUP BY ALL
        """, params)
    # Team and agent totals by invoice line: tags repeat across lines, so grouping by the
    # JSON value is cheap and the JSON is read once per distinct value.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dash_groups AS
        SELECT tags, agent_id, meter, model, token_class, tier, sum(amount_units) AS exact
        FROM {sub} GROUP BY ALL
    """, params)
    con.execute("CREATE OR REPLACE TEMP TABLE dash_stage_key AS SELECT $k AS k, $t AS with_time",
                {"k": key, "t": with_time})


@dataclass(frozen=True)
class MonthToDate:
    period: str
    total: Decimal  # sum of the rounded invoice lines
    runtime: Decimal
    tokens: Decimal
    web_search: Decimal
    sessions: int
    running_ms: int
    tokens_count: int
    provisional: bool
    through: date | None  # the day the comparison runs to (as-of day, or month end)
    previous_total: Decimal | None  # previous month, up to the same day of the month
    previous_period: str


# Invoice lines (meter x model x token class x tier) of one period up to a day, each rounded
# once.
_LINES = """
SELECT meter, units_cents(sum(exact)) AS amount
FROM dash_lines WHERE period = $period AND day <= $through
GROUP BY meter, model, token_class, tier
"""


def month_to_date(con: duckdb.DuckDBPyConnection, f: Filters,
                  as_of_ms: int | None = None) -> MonthToDate:
    """Spend of `f.period` so far, by meter, and last month's up to the same day of the
    month: the as-of day when the period is the as-of month, else the period's last day."""
    stage(con, f)
    period = f.period
    assert period, "stage() refuses a filter without a period"
    start, end = period_bounds(period)
    last = con.execute("SELECT max(day) FROM dash_lines WHERE period = $p",
                       {"p": period}).fetchall()[0][0]
    through = None if last is None else end - timedelta(days=1)
    if last is not None and as_of_ms is not None:
        as_of = datetime.fromtimestamp(as_of_ms / 1000, UTC).date()
        if start <= as_of < end:
            through = max(as_of, last)
    lines = {"period": period, "through": through or start}
    total, runtime, tokens, search = con.execute(f"""
        SELECT coalesce(sum(amount), 0), coalesce(sum(amount) FILTER (WHERE meter = 'runtime'), 0),
               coalesce(sum(amount) FILTER (WHERE meter = 'tokens'), 0),
               coalesce(sum(amount) FILTER (WHERE meter = 'web_search'), 0)
        FROM ({_LINES})
    """, lines).fetchall()[0]
    sessions = con.execute("SELECT count(*) FROM dash_sessions").fetchall()[0][0]
    running_ms, n_tokens, provisional = con.execute("""
        SELECT coalesce(sum(quantity) FILTER (WHERE meter = 'runtime'), 0),
               coalesce(sum(quantity) FILTER (WHERE meter = 'tokens'), 0),
               coalesce(bool_or(provisional), false)
        FROM dash_lines WHERE period = $p""", {"p": period}).fetchall()[0]
    prev = previous_period(period)
    previous = None
    if through is not None:
        prev_start, prev_end = period_bounds(prev)
        same_day = min(prev_start + (through - start), prev_end - timedelta(days=1))
        row = con.execute(f"SELECT count(*), sum(amount) FROM ({_LINES})",
                          {"period": prev, "through": same_day}).fetchall()[0]
        previous = Decimal(row[1]) if row[0] else None
    return MonthToDate(
        period=period, total=Decimal(total), runtime=Decimal(runtime), tokens=Decimal(tokens),
        web_search=Decimal(search), sessions=int(sessions), running_ms=int(running_ms),
        tokens_count=int(n_tokens), provisional=bool(provisional), through=through,
        previous_total=previous, previous_period=prev,
    )


def daily_by_meter(con: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Spend per day and series (Runtime, Tokens · model, Web search), cents per cell.

    Columns: day (date), series, meter, amount (float dollars rounded to the cent).
    """
    stage(con, f)
    return con.execute("""
        SELECT day, series, meter, CAST(units_cents(exact) AS DOUBLE) AS amount
        FROM (SELECT day, meter,
                     CASE meter WHEN 'runtime' THEN 'Runtime' WHEN 'web_search' THEN 'Web search'
                                ELSE 'Tokens · ' || coalesce(model, '?') END AS series,
                     sum(exact) AS exact
              FROM dash_lines WHERE period = $p GROUP BY 1, 2, 3)
        ORDER BY day, CASE meter WHEN 'runtime' THEN 0 WHEN 'tokens' THEN 1 ELSE 2 END, series
    """, {"p": f.period}).fetch_df()


# A group's amount follows the invoice's rule within the group: its lines (meter x model x
# token class x tier) each rounded once, then summed. Teams and agents come from dash_groups (the
# team's JSON read once per distinct tags value), session counts from dash_sessions (a team's
# from the sessions' tags as their lines carry them, likewise read once per distinct value).
_TOP = {
    "team": f"""
        SELECT t.key, NULL AS label, t.exact, t.cents, coalesce(n.sessions, 0) AS sessions,
               NULL AS team
        FROM (SELECT key, sum(exact) AS exact, sum(units_cents(exact)) AS cents
              FROM (SELECT {team_sql("tags")} AS key, meter, model,
                           token_class, tier, sum(exact) AS exact
                    FROM dash_groups GROUP BY ALL)
              GROUP BY key) t
        LEFT JOIN (SELECT {team_sql("tags")} AS key, sum(n)::BIGINT AS sessions
                   FROM (SELECT tags, count(*) AS n FROM dash_sessions GROUP BY tags)
                   GROUP BY key) n
        USING (key)""",
    "agent": f"""
        SELECT t.key, n.name AS label, t.exact, t.cents, coalesce(c.sessions, 0) AS sessions,
               NULL AS team
        FROM (SELECT key, sum(exact) AS exact, sum(units_cents(exact)) AS cents
              FROM (SELECT coalesce(agent_id, '(none)') AS key, meter, model, token_class,
                           tier, sum(exact) AS exact
                    FROM dash_groups GROUP BY ALL)
              GROUP BY key) t
        LEFT JOIN (SELECT coalesce(agent_id, '(none)') AS key, count(*) AS sessions
                   FROM dash_sessions GROUP BY 1) c USING (key)
        LEFT JOIN ({AGENT_NAMES}) n ON n.agent_id = t.key""",
    "session": f"""
        SELECT d.session_id AS key, NULL AS label, d.exact, l.cents, 1 AS sessions,
               {team_sql("s.metadata")} AS team
        FROM (SELECT * FROM dash_sessions ORDER BY exact DESC, session_id LIMIT $n) d
        JOIN (SELECT session_id, sum(cents) AS cents FROM (
                  SELECT session_id, units_cents(sum(amount_units)) AS cents
                  FROM {{charges}}
                  WHERE session_id IN (SELECT session_id FROM dash_sessions
                                       ORDER BY exact DESC, session_id LIMIT $n)
                  GROUP BY session_id, meter, model, token_class, tier)
              GROUP BY session_id) l USING (session_id)
        LEFT JOIN sessions s USING (session_id)""",
}


def top_spenders(con: duckdb.DuckDBPyConnection, f: Filters, by: str,
                 n: int = 10) -> pd.DataFrame:
    """The `n` largest teams, agents or sessions of the period.

    Columns: key, label (agent name, else the key), amount (the group's invoice lines, each
    rounded half-even to the cent, summed; float), share (of the filtered exact total),
    sessions, team (sessions only). Ranked by exact amount.
    """
    if by not in _TOP:
        raise ValueError(f"top_spenders: by must be one of {', '.join(_TOP)}, got {by!r}")
    stage(con, f)
    params: dict = {}
    query = _TOP[by]
    if by == "session":
        sub, params = filtered_charges(f)
        params["n"] = n
        query = query.format(charges=sub)
    return con.execute(f"""
        WITH t AS ({query}), tot AS (SELECT sum(exact) AS total FROM dash_groups)
        SELECT key, coalesce(label, key) AS label, CAST(cents AS DOUBLE) AS amount,
               CASE WHEN tot.total > 0 THEN CAST(exact / tot.total AS DOUBLE) END AS share,
               sessions, team
        FROM t CROSS JOIN tot ORDER BY exact DESC, key LIMIT {int(n)}
    """, params).fetch_df()


@dataclass(frozen=True)
class Utilisation:
    """Running and idle time of the sessions with spend in the period, and billing savings.

    `idle_between_ms` is idle time followed by more work (waiting for a user or a tool);
    `idle_parked_ms` is idle time after a session's last turn, up to the end of the period
    (or the rating's as-of), summed over the `parked_sessions` sessions that have some.
    Neither is billed. `per_hour_cost` is what the same running spans would cost billed per
    started hour (each span rounded up to whole hours, spans split at month boundaries), at
    the period's runtime rate.
    """

    running_ms: int
    idle_between_ms: int
    idle_parked_ms: int
    rescheduling_ms: int
    spans: int
    runtime_cost: Decimal  # exact, from the charges
    per_hour_cost: Decimal  # exact
    parked_sessions: int = 0

    @property
    def saved(self) -> Decimal:
        return self.per_hour_cost - self.runtime_cost


def utilisation(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int) -> Utilisation:
    """Running vs idle time in `f.period` for the sessions with spend there (as of `as_of_ms`,
    the ledger's).

    The ledger keeps each session's time by month (meter.intervals: `session_months`, and
    `session_tails` for intervals still open), so this sums the period's rows of its sessions:
    those `stage` read with the sessions from `session_periods`, else joined here. A store
    whose ledger predates them (schema < 6, opened read-only; or upgraded to 6 and
    not rated since, so they are still empty) has them derived here from the status events of
    those sessions, by the same SQL.
    """
    stage(con, f)
    month = Period.parse(f.period or "")  # (stage() has refused a filter without one)
    p0, p1 = month.start_ms, month.end_ms
    db = current_catalog(con)
    sessions = "SELECT session_id FROM dash_sessions"
    if con.execute("SELECT any_value(with_time) FROM dash_stage_key").fetchall()[0][0]:
        time = period_time(con, "SELECT * FROM dash_sessions", p0, p1, as_of_ms)
    elif session_time_stored(con):
        time = month_time(con, f"{db}.main.session_months", f"{db}.main.session_tails",
                          sessions, p0, p1, as_of_ms)
    else:
        # build_session_time reads `status_events`: a temp table of that name shadows the
        # store's on this connection, holding only the events of the period's sessions.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE status_events AS
            SELECT * FROM {db}.main.status_events
            WHERE at_ms < $p1 AND session_id IN ({sessions})
        """, {"p1": p1})
        try:
            months, tails = build_session_time(con, min(as_of_ms, p1), "dash_time")
            time = month_time(con, months, tails, sessions, p0, p1, as_of_ms)
        finally:
            con.execute("DROP TABLE IF EXISTS temp.main.status_events")
    runtime_exact, runtime_ms = con.execute(
        "SELECT coalesce(sum(exact), 0), coalesce(sum(quantity), 0) FROM dash_lines "
        "WHERE period = $p AND meter = 'runtime'", {"p": f.period}).fetchall()[0]
    runtime_exact = usd_of_units(runtime_exact)
    # The period's runtime rate per hour: what one billed millisecond cost in the charges.
    rate = runtime_exact * 3_600_000 / int(runtime_ms) if runtime_ms else Decimal(0)
    return Utilisation(
        running_ms=time.running_ms, idle_between_ms=time.idle_between_ms,
        idle_parked_ms=time.idle_parked_ms, rescheduling_ms=time.rescheduling_ms,
        spans=time.spans, runtime_cost=runtime_exact,
        per_hour_cost=rate * time.started_hours, parked_sessions=time.parked_sessions,
    )
