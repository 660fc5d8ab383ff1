"""Dashboard data layer on a large store: every page's batch, timed (target < 1 s each).

    python -m bench.bench_dashboard                      # 1M sessions, 60 days
    python -m bench.bench_dashboard --quick              # 100K sessions
    python -m bench.bench_dashboard --db bench/out/dash.duckdb --sessions 1000000

The store is synthesised in SQL: sessions, agents, status events (1-4 running spans each),
model requests, usage snapshots and the rated `charges` lines `agenttally rate` would write
(runtime, five token classes, web search for a third), about 6 charge lines and 11 events per
session. The simulator's large profile emits ~100 events per session, so 1M sessions would be
~100M events and many minutes to generate and rate; the dashboard never reads the event
tables wholesale (one session's events; utilisation reads the time by month the ledger keeps,
built here as a full rating builds it), so the synthetic store has the same shape where it
matters. A store given by --db is reused.

Each batch runs as the app runs it: a fresh read-only connection, queries, close. The first
run is cold (DuckDB's buffers are empty; the OS cache is warm), `best` the fastest of
--repeat. A batch's result is checked against an independent computation (the Overview's
month-to-date total against `reports.invoice`), and a wrong result exits 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from meter.intervals import build_session_time
from meter.store import connect, session_starts_upsert
from pricing.ledger import CHARGES_ORDER, session_periods_sql

TEAMS = ["platform", "search", "growth", "support", "data", "security", "mobile", "research"]
MODELS = ["claude-opus-5", "claude-sonnet-5", "claude-haiku-5-5", "claude-opus-4-8",
          "claude-sonnet-4-6"]
# USD per million tokens: input, output, cache_write_5m, cache_write_1h, cache_read
RATES = {
    "claude-opus-5": ("5", "25", "6.25", "10", "0.50"),
    "claude-sonnet-5": ("2", "10", "2.50", "4", "0.20"),
    "claude-haiku-5-5": ("0.10", "0.50", "0.125", "0.20", "0.01"),
    "claude-opus-4-8": ("5", "25", "6.25", "10", "0.50"),
    "claude-sonnet-4-6": ("3", "15", "3.75", "6", "0.30"),
}
CLASSES = ["input", "output", "cache_write_5m", "cache_write_1h", "cache_read"]


def _day0(days: int, end: datetime | None) -> int:
    end = end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((end - timedelta(days=days)).timestamp() * 1000)


def synthesize(path: Path, sessions: int, days: int = 60, end: datetime | None = None) -> None:
    """A store of `sessions` sessions over `days` days, written set-wise in SQL.

    Each session: 1-4 running spans with idle gaps, 1-3 model requests per running span, one
    usage snapshot, and its rated charge lines (runtime, five token classes of its agent's
    model, web search for a third of them), with amounts computed like the engine's.
    """
    start_ms = _day0(days, end)
    con = connect(path)
    try:
        con.execute("SET enable_progress_bar = false")
        rates = ", ".join(
            f"('{m}', '{c}', {r[i]}::DECIMAL(38,12))" for m, r in RATES.items()
            for i, c in enumerate(CLASSES))
        con.execute(f"CREATE TEMP TABLE rates(model, token_class, usd_per_mtok) AS "
                    f"VALUES {rates}")
        con.execute("BEGIN TRANSACTION")
        con.execute(f"""
            INSERT INTO agents
            SELECT 'agent_' || lpad(i::VARCHAR, 3, '0'), 1, 'agent-' || i,
                   ({MODELS!r})[1 + i % {len(MODELS)}], 'standard', 'global',
                   json_object('team', ({TEAMS!r})[1 + i % {len(TEAMS)}]), $start, 0
            FROM range(40) t(i)
        """, {"start": start_ms})
        con.execute("""
            INSERT INTO environments
            SELECT 'env_' || i, 'env-' || i, '{}'::JSON, $start, 0 FROM range(6) t(i)
        """, {"start": start_ms})
        # Arrivals grow ~2%/week with a weekly cycle: a session's start is a quantile of a
        # skewed distribution over the window, plus a time of day.
        con.execute(f"""
            CREATE TEMP TABLE gen AS
            SELECT i, 'sesn_' || lpad(i::VARCHAR, 10, '0') AS session_id,
                   CAST(hash(i, 1) % 40 AS BIGINT) AS agent_no,
                   $start + CAST(sqrt((hash(i, 2) % 1000000) / 1e6) * {days} AS BIGINT)
                       * 86400000 + CAST((7 + hash(i, 3) % 12) * 3600000
                       + hash(i, 4) % 3600000 AS BIGINT) AS t0,
                   CAST(1 + hash(i, 5) % 4 AS BIGINT) AS spans
            FROM range({sessions}) t(i)
        """, {"start": start_ms})
        con.execute(f"""
            INSERT INTO sessions
            SELECT g.session_id, g.t0, g.t0, 'idle', NULL, 'env_' || g.agent_no % 6,
                   a.agent_id, 1, a.name, a.model_id, 'standard', 'global',
                   json_object('team', ({TEAMS!r})[1 + (g.agent_no + g.i % 3) % {len(TEAMS)}],
                               'project', 'proj-' || (g.agent_no + g.i % 3) % {len(TEAMS)}
                                   || '-' || g.i % 4,
                               'cost_center', 'cc-' || (100 + g.agent_no % 5)),
                   NULL, NULL, 0
            FROM gen g JOIN agents a ON a.agent_id = 'agent_' || lpad(g.agent_no::VARCHAR, 3, '0')
            ORDER BY g.t0  -- sessions in the order they were created
        """)
        # running span j: [s_j, s_j + run_j); idle after it for idle_j (idle is free).
        con.execute("""
            CREATE TEMP TABLE spans AS
            SELECT g.session_id, j,
                   g.t0 + sum(run_ms + idle_ms) OVER w - (run_ms + idle_ms) AS run_start,
                   run_ms, idle_ms
            FROM (SELECT g.*, unnest(range(g.spans::BIGINT)) AS j FROM gen g) g,
                 LATERAL (SELECT CAST(20000 + (hash(g.i, j, 6) % 900000)
                                * (1 + (hash(g.i, j, 7) % 100 = 0)::INT * 20) AS BIGINT)
                                     AS run_ms,
                                 CAST(60000 + hash(g.i, j, 8) % 1800000 AS BIGINT) AS idle_ms)
            WINDOW w AS (PARTITION BY g.session_id ORDER BY j)
        """)
        con.execute("""
            INSERT INTO status_events
            SELECT * FROM (
                SELECT session_id || '_r' || j, session_id, NULL, 'running', run_start, NULL
                FROM spans
                UNION ALL
                SELECT session_id || '_i' || j, session_id, NULL, 'idle', run_start + run_ms,
                       'end_turn' FROM spans)
            ORDER BY 5  -- events in the order they happened, as ingests append them
        """)
        con.execute("""
            INSERT INTO model_requests
            SELECT session_id || '_m' || j || '_' || k, session_id, NULL,
                   run_start + (k + 1) * run_ms // 4,
                   2000 + hash(session_id, k) % 30000, 200 + hash(session_id, k, 1) % 3000,
                   hash(session_id, k, 2) % 8000, hash(session_id, k, 3) % 60000,
                   'standard', false
            FROM spans, LATERAL unnest(range(CAST(1 + hash(session_id, j) % 3 AS BIGINT))) t(k)
            ORDER BY 4
        """)
        con.execute("""
            CREATE TEMP TABLE per_session AS
            SELECT s.session_id, max(s.run_start + s.run_ms) AS end_ms,
                   sum(s.run_ms)::BIGINT AS running_ms
            FROM spans s GROUP BY s.session_id
        """)
        con.execute("""
            CREATE TEMP TABLE toks AS
            SELECT m.session_id, sum(input_tokens)::BIGINT AS input,
                   sum(output_tokens)::BIGINT AS output,
                   sum(cache_write_tokens * 3 // 4)::BIGINT AS cache_write_5m,
                   sum(cache_write_tokens // 4)::BIGINT AS cache_write_1h,
                   sum(cache_read_tokens)::BIGINT AS cache_read,
                   CAST((hash(m.session_id) % 3 = 0)::INT * (1 + hash(m.session_id, 9) % 6)
                       AS BIGINT)
                       AS searches
            FROM model_requests m GROUP BY m.session_id
        """)
        con.execute("""
            INSERT INTO usage_snapshots
            SELECT t.session_id || '_u', t.session_id, p.end_ms - 1, t.input, t.output,
                   t.cache_read, t.cache_write_5m, t.cache_write_1h, t.searches, 0,
                   p.running_ms, NULL, 'USD'
            FROM toks t JOIN per_session p USING (session_id)
            ORDER BY 3
        """)
        con.execute("""
            INSERT INTO events
            SELECT event_id, session_id, 'session.status_' || status, at_ms, NULL, 1
                FROM status_events
            UNION ALL SELECT event_id, session_id, 'span.model_request_end', at_ms, NULL, 1
                FROM model_requests
            UNION ALL SELECT event_id, session_id, 'session.usage', at_ms, NULL, 1
                FROM usage_snapshots
            ORDER BY at_ms
        """)
        con.execute(session_starts_upsert("SELECT session_id, at_ms FROM events"))
        day = "CAST(make_timestamp(g.t0 * 1000) AS DATE)"
        con.execute(f"""
            INSERT INTO charges
            WITH base AS (
                SELECT g.session_id, {day} AS day, s.agent_id, s.environment_id,
                       s.metadata AS tags, s.model_id AS model, p.running_ms, t.*
                       EXCLUDE (session_id)
                FROM gen g JOIN sessions s USING (session_id)
                JOIN per_session p USING (session_id) JOIN toks t USING (session_id)
            )
            SELECT * FROM (
            SELECT strftime(day, '%Y-%m') AS period, day, session_id, agent_id, environment_id,
                   tags, 'runtime', NULL, NULL, 'standard', running_ms, 'ms', 0.08,
                   'USD per session-hour',
                   CAST(running_ms * 0.08 / 3600000 AS DECIMAL(38,18)),
                   'anthropic-list', '2026-08-07', false,
                   running_ms::HUGEINT * 200000000000  -- $0.08/h = 2e11 units per ms
            FROM base
            UNION ALL
            SELECT strftime(day, '%Y-%m'), day, session_id, agent_id, environment_id, tags,
                   'tokens', b.model, r.token_class, 'standard', q.quantity, 'tokens',
                   r.usd_per_mtok, 'USD per million tokens',
                   CAST(q.quantity * r.usd_per_mtok * 0.000001 AS DECIMAL(38,18)),
                   'anthropic-list', '2026-08-07', false,
                   CAST(q.quantity::HUGEINT * CAST(r.usd_per_mtok * 9000000000000 AS HUGEINT)
                        AS HUGEINT)
            FROM base b, LATERAL (SELECT unnest({CLASSES!r}) AS token_class,
                                        unnest([input, output, cache_write_5m,
                                                cache_write_1h, cache_read]) AS quantity) q
            JOIN rates r ON r.model = b.model AND r.token_class = q.token_class
            WHERE q.quantity > 0
            UNION ALL
            SELECT strftime(day, '%Y-%m'), day, session_id, agent_id, environment_id, tags,
                   'web_search', NULL, NULL, 'standard', searches, 'searches', 10,
                   'USD per 1,000 searches', CAST(searches * 0.01 AS DECIMAL(38,18)),
                   'anthropic-list', '2026-08-07', false, searches::HUGEINT * 90000000000000000
            FROM base WHERE searches > 0
            ) ORDER BY {CHARGES_ORDER}  -- as the ledger writes them
        """)
        as_of = start_ms + days * 86_400_000
        con.execute("INSERT INTO ingest_log (ingest_id, source, started_ms, finished_ms, lines, "
                    "new_events, duplicates, records, quarantined, status) "
                    "VALUES (1, 'bench-synthetic', $t, $t, $n, $n, 0,"
                    " $s, 3, 'finished')", {"t": as_of, "n": sessions * 10, "s": sessions})
        con.execute("""
            INSERT INTO quarantine
            SELECT 1, 'bench-synthetic', i, '{"type": "session.status_idle"}',
                   (['processed_at: missing', 'id: missing', 'type: unknown'])[1 + i % 3], $t
            FROM range(3) t(i)
        """, {"t": as_of})
        runs = con.execute("SELECT count(*) FROM charges").fetchall()[0][0]
        # a full ledger run's record (prints: which books; the time by month below is its)
        con.execute("INSERT INTO rating_runs (rated_ms, as_of_ms, books, charges, unrated, "
                    "kind, prints) VALUES ($t, $t, 'anthropic-list@2026-08-07', $n, 0, 'full', "
                    "'[]')",
                    {"t": as_of, "n": runs})
        # the ledger's time by month, as a full rating stores it (pricing.ledger)
        t0 = time.perf_counter()
        months, tails = build_session_time(con, as_of)
        con.execute(f"INSERT INTO session_months SELECT * FROM {months}")
        con.execute(f"INSERT INTO session_tails SELECT * FROM {tails}")
        # and its row per session and period (spend and time), as a full rating stores it
        con.execute(f"INSERT INTO session_periods {session_periods_sql('charges', months, tails)}")
        print(f"the ledger's time by month: {time.perf_counter() - t0:.1f} s")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def bench(db: Path, repeat: int = 3) -> list[tuple[str, str, float, float, str, float]]:
    """Per batch: (page, label, first run s, best run s, slowest statement, its seconds)."""
    from bench.common import TimedConnection
    from reports.dashboard.batches import BATCHES, bench_plan
    from reports.dashboard.source import read_store

    results = []
    for page, label, name, kwargs in bench_plan(db):
        times, slowest = [], ("", 0.0)
        for _ in range(repeat):
            t0 = time.perf_counter()
            with read_store(db) as con:  # as the app: open read-only, run, close
                timed = TimedConnection(con)
                BATCHES[name](timed, str(db), **kwargs)
            times.append(time.perf_counter() - t0)
            top = max(timed.timings.entries, key=lambda e: e[1], default=("", 0.0))
            if not slowest[0] or top[1] < slowest[1]:
                slowest = top
        results.append((page, label, times[0], min(times), slowest[0], slowest[1]))
    return results


def check(db: Path) -> str:
    """The Overview's month-to-date total must be the invoice's: raises if not."""
    from reports.dashboard import run
    from reports.dashboard.filters import Filters
    from reports.dashboard.source import read_store
    from reports.invoice import build_invoice

    state = run("state", db)
    period = state.periods[-1]
    mtd = run("overview", db, f=Filters(period=period))["mtd"].total
    with read_store(db) as con:
        invoice = build_invoice(con, period, as_of="bench").total
    if mtd != invoice:
        raise AssertionError(f"overview month-to-date {mtd} != invoice {invoice} ({period})")
    return f"check: {period} month-to-date ${mtd:,} equals the invoice total"


def main(argv: list[str] | None = None) -> int:
    from bench.common import load_line, machine_line, out_dir, table

    parser = argparse.ArgumentParser(prog="python -m bench.bench_dashboard",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="100K sessions")
    parser.add_argument("--db", type=Path, help="reuse (or keep) the store at this path")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sessions = 100_000 if args.quick else args.sessions

    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="agenttally-bench-", dir=out_dir())
        db = Path(tmp.name) / "dashboard.duckdb"
    try:
        print(machine_line())
        if not db.exists():
            t0 = time.perf_counter()
            synthesize(db, sessions, args.days)
            print(f"built {sessions:,} sessions over {args.days} days in "
                  f"{time.perf_counter() - t0:.0f} s: {db.stat().st_size / 1e6:,.0f} MB")
        with connect(db, read_only=True) as con:
            counts = con.execute(
                "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM charges), "
                "(SELECT count(*) FROM events), (SELECT count(*) FROM status_events)"
            ).fetchall()[0]
        print(f"store: {counts[0]:,} sessions, {counts[1]:,} charge lines, {counts[2]:,} "
              f"events ({counts[3]:,} status events)")
        print(load_line())
        results = bench(db, args.repeat)
        rows = [(f"{page} / {name}", f"{first:.2f}", f"{best:.2f}", f"{top_s:.2f}",
                 "" if top_s < 1 else "query over 1 s", top[:44])
                for page, name, first, best, top, top_s in results]
        print(table(["page / batch", "first s", "best s", "slowest query s", "target",
                     "slowest query"], rows))
        slow = [r for r in results if r[5] >= 1]
        print(f"{len(results) - len(slow)} of {len(results)} batches have every query under 1 s")
        print(check(db))
    except AssertionError as exc:
        print(f"WRONG: {exc}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
