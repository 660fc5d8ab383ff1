"""The rating engine: metered usage in the store -> priced line items (`charges`).

Set-based in DuckDB end to end; Python only loads the price books. The rules, and why:
- Runtime: running intervals (meter.intervals) split at UTC days and at price-book
  boundaries, x the book's $/session-hour / 3,600,000 per ms. No multiplier touches runtime.
- Tokens: `session.usage` snapshots are authoritative (cumulative; each increase is usage
  dated at the snapshot). Spans (`span.model_request_end`) count only after a session's last
  snapshot, and for multi-model sessions (threads on other models), where the snapshot cannot
  say which model used what; span cache writes take the book's default TTL (5 min).
- Token classes are disjoint (input is uncached input only): each is priced once, at its own
  rate. Fast-mode rates when the agent or span says `fast` and the book honours it; the
  model's data-residency multiplier on every class when inference_geo is "us" and the book
  honours it; never a batch discount.
- Long context (e.g. Haiku 5.5 above 100K prompt tokens): all tokens of such a request cost
  the long-context rate; it is charged as a separate `long_context` line carrying the
  difference, so that snapshot-based quantities stay untouched.
- Web search: snapshot increases of web_search_requests x $/1,000.
- Usage with no book in force or no rate for its model is never priced at zero: it goes to
  `unrated` with the model name and a reason, and into no total.

Money: token amounts are whole pico-dollars per token times summed quantities (integers, so
exact and fast), converted to DECIMAL(38,18) once per charge line; books with a rate finer than
a pico-dollar per token take the DECIMAL path instead. Runtime is priced once per session x day
x book (exact to 1e-18 USD). Rounding to cents happens later, once per invoice line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import pyarrow as pa

from meter.intervals import build_intervals, split_sql
from pricing.money import EXACT_SQL_TYPE, install_sql_macros
from pricing.pricebook import PriceBook

PRICE = pa.decimal128(18, 8)


@dataclass(frozen=True)
class RatingOptions:
    """Knobs for a rating run; the defaults are the provider's documented behaviour."""

    as_of_ms: int
    span_cache_ttl: str | None = None  # override the books' default TTL for span cache writes


def load_books(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook]) -> None:
    """Price books as three temp tables: pb_books, pb_rates, pb_aliases."""
    ordered = sorted(books, key=lambda b: b.effective_from_ms)
    con.register("_books", pa.table({
        "book_id": pa.array(range(len(ordered)), pa.int32()),
        "name": [b.name for b in ordered],
        "version": [b.version for b in ordered],
        "from_ms": pa.array([b.effective_from_ms for b in ordered], pa.int64()),
        "to_ms": pa.array([b.effective_to_ms for b in ordered], pa.int64()),
        "runtime_usd_per_hour": pa.array([b.runtime.usd_per_session_hour for b in ordered],
                                         PRICE),
        "search_usd_per_1000": pa.array([b.web_search.usd_per_1000 for b in ordered], PRICE),
        "fast_applies": [b.modifiers.fast_mode_applies for b in ordered],
        "geo_applies": [b.modifiers.data_residency_applies for b in ordered],
        "default_ttl": [b.modifiers.default_cache_write_ttl for b in ordered],
    }))
    rates = [dict(r, book_id=i) for i, b in enumerate(ordered) for r in b.token_rate_rows()]
    con.register("_rates", pa.table({
        "book_id": pa.array([r["book_id"] for r in rates], pa.int32()),
        "model_id": [r["model_id"] for r in rates],
        "speed": [r["speed"] for r in rates],
        "tier": [r["tier"] for r in rates],
        "token_class": [r["token_class"] for r in rates],
        "usd_per_mtok": pa.array([r["usd_per_mtok"] for r in rates], PRICE),
        "threshold_tokens": pa.array([r["threshold_tokens"] for r in rates], pa.int64()),
        "geo_multiplier": pa.array([r["geo_multiplier"] for r in rates], PRICE),
    }, schema=None))
    aliases = [dict(a, book_id=i) for i, b in enumerate(ordered) for a in b.alias_rows()]
    con.register("_aliases", pa.table({
        "book_id": pa.array([a["book_id"] for a in aliases], pa.int32()),
        "alias": [a["alias"] for a in aliases],
        "model_id": [a["model_id"] for a in aliases],
    }))
    for name in ("books", "rates", "aliases"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE pb_{name} AS SELECT * FROM _{name}")
        con.unregister(f"_{name}")
    # Integer money guard: the fast path prices tokens in whole pico-dollars (1e-12 USD) per
    # token, exact only if every effective rate (with the residency multiplier too) is a whole
    # number of them; otherwise `price_usage` takes the exact DECIMAL path.
    con.execute("CREATE OR REPLACE TEMP TABLE pb_money AS SELECT $ok AS pico_exact",
                {"ok": _pico_exact(rates)})


_PICO_PER_TOKEN = Decimal(1_000_000)  # USD per million tokens -> pico-dollars per token


def _pico_exact(rates: Sequence[dict]) -> bool:
    """Whether every rate, alone and times its geo multiplier, is whole pico-dollars/token."""
    for r in rates:
        if r["usd_per_mtok"] is None:
            continue
        price = Decimal(r["usd_per_mtok"]) * _PICO_PER_TOKEN
        multiplier = Decimal(r["geo_multiplier"]) if r["geo_multiplier"] is not None else 1
        for value in (price, price * multiplier):
            if value != value.to_integral_value() or abs(value) >= 2**62:
                return False
    return True


_SESSIONS = """
CREATE OR REPLACE TEMP TABLE rating_sessions AS
WITH ids AS (SELECT session_id FROM sessions
             UNION SELECT DISTINCT session_id FROM status_events
             UNION SELECT DISTINCT session_id FROM model_requests
             UNION SELECT DISTINCT session_id FROM usage_snapshots)
SELECT ids.session_id, s.model_id, coalesce(s.model_speed, 'standard') AS speed,
       s.inference_geo, s.agent_id, s.environment_id, s.metadata
FROM ids LEFT JOIN sessions s USING (session_id)
"""

# Which model each thread runs: named on the event, else found in the session's roster.
_THREAD_MODELS = """
CREATE OR REPLACE TEMP TABLE thread_models AS
WITH roster AS (
    -- a roster may list the same agent more than once ("copies allowed"): one row per name
    SELECT session_id, e->>'$.name' AS agent_name,
           min(coalesce(e->>'$.model.id', e->>'$.model')) AS model_id
    FROM (SELECT session_id, unnest(CAST(roster AS JSON[])) AS e
          FROM sessions WHERE roster IS NOT NULL AND json_type(roster) = 'ARRAY')
    GROUP BY ALL
)
SELECT t.session_id, t.thread_id, coalesce(t.model_id, r.model_id) AS model_id
FROM threads t LEFT JOIN roster r USING (session_id, agent_name)
"""

_CLASSES = "['input', 'output', 'cache_write_5m', 'cache_write_1h', 'cache_read']"

# Token quantities before pricing: (session, thread, time, raw model, speed, tier, class, qty).
_USAGE_LINES = f"""
CREATE OR REPLACE TEMP TABLE usage_lines AS
SELECT * FROM (
WITH multi AS (
    SELECT DISTINCT tm.session_id FROM thread_models tm
    JOIN rating_sessions s USING (session_id)
    WHERE tm.model_id IS NOT NULL AND tm.model_id IS DISTINCT FROM s.model_id
), snaps AS (
    SELECT session_id, at_ms,
        input_tokens - coalesce(lag(input_tokens) OVER w, 0) AS d_input,
        output_tokens - coalesce(lag(output_tokens) OVER w, 0) AS d_output,
        cache_write_5m_tokens - coalesce(lag(cache_write_5m_tokens) OVER w, 0) AS d_5m,
        cache_write_1h_tokens - coalesce(lag(cache_write_1h_tokens) OVER w, 0) AS d_1h,
        cache_read_tokens - coalesce(lag(cache_read_tokens) OVER w, 0) AS d_read
    FROM usage_snapshots WHERE at_ms <= $as_of
    WINDOW w AS (PARTITION BY session_id ORDER BY at_ms, event_id)
), last_snap AS (
    SELECT session_id, max(at_ms) AS last_ms FROM usage_snapshots
    WHERE at_ms <= $as_of GROUP BY session_id
), span_rows AS (
    SELECT m.session_id, m.thread_id, m.at_ms,
           coalesce(tm.model_id, s.model_id) AS model_raw,
           coalesce(m.speed, s.speed) AS speed,
           m.input_tokens, m.output_tokens, m.cache_write_tokens, m.cache_read_tokens,
           m.session_id IN (SELECT session_id FROM multi)
             OR m.at_ms > coalesce(ls.last_ms, -1) AS billed_from_span,
           m.at_ms > coalesce(ls.last_ms, -1) AS after_last_snapshot
    FROM model_requests m
    JOIN rating_sessions s USING (session_id)
    LEFT JOIN thread_models tm ON tm.session_id = m.session_id AND tm.thread_id = m.thread_id
    LEFT JOIN last_snap ls ON ls.session_id = m.session_id
    WHERE m.at_ms <= $as_of
), span_ttl AS (
    SELECT r.*, b.book_id, coalesce($ttl, b.default_ttl) AS ttl
    FROM span_rows r LEFT JOIN pb_books b
      ON r.at_ms >= b.from_ms AND (b.to_ms IS NULL OR r.at_ms < b.to_ms)
)
SELECT session_id, NULL::VARCHAR AS thread_id, at_ms, model_id AS model_raw, speed,
       'standard' AS tier, 'snapshot' AS source, unnest({_CLASSES}) AS token_class,
       unnest([d_input, d_output, d_5m, d_1h, d_read]) AS quantity
FROM snaps JOIN rating_sessions USING (session_id)
WHERE session_id NOT IN (SELECT session_id FROM multi)
UNION ALL
SELECT session_id, thread_id, at_ms, model_raw, speed, tier, 'span' AS source,
       unnest({_CLASSES}) AS token_class,
       unnest([input_tokens, output_tokens,
               CASE WHEN ttl = '5m' THEN cache_write_tokens ELSE 0 END,
               CASE WHEN ttl = '1h' THEN cache_write_tokens ELSE 0 END,
               cache_read_tokens]) AS quantity
FROM (
  -- requests summed per session x thread x day x pricing key before the split into classes
  -- (side of the last snapshot kept, so pricing.check still sees what preceded it)
  SELECT session_id, thread_id, min(at_ms) AS at_ms, model_raw, speed, tier, ttl,
         sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
         sum(cache_write_tokens)::BIGINT AS cache_write_tokens,
         sum(cache_read_tokens)::BIGINT AS cache_read_tokens
  FROM (
    SELECT *, 'standard' AS tier FROM span_ttl WHERE billed_from_span
    UNION ALL
    -- long-context requests: a second line per class carrying the premium over standard
    SELECT st.*, 'long_context' AS tier FROM span_ttl st
    JOIN pb_aliases a ON a.book_id = st.book_id
         AND a.alias IN (st.model_raw, regexp_replace(st.model_raw, '-[0-9]{{8}}$', ''))
    JOIN (SELECT DISTINCT book_id, model_id, threshold_tokens FROM pb_rates
          WHERE tier = 'long_context') lc
         ON lc.book_id = st.book_id AND lc.model_id = a.model_id
    WHERE st.input_tokens + st.cache_read_tokens + st.cache_write_tokens > lc.threshold_tokens
  )
  GROUP BY session_id, thread_id, model_raw, speed, tier, ttl, book_id, after_last_snapshot,
           at_ms // 86400000
)
) WHERE quantity <> 0  -- zero quantities are never priced nor reported
"""

_TOKEN_CHARGES = """
CREATE OR REPLACE TEMP TABLE token_priced AS
WITH u AS (
    SELECT u.*, s.inference_geo, b.book_id, b.fast_applies, b.geo_applies,
           coalesce(a1.model_id, a2.model_id) AS model_id
    FROM (SELECT * FROM usage_lines WHERE quantity <> 0) u
    JOIN rating_sessions s USING (session_id)
    LEFT JOIN pb_books b ON u.at_ms >= b.from_ms AND (b.to_ms IS NULL OR u.at_ms < b.to_ms)
    LEFT JOIN pb_aliases a1 ON a1.book_id = b.book_id AND a1.alias = u.model_raw
    LEFT JOIN pb_aliases a2 ON a2.book_id = b.book_id
         AND a2.alias = regexp_replace(u.model_raw, '-[0-9]{8}$', '')
)
SELECT u.session_id, u.thread_id, u.at_ms, u.model_raw, u.model_id, u.token_class, u.tier,
       u.source, u.quantity, u.book_id,
       CASE WHEN rf.usd_per_mtok IS NOT NULL THEN 'fast' ELSE 'standard' END AS speed,
       (CASE WHEN u.tier = 'long_context' THEN rl.usd_per_mtok - rs.usd_per_mtok
             ELSE coalesce(rf.usd_per_mtok, rs.usd_per_mtok) END)
         * CASE WHEN u.inference_geo = 'us' AND u.geo_applies THEN rs.geo_multiplier ELSE 1 END
         AS unit_price,
       CASE WHEN u.book_id IS NULL THEN 'no price book in force'
            WHEN u.model_raw IS NULL THEN 'session has no model'
            WHEN u.model_id IS NULL THEN 'model not in price book'
            WHEN rs.usd_per_mtok IS NULL THEN 'no rate for token class' END AS unrated_reason
FROM u
LEFT JOIN pb_rates rs ON rs.book_id = u.book_id AND rs.model_id = u.model_id
     AND rs.speed = 'standard' AND rs.tier = 'standard' AND rs.token_class = u.token_class
LEFT JOIN pb_rates rf ON rf.book_id = u.book_id AND rf.model_id = u.model_id
     AND rf.speed = 'fast' AND rf.tier = 'standard' AND rf.token_class = u.token_class
     AND u.speed = 'fast' AND u.fast_applies AND u.tier = 'standard'
LEFT JOIN pb_rates rl ON rl.book_id = u.book_id AND rl.model_id = u.model_id
     AND rl.tier = 'long_context' AND rl.token_class = u.token_class
"""

# Fast path (integer money): each (book, model spelling, fast?, tier, class, US?) combination
# is priced once, by the same rules as `_TOKEN_CHARGES`, into the small `token_prices`.
_TOKEN_PRICES = """
CREATE OR REPLACE TEMP TABLE token_prices AS
WITH books AS (
    SELECT book_id, fast_applies, geo_applies FROM pb_books
    UNION ALL SELECT -1, NULL, NULL  -- no book in force
), keys AS (
    SELECT b.*, k.model_raw, k.tier, k.token_class, f.fast, g.us
    FROM books b, (SELECT DISTINCT model_raw, tier, token_class FROM usage_lines) k,
         (VALUES (true), (false)) f(fast), (VALUES (true), (false)) g(us)
), u AS (
    SELECT k.*, coalesce(a1.model_id, a2.model_id) AS model_id
    FROM keys k
    LEFT JOIN pb_aliases a1 ON a1.book_id = k.book_id AND a1.alias = k.model_raw
    LEFT JOIN pb_aliases a2 ON a2.book_id = k.book_id
         AND a2.alias = regexp_replace(k.model_raw, '-[0-9]{8}$', '')
), priced AS (
    SELECT u.book_id, u.model_raw, u.fast, u.tier, u.token_class, u.us, u.model_id,
           CASE WHEN rf.usd_per_mtok IS NOT NULL THEN 'fast' ELSE 'standard' END AS speed,
           (CASE WHEN u.tier = 'long_context' THEN rl.usd_per_mtok - rs.usd_per_mtok
                 ELSE coalesce(rf.usd_per_mtok, rs.usd_per_mtok) END)
             * CASE WHEN u.us AND u.geo_applies THEN rs.geo_multiplier ELSE 1 END
             AS unit_price,
           CASE WHEN u.book_id = -1 THEN 'no price book in force'
                WHEN u.model_raw IS NULL THEN 'session has no model'
                WHEN u.model_id IS NULL THEN 'model not in price book'
                WHEN rs.usd_per_mtok IS NULL THEN 'no rate for token class' END
             AS unrated_reason
    FROM u
    LEFT JOIN pb_rates rs ON rs.book_id = u.book_id AND rs.model_id = u.model_id
         AND rs.speed = 'standard' AND rs.tier = 'standard' AND rs.token_class = u.token_class
    LEFT JOIN pb_rates rf ON rf.book_id = u.book_id AND rf.model_id = u.model_id
         AND rf.speed = 'fast' AND rf.tier = 'standard' AND rf.token_class = u.token_class
         AND u.fast AND u.fast_applies AND u.tier = 'standard'
    LEFT JOIN pb_rates rl ON rl.book_id = u.book_id AND rl.model_id = u.model_id
         AND rl.tier = 'long_context' AND rl.token_class = u.token_class
)
SELECT *, CAST(CAST(unit_price AS DECIMAL(38, 12)) * 1000000 AS BIGINT) AS price_pico,
       CAST(row_number() OVER () AS INTEGER) AS price_id
FROM priced
"""

_PICO_MISMATCH = """
SELECT count(*) FROM token_prices
WHERE unrated_reason IS NULL AND CAST(unit_price AS DECIMAL(38, 12)) * 1000000 <> price_pico
"""

# Same rows and columns as `_TOKEN_CHARGES` (plus `price_id`), by equality joins only.
_TOKEN_PRICED_FAST = """
CREATE OR REPLACE TEMP TABLE token_priced AS
WITH u AS (
    SELECT u.*, {book} AS bk, coalesce(u.speed = 'fast', false) AS fast,
           coalesce(s.inference_geo = 'us', false) AS us
    FROM (SELECT * FROM usage_lines WHERE quantity <> 0) u
    JOIN rating_sessions s USING (session_id)
)
SELECT u.session_id, u.thread_id, u.at_ms, u.model_raw, p.model_id, u.token_class, u.tier,
       u.source, u.quantity, CASE WHEN u.bk >= 0 THEN u.bk END AS book_id, p.speed,
       p.unit_price, p.unrated_reason, p.price_id
FROM u JOIN token_prices p
  ON p.book_id = u.bk AND p.model_raw IS NOT DISTINCT FROM u.model_raw AND p.fast = u.fast
     AND p.tier = u.tier AND p.token_class = u.token_class AND p.us = u.us
"""

_SEARCHES = """
CREATE OR REPLACE TEMP TABLE search_lines AS
SELECT session_id, at_ms,
       web_search_requests - coalesce(lag(web_search_requests) OVER (
           PARTITION BY session_id ORDER BY at_ms, event_id), 0) AS quantity
FROM usage_snapshots WHERE at_ms <= $as_of
"""

_RUNTIME = """
CREATE OR REPLACE TEMP TABLE runtime_pieces AS
WITH days AS ({split})
SELECT d.session_id, d.provisional, b.book_id, b.runtime_usd_per_hour,
       greatest(d.start_ms, b.from_ms) AS start_ms,
       least(d.end_ms, coalesce(b.to_ms, d.end_ms)) AS end_ms
FROM days d LEFT JOIN pb_books b
  ON d.start_ms < coalesce(b.to_ms, d.end_ms + 1) AND d.end_ms > b.from_ms
WHERE d.status = 'running'
UNION ALL
-- running time outside every book: kept, to be reported unrated
SELECT d.session_id, d.provisional, NULL, NULL, d.start_ms, d.end_ms
FROM days d
WHERE d.status = 'running' AND NOT EXISTS (
    SELECT 1 FROM pb_books b WHERE d.start_ms < coalesce(b.to_ms, d.end_ms + 1)
                              AND d.end_ms > b.from_ms)
"""

_DAY = "CAST(make_timestamp(({ms}) * 1000) AS DATE)"

_OPEN_SESSIONS = """
    SELECT DISTINCT session_id FROM intervals WHERE provisional AND status = 'running'"""

# Running ms summed per session x day x book first, then priced once per charge line (the
# quotient ms x rate / 3,600,000 is rounded at 1e-18 USD once per line, not per piece).
_RUNTIME_LINES = f"""
    SELECT {_DAY.format(ms='day_ms')} AS day, session_id, 'runtime' AS meter,
           NULL AS model, NULL AS token_class, 'standard' AS tier,
           ms AS quantity, 'ms' AS unit,
           runtime_usd_per_hour AS unit_price, 'USD per session-hour' AS price_unit,
           runtime_amount(ms, runtime_usd_per_hour) AS amount_exact,
           book_id, provisional
    FROM (SELECT session_id, book_id, runtime_usd_per_hour,
                 start_ms - (start_ms % 86400000 + 86400000) % 86400000 AS day_ms,
                 sum(end_ms - start_ms)::BIGINT AS ms, bool_or(provisional) AS provisional
          FROM runtime_pieces WHERE book_id IS NOT NULL AND end_ms > start_ms
          GROUP BY ALL)"""

# Exact path: DECIMAL arithmetic per priced usage line.
_TOKEN_LINES_EXACT = f"""
    SELECT {_DAY.format(ms='at_ms')}, session_id, 'tokens', model_id, token_class, tier,
           quantity, 'tokens', unit_price, 'USD per million tokens',
           CAST(quantity * unit_price * 0.000001 AS {EXACT_SQL_TYPE}), book_id,
           session_id IN (SELECT session_id FROM open_sessions)
    FROM token_priced WHERE unrated_reason IS NULL"""

# Fast path: tokens summed per session x day x price, times whole pico-dollars per token,
# converted to DECIMAL once per line (HUGEINT sums cannot overflow).
_TOKEN_LINES_FAST = f"""
    SELECT {_DAY.format(ms='t.day * 86400000')}, t.session_id, 'tokens', p.model_id,
           p.token_class, p.tier, t.quantity, 'tokens', p.unit_price, 'USD per million tokens',
           CAST(CAST(t.quantity * p.price_pico AS DECIMAL(38, 0))
                * CAST(0.000000000001 AS {EXACT_SQL_TYPE}) AS {EXACT_SQL_TYPE}), p.book_id,
           t.session_id IN (SELECT session_id FROM open_sessions)
    FROM (SELECT session_id, price_id, sum(quantity) AS quantity,
                 (at_ms - (at_ms % 86400000 + 86400000) % 86400000) // 86400000 AS day
          FROM token_priced WHERE unrated_reason IS NULL GROUP BY ALL) t
    JOIN token_prices p USING (price_id)"""

_SEARCH_LINES = f"""
    SELECT {_DAY.format(ms='l.at_ms')}, l.session_id, 'web_search', NULL, NULL, 'standard',
           l.quantity, 'searches', b.search_usd_per_1000, 'USD per 1,000 searches',
           CAST(l.quantity * b.search_usd_per_1000 * 0.001 AS {EXACT_SQL_TYPE}), b.book_id,
           l.session_id IN (SELECT session_id FROM open_sessions)
    FROM search_lines l JOIN pb_books b
      ON l.at_ms >= b.from_ms AND (b.to_ms IS NULL OR l.at_ms < b.to_ms)
    WHERE l.quantity <> 0"""

# Lines are summed on narrow keys first; the session's dimensions (and its JSON tags) and the
# book's names are joined once per charge line afterwards, not carried through the grouping.
_CHARGES_TEMPLATE = f"""
CREATE OR REPLACE TEMP TABLE charges AS
WITH open_sessions AS ({_OPEN_SESSIONS}),
lines AS ({_RUNTIME_LINES}
    UNION ALL {{token_lines}}
    UNION ALL {_SEARCH_LINES}
), narrow AS (
    SELECT day, session_id, meter, model, token_class, tier, unit, unit_price, price_unit,
           book_id, sum(quantity)::BIGINT AS quantity,
           CAST(sum(amount_exact) AS {EXACT_SQL_TYPE}) AS amount_exact,
           bool_or(provisional) AS provisional
    FROM lines GROUP BY ALL
)
SELECT strftime(n.day, '%Y-%m') AS period, n.day, n.session_id,
       s.agent_id, s.environment_id, s.metadata AS tags,
       n.meter, n.model, n.token_class, n.tier, n.quantity, n.unit,
       n.unit_price, n.price_unit, n.amount_exact,
       b.name AS book, b.version AS book_version, n.provisional
FROM narrow n
JOIN rating_sessions s USING (session_id)
JOIN pb_books b USING (book_id)
"""
_CHARGES = _CHARGES_TEMPLATE.replace("{token_lines}", _TOKEN_LINES_EXACT)
_CHARGES_FAST = _CHARGES_TEMPLATE.replace("{token_lines}", _TOKEN_LINES_FAST)

_UNRATED = f"""
CREATE OR REPLACE TEMP TABLE unrated AS
SELECT {_DAY.format(ms='at_ms')} AS day, strftime({_DAY.format(ms='at_ms')}, '%Y-%m') AS period,
       session_id, 'tokens' AS meter, model_raw AS model, token_class,
       sum(quantity)::BIGINT AS quantity, 'tokens' AS unit, unrated_reason AS reason
FROM token_priced WHERE unrated_reason IS NOT NULL
GROUP BY ALL
UNION ALL
SELECT {_DAY.format(ms='start_ms')}, strftime({_DAY.format(ms='start_ms')}, '%Y-%m'),
       session_id, 'runtime', NULL, NULL, sum(end_ms - start_ms)::BIGINT, 'ms',
       'no price book in force'
FROM runtime_pieces WHERE book_id IS NULL GROUP BY ALL
UNION ALL
SELECT {_DAY.format(ms='at_ms')}, strftime({_DAY.format(ms='at_ms')}, '%Y-%m'), session_id,
       'web_search', NULL, NULL, sum(quantity)::BIGINT, 'searches', 'no price book in force'
FROM search_lines l
WHERE quantity <> 0 AND NOT EXISTS (
    SELECT 1 FROM pb_books b WHERE l.at_ms >= b.from_ms AND (b.to_ms IS NULL OR l.at_ms < b.to_ms))
GROUP BY ALL
"""


def prepare_usage(
    con: duckdb.DuckDBPyConnection,
    books: Sequence[PriceBook],
    options: RatingOptions,
) -> None:
    """Stage 1: load the books and meter the usage into temp tables, not yet priced.

    Leaves `pb_books`, `pb_rates`, `pb_aliases`, `intervals`, `rating_sessions`,
    `thread_models`, `usage_lines` (token quantities) and `search_lines`. What-if scenarios
    change these (or reload other books with `load_books`) before `price_usage`.
    """
    params = {"as_of": options.as_of_ms}
    install_sql_macros(con)
    load_books(con, books)
    build_intervals(con, options.as_of_ms, table="intervals")
    con.execute(_SESSIONS)
    con.execute(_THREAD_MODELS)
    con.execute(_USAGE_LINES, {**params, "ttl": options.span_cache_ttl})
    con.execute(_SEARCHES, params)


def price_usage(con: duckdb.DuckDBPyConnection) -> None:
    """Stage 2: price the staged usage with the loaded books into `charges` and `unrated`."""
    book = _book_case(con)
    # the books' own guard (set by load_books), then the prices as they are in the tables now
    guard = None
    if _has_temp_table(con, "pb_money"):
        guard = con.execute("SELECT bool_and(pico_exact) FROM pb_money").fetchall()[0][0]
    fast = book is not None and guard is not False
    if fast:
        con.execute(_TOKEN_PRICES)
        fast = con.execute(_PICO_MISMATCH).fetchall()[0][0] == 0
    if fast:
        con.execute(_TOKEN_PRICED_FAST.format(book=book))
    else:  # exact DECIMAL path: rates finer than a pico-dollar per token, or overlapping books
        con.execute(_TOKEN_CHARGES)
    con.execute(_RUNTIME.format(split=split_sql("intervals", "day")))
    con.execute(_CHARGES_FAST if fast else _CHARGES)
    con.execute(_UNRATED)


def _has_temp_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary "
                            "AND table_name = $name", {"name": name}).fetchall()[0][0])


def _book_case(con: duckdb.DuckDBPyConnection) -> str | None:
    """The book in force at `at_ms` as a CASE over the (few) loaded books, -1 when none;
    None when books overlap (the join-based exact path then applies, as before)."""
    books = con.execute("SELECT book_id, from_ms, to_ms FROM pb_books ORDER BY from_ms").fetchall()
    for (_, _, to_ms), (_, next_from, _) in zip(books, books[1:], strict=False):
        if to_ms is None or to_ms > next_from:
            return None
    whens = " ".join(
        f"WHEN at_ms >= {from_ms}" + (f" AND at_ms < {to_ms}" if to_ms is not None else "")
        + f" THEN {book_id}" for book_id, from_ms, to_ms in books)
    return f"CASE {whens} ELSE -1 END" if books else "-1"


def rate(
    con: duckdb.DuckDBPyConnection,
    books: Sequence[PriceBook],
    options: RatingOptions,
) -> None:
    """Rate everything in the store as of `options.as_of_ms`.

    Leaves temp tables `charges` (priced line items, one per day x session x SKU) and
    `unrated` (usage that could not be priced, with the reason) on the connection.
    Works on a read-only connection: only temp tables are written.
    """
    prepare_usage(con, books, options)
    price_usage(con)
