"""The rating engine: metered usage in the store -> priced line items (`charges`).

Set-based in DuckDB end to end; Python only loads the price books. The rules, and why:
- Runtime: running time (meter.intervals' rules) split at UTC days and at price-book
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
  the long-context rate, on `long_context` lines of their own; the same tokens leave the
  standard line that counted them (the request's own, or the snapshot that covers it: the
  long-context line is then dated at that snapshot), so the tiers' quantities add up to the
  real usage. Cache writes of such requests take the book's default TTL, as spans do.
- Web search: snapshot increases of web_search_requests x $/1,000.
- Usage with no book in force or no rate for its model is never priced at zero: it goes to
  `unrated` with the model name and a reason, and into no total.

Money: quantities are summed per charge line first (session x UTC day x SKU), then priced once
per line: tokens x unit price / 1e6 in DECIMAL (unit prices held as 64-bit DECIMAL(18,12) when
that is exact, else wider), runtime ms x the book's money units per ms (pricing.money: whole
units of 1/9 atto-dollar, so runtime is exact too). Each line carries `amount_units` (exact,
HUGEINT) and `amount_exact` (DECIMAL(38,18), for reading); rounding to cents happens later,
once per invoice line, from summed units.

Shape (why it is fast): nothing sorts all the events. Each session's status events are
gathered into one list (a hash aggregate) and only that small list is sorted (runtime_days,
see stage_runtime); requests are joined to their session and summed per session x day x
resolved speed before anything else (usage_lines, one column per token class); each distinct
(book, model spelling, fast, tier, US) is priced once (token_prices); token lines are stored
wide (token_lines: a quantity and an amount per class), runtime and search lines narrow
(charge_lines), and `charges` is a view unpivoting them and adding the SKU's names and the
session's agent, environment and tags on read.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from meter.errors import UsageError
from meter.intervals import (
    StatusLists,
    exact_pieces_sql,
    gather_status_lists,
    open_stretch_sql,
)
from meter.vocabulary import DAY_MS, PRICE_UNITS, TOKEN_CLASSES, as_date, day_start
from pricing.money import EXACT_SQL_TYPE, install_sql_macros, runtime_units_per_ms
from pricing.pricebook import PriceBook

PRICE = pa.decimal128(18, 8)


@dataclass(frozen=True)
class RatingOptions:
    """Knobs for a rating run; the defaults are the provider's documented behaviour."""

    as_of_ms: int
    span_cache_ttl: str | None = None  # override the books' default TTL for span cache writes


def books_in_order(books: Sequence[PriceBook]) -> list[PriceBook]:
    """The books as `load_books` numbers them (`pb_books.book_id`): by effective date."""
    return sorted(books, key=lambda b: b.effective_from_ms)


def load_books(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook]) -> None:
    """Price books as three temp tables: pb_books, pb_rates, pb_aliases (kept, with the
    price tables built from them, when the same books are loaded again)."""
    ordered = books_in_order(books)
    loaded = _BOOKS_OF.get(con)
    if loaded is not None and _same_books(loaded[1], ordered) \
            and _loaded_token(con) == loaded[0]:
        return  # (books are immutable: the same objects are the same books)
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
        # the runtime rate as money units (pricing.money) per ms: whole at 8 decimals
        "rt_units": pa.array([runtime_units_per_ms(b.runtime.usd_per_session_hour)
                              for b in ordered], pa.int64()),
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
    token = next(_LOADS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE pb_loaded AS SELECT {token}::BIGINT AS token")
    _PRICED.pop(con, None)  # (the price tables were of the books replaced)
    _BOOKS_OF[con] = (token, tuple(ordered))


def _same_books(kept: Sequence[PriceBook], books: Sequence[PriceBook]) -> bool:
    return len(kept) == len(books) and all(a is b for a, b in zip(kept, books, strict=True))


def _loaded_token(con: duckdb.DuckDBPyConnection) -> int | None:
    """The token of the load the pb_* tables are of (None when they are gone). A rolled back
    transaction takes the temp tables back to an older load: the token tells."""
    try:
        return con.execute("SELECT min(token) FROM pb_loaded").fetchall()[0][0]
    except duckdb.CatalogException:
        return None


# The books `load_books` last loaded on a connection, as given, with the token of that load
# (also kept in temp table pb_loaded, and in price_keys for the price tables built from it).
# The SQL builders below read the books' ranges from here rather than from pb_books.
_LOADS = itertools.count(1)
_BOOKS_OF: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection,
                                     tuple[int, tuple[PriceBook, ...]]] = (
    weakref.WeakKeyDictionary())

# Connections whose price tables (price_keys, token_prices, token_skus, charge_skus) are of
# the books loaded on them (the load's token). `load_books` forgets a connection;
# `_price_tables` builds them again only for pairs of model spelling and tier they do not
# cover yet, or from scratch when they are of another load.
_PRICED: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, int] = (
    weakref.WeakKeyDictionary())


def _loaded_books(con: duckdb.DuckDBPyConnection) -> tuple[tuple[int, int, int | None], ...]:
    """(book_id, from_ms, to_ms) of the books loaded on `con` (read from pb_books where they
    were not loaded by `load_books`)."""
    kept = _BOOKS_OF.get(con)
    if kept is not None:
        return tuple((i, b.effective_from_ms, b.effective_to_ms) for i, b in enumerate(kept[1]))
    return tuple(con.execute("SELECT book_id, from_ms, to_ms FROM pb_books "
                             "ORDER BY book_id").fetchall())


# The session dimension as rating reads it. A view: sessions seen only in events (no session
# record) simply find no row here, so their tokens are unrated ("session has no model").
_SESSIONS = """
CREATE OR REPLACE TEMP VIEW rating_sessions AS
SELECT session_id, model_id, coalesce(model_speed, 'standard') AS speed, inference_geo,
       agent_id, environment_id, metadata
FROM sessions
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

CLASSES = TOKEN_CLASSES
_CLASS_LIST = "[" + ", ".join(f"'{c}'" for c in CLASSES) + "]"
_Q = ("q_input", "q_output", "q_5m", "q_1h", "q_read")  # usage_lines' quantity columns
_P = ("p_input", "p_output", "p_5m", "p_1h", "p_read")  # token_prices' unit price columns
_R = ("r_input", "r_output", "r_5m", "r_1h", "r_read")  # token_prices' unrated reasons
_A = ("a_input", "a_output", "a_5m", "a_1h", "a_read")  # token_lines' exact amounts



# Token quantities before pricing, one row per usage line with a column per token class:
# a snapshot increase (dated at the snapshot), or requests summed per session x thread x UTC
# day x price book x speed x side of the last snapshot x long-context bucket (dated at the
# first of them). Session attributes are joined after that grouping, on far fewer rows.
_USAGE_LINES = """
CREATE OR REPLACE TEMP TABLE usage_lines AS
WITH multi AS (
    SELECT DISTINCT tm.session_id FROM thread_models tm
    LEFT JOIN rating_sessions s USING (session_id)  -- no session record: no model of its own
    WHERE tm.model_id IS NOT NULL AND tm.model_id IS DISTINCT FROM s.model_id
), snaps AS (
    SELECT session_id, at_ms,
        input_tokens - coalesce(lag(input_tokens) OVER w, 0) AS q_input,
        output_tokens - coalesce(lag(output_tokens) OVER w, 0) AS q_output,
        cache_write_5m_tokens - coalesce(lag(cache_write_5m_tokens) OVER w, 0) AS q_5m,
        cache_write_1h_tokens - coalesce(lag(cache_write_1h_tokens) OVER w, 0) AS q_1h,
        cache_read_tokens - coalesce(lag(cache_read_tokens) OVER w, 0) AS q_read
    FROM usage_snapshots WHERE at_ms <= $as_of
    WINDOW w AS (PARTITION BY session_id ORDER BY at_ms, event_id)
), last_snap AS (
    SELECT session_id, max(at_ms) AS last_ms FROM usage_snapshots
    WHERE at_ms <= $as_of GROUP BY session_id
), span_groups AS (
    -- requests of the main thread and of named threads are grouped apart (a NULL thread key
    -- slows the grouping of the far more common first kind)
    {span_groups}
), span_lines AS ({span_lines}span_groups g LEFT JOIN pb_books b USING (book_id)
){long_context}
SELECT n.session_id, NULL::VARCHAR AS thread_id, n.at_ms, s.model_id AS model_raw, s.speed,
       coalesce(s.inference_geo = 'us', false) AS us, 'standard' AS tier, 'snapshot' AS source,
       n.q_input, n.q_output, n.q_5m, n.q_1h, n.q_read
FROM snaps n LEFT JOIN rating_sessions s USING (session_id)
WHERE n.session_id NOT IN (SELECT session_id FROM multi)
  AND (n.q_input <> 0 OR n.q_output <> 0 OR n.q_5m <> 0 OR n.q_1h <> 0 OR n.q_read <> 0)
UNION ALL
-- requests: standard lines where billed from spans; and requests above the model's
-- long-context threshold on long-context lines (also where snapshots carry their quantities:
-- they cannot tell the requests apart)
-- (a request group per speed said on the requests and per long-context bucket: pricing sums
-- them per charge line; what-if levers first merge them per usage line, see _USAGE_LINE_KEY)
SELECT l.session_id, l.thread_id, l.at_ms, l.model_raw, l.speed, l.us, 'standard', 'span',
       l.q_input, l.q_output, l.q_5m, l.q_1h, l.q_read
FROM span_lines l WHERE l.billed
{long_context_lines}"""

# The long-context rates of the model spellings in use (of sessions and threads).
_LC_RATES = """
    FROM (SELECT model_id AS model_raw FROM rating_sessions
          UNION SELECT model_id FROM thread_models) n
    JOIN pb_aliases a
      ON a.alias IN (n.model_raw, regexp_replace(n.model_raw, '-[0-9]{8}$', ''))
    JOIN pb_rates r ON r.book_id = a.book_id AND r.model_id = a.model_id
         AND r.tier = 'long_context'"""

# usage_lines' requests that may be long context (lc_lines) and their lines, only where a
# model in use has a long-context rate (else the plan is far smaller to make).
_LONG_CONTEXT = """, lc_thresholds(threshold_tokens, k) AS ({lc_thresholds}
), lc_models AS (  -- spellings, per book, whose requests can be long context: from threshold k
    SELECT n.model_raw, a.book_id, min(t.k) AS k{lc_rates}
    JOIN lc_thresholds t USING (threshold_tokens)
    GROUP BY ALL
), lc_sessions AS (
    SELECT session_id FROM rating_sessions WHERE model_id IN (SELECT model_raw FROM lc_models)
    UNION SELECT session_id FROM thread_models WHERE model_id IN (SELECT model_raw FROM lc_models)
), lc_requests AS {lc_requests}, lc_groups AS (
    -- requests that may be long context, summed again per threshold bucket (few: read twice)
    {lc_groups}
), lc_lines AS ({span_lines}lc_groups g LEFT JOIN pb_books b USING (book_id)
    JOIN lc_models c ON c.book_id = g.book_id AND c.model_raw = g.model_raw
    WHERE g.lc_bucket > c.k
)"""
_LONG_CONTEXT_LINES = """UNION ALL
SELECT l.session_id, l.thread_id, l.at_ms, l.model_raw, l.speed, l.us, 'long_context', 'span',
       l.q_input, l.q_output, l.q_5m, l.q_1h, l.q_read
FROM lc_lines l
UNION ALL
-- ... and the same tokens out of the standard line that counted them: the requests' own
-- (billed from spans), else their covering snapshot's (same date, model, speed and key)
SELECT l.session_id, CASE WHEN l.billed THEN l.thread_id END, l.at_ms, l.model_raw,
       CASE WHEN l.billed THEN l.speed ELSE s.speed END, l.us, 'standard',
       CASE WHEN l.billed THEN 'span' ELSE 'snapshot' END,
       -l.q_input, -l.q_output, -l.q_5m, -l.q_1h, -l.q_read
FROM lc_lines l LEFT JOIN rating_sessions s USING (session_id)
"""

# A request group priced from spans: its speed, its cache writes at the TTL in force, and
# whether spans bill it (after the session's last snapshot, or a multi-model session).
_SPAN_LINES = """
    SELECT g.*, CASE g.speed_code WHEN 1 THEN 'fast' WHEN 0 THEN 'standard' END AS speed,
           -- the API's default TTL where no book in force says (the writes are then unrated)
           CASE WHEN coalesce($ttl, b.default_ttl, '5m') = '5m' THEN q_write ELSE 0 END AS q_5m,
           CASE WHEN coalesce($ttl, b.default_ttl, '5m') = '1h' THEN q_write ELSE 0 END AS q_1h,
           g.after_last OR g.session_id IN (SELECT session_id FROM multi) AS billed
    FROM """

# Each (book, model spelling, fast?, tier, US?) that occurs (price_keys: the model spellings
# and tiers of usage_lines, and of earlier ratings on the connection) is priced once: a unit
# price and, where there is none, the reason, per token class; `line_key` numbers the
# distinct resolved price lists (so two spellings of one model give one charge line).
_TOKEN_PRICES = f"""
CREATE OR REPLACE TEMP TABLE token_prices AS
WITH books AS (
    SELECT book_id, fast_applies, geo_applies FROM pb_books
    UNION ALL SELECT -1, NULL, NULL  -- no book in force
), keys AS (
    SELECT b.*, k.model_raw, k.tier, f.fast, g.us
    FROM books b, price_keys k,
         (VALUES (true), (false)) f(fast), (VALUES (true), (false)) g(us)
), u AS (
    SELECT k.*, coalesce(a1.model_id, a2.model_id) AS model_id
    FROM keys k
    LEFT JOIN pb_aliases a1 ON a1.book_id = k.book_id AND a1.alias = k.model_raw
    LEFT JOIN pb_aliases a2 ON a2.book_id = k.book_id
         AND a2.alias = regexp_replace(k.model_raw, '-[0-9]{{8}}$', '')
), priced AS (
    SELECT u.book_id, u.model_raw, u.fast, u.tier, u.us, u.model_id, c.token_class,
           -- (19 digits: a product of two 18-digit decimals may not fit in 64 bits)
           CAST(CASE WHEN u.tier = 'long_context' THEN rl.usd_per_mtok
                     ELSE coalesce(rf.usd_per_mtok, rs.usd_per_mtok) END AS DECIMAL(19, 8))
             * CASE WHEN u.us AND u.geo_applies THEN rs.geo_multiplier ELSE 1 END
             AS unit_price,
           CASE WHEN u.book_id = -1 THEN 'no price book in force'
                WHEN u.model_raw IS NULL THEN 'session has no model'
                WHEN u.model_id IS NULL THEN 'model not in price book'
                WHEN rs.usd_per_mtok IS NULL THEN 'no rate for token class' END
             AS unrated_reason
    FROM u CROSS JOIN (SELECT unnest({_CLASS_LIST}) AS token_class) c
    LEFT JOIN pb_rates rs ON rs.book_id = u.book_id AND rs.model_id = u.model_id
         AND rs.speed = 'standard' AND rs.tier = 'standard' AND rs.token_class = c.token_class
    LEFT JOIN pb_rates rf ON rf.book_id = u.book_id AND rf.model_id = u.model_id
         AND rf.speed = 'fast' AND rf.tier = 'standard' AND rf.token_class = c.token_class
         AND u.fast AND u.fast_applies AND u.tier = 'standard'
    LEFT JOIN pb_rates rl ON rl.book_id = u.book_id AND rl.model_id = u.model_id
         AND rl.tier = 'long_context' AND rl.token_class = c.token_class
), wide AS (
    SELECT book_id, model_raw, fast, tier, us, any_value(model_id) AS model_id,
           {", ".join(f"any_value(unit_price) FILTER (WHERE token_class = '{c}') AS {p}"
                      for c, p in zip(CLASSES, _P, strict=True))},
           {", ".join(f"any_value(unrated_reason) FILTER (WHERE token_class = '{c}') AS {r}"
                      for c, r in zip(CLASSES, _R, strict=True))}
    FROM priced GROUP BY ALL
)
SELECT *, dense_rank() OVER (ORDER BY book_id, coalesce(model_id, '~' || model_raw), tier,
                                      {", ".join(_P)}) AS line_key
FROM wide
"""

# usage_lines with their prices (a view: read by the charges, the unrated and pricing.check).
_TOKEN_PRICED = """
CREATE OR REPLACE TEMP VIEW token_priced AS
SELECT u.*, {day} AS day_ms, p.book_id, p.model_id, p.line_key,
       {prices}, {reasons}
FROM usage_lines u JOIN token_prices p
  ON p.book_id = {book} AND p.model_raw IS NOT DISTINCT FROM u.model_raw
     AND p.fast = coalesce(u.speed = 'fast', false) AND p.tier = u.tier AND p.us = u.us
"""

_SEARCHES = """
CREATE OR REPLACE TEMP TABLE search_lines AS
SELECT * FROM (
    SELECT session_id, at_ms,
           web_search_requests - coalesce(lag(web_search_requests) OVER (
               PARTITION BY session_id ORDER BY at_ms, event_id), 0) AS quantity
    FROM usage_snapshots WHERE at_ms <= $as_of
) WHERE quantity <> 0
"""

# Running milliseconds per session x UTC day x price book, from pieces of running time (the
# billing pieces, or what-if's edited intervals). A piece inside one day and one book (nearly
# all of them) is summed as is; the others are cut at every midnight and book boundary first.
_RUNTIME_DAYS_QUERY = """
WITH running AS (
    SELECT session_id, start_ms, end_ms, provisional,
           {day_start} <> {day_last} OR {inside} AS crossing
    FROM ({source})
    -- an open session that started running at as_of keeps a 0 ms row: it is still open
    WHERE status = 'running' AND (end_ms > start_ms OR provisional)
), cut AS (
    SELECT session_id, provisional, start_ms, end_ms FROM running WHERE NOT crossing
    UNION ALL
    SELECT session_id, provisional, unnest(cuts) AS start_ms,
           unnest(cuts[2:] || [end_ms]) AS end_ms
    FROM (SELECT *, list_sort(list_distinct([start_ms] || list_filter(
                        range({day_start} + {day}, end_ms, {day}) || {bounds},
                        lambda x: x > start_ms AND x < end_ms))) AS cuts
          FROM running WHERE crossing)
)
SELECT session_id, {day_start} AS day_ms, {book} AS book_id,
       sum(end_ms - start_ms)::BIGINT AS ms,
       coalesce(bool_or(provisional) FILTER (WHERE end_ms > start_ms), false) AS provisional,
       bool_or(provisional) AS open
FROM cut GROUP BY ALL
"""

# The same runtime_days from the status events, for the full rating, without sorting them all:
# from each session's status list (meter.intervals.STATUS_LISTS_SQL: its events packed as
# at_ms x 8 + a status code, 1 for running, in time order up to its terminal instant). Each
# running event starts a piece ending at the next event (or as_of); a session whose last event
# is running is open, and the pieces of its last running stretch are provisional. Sessions with
# two events in one millisecond (`tied`: their order is by event id) and thread-only sessions
# are left to meter.intervals' exact pieces.
# `parts`: how many days x books the session's time [first_ms, last_ms) touches: 1 (most
# sessions) or 2 (one midnight or book boundary, `cut_ms`, inside) are summed in the list;
# 3 stands for more, unnested into pieces and cut by runtime_days_query. An open session whose
# running stretch starts at as_of keeps a 0 ms piece there (the merged intervals' provisional
# interval), so its time reaches as_of + 1; a repeated `running` at as_of adds no piece.
_RUNTIME_LISTS = """
CREATE OR REPLACE TEMP TABLE runtime_lists AS
WITH flagged AS (
    SELECT session_id, ev, tied,
           ev[-1] & 7 = 1 AS open,
           -- the open stretch: the events after the last one that is not running
           CASE WHEN ev[-1] & 7 = 1 THEN 1 + coalesce(list_max(list_transform(
                    ev, lambda e, i: CASE WHEN e & 7 <> 1 THEN i END)), 0) END AS stretch_from,
           ev[1] >> 3 AS first_ms
    FROM {lists}
), spans AS (
    SELECT *, CASE WHEN NOT open THEN ev[-1] >> 3
                   WHEN ev[stretch_from] >> 3 < $as_of THEN $as_of ELSE $as_of + 1 END AS last_ms
    FROM flagged
), cut AS (
    SELECT *, {next_cut_first} AS cut_ms FROM spans
)
SELECT *, CASE WHEN cut_ms >= last_ms THEN 1 WHEN {next_cut_cut} >= last_ms THEN 2 ELSE 3 END
              AS parts
FROM cut
"""

# runtime_days rows of the sessions in one or two parts, summed in their lists: the part
# before cut_ms, and for two-part sessions the part from it. A row is there where something ran
# in it or the open stretch touches it (with no two events in one millisecond, every running
# piece but an open session's last one lasts at least 1 ms).
_LIST_DAYS = """
WITH summed AS (
    SELECT session_id, parts, first_ms, cut_ms, open,
           ev[stretch_from] >> 3 AS stretch_ms,
           CASE WHEN parts = 1 THEN list_sum(list_transform(ev, lambda e, i: CASE WHEN e & 7 = 1
                    THEN coalesce(ev[i + 1] >> 3, $as_of) - (e >> 3) ELSE 0 END))
                ELSE list_sum(list_transform(ev, lambda e, i: CASE WHEN e & 7 = 1 THEN greatest(
                    least(coalesce(ev[i + 1] >> 3, $as_of), cut_ms) - (e >> 3), 0) ELSE 0 END))
           END::BIGINT AS ms_before,
           CASE WHEN parts = 2 THEN list_sum(list_transform(ev, lambda e, i: CASE WHEN e & 7 = 1
               THEN greatest(coalesce(ev[i + 1] >> 3, $as_of) - greatest(e >> 3, cut_ms), 0)
               ELSE 0 END))::BIGINT END AS ms_after
    FROM runtime_lists WHERE parts <= 2 AND NOT tied
)
SELECT session_id, {day_first} AS day_ms, {book_first} AS book_id, ms_before AS ms,
       open AND stretch_ms < cut_ms AND stretch_ms < $as_of AS provisional,
       open AND stretch_ms < cut_ms AS open
FROM summed WHERE ms_before > 0 OR (open AND stretch_ms < cut_ms)
UNION ALL
SELECT session_id, {day_cut} AS day_ms, {book_cut} AS book_id, ms_after AS ms,
       open AND $as_of > greatest(stretch_ms, cut_ms) AS provisional, open
FROM summed WHERE parts = 2 AND (ms_after > 0 OR open)
"""

# Running pieces of the other sessions, for runtime_days_query to cut and sum.
_LIST_PIECES = """
SELECT session_id, 'running' AS status, e >> 3 AS start_ms, coalesce(nx >> 3, $as_of) AS end_ms,
       open AND i >= stretch_from AS provisional
FROM (SELECT session_id, open, stretch_from, unnest(ev) AS e, unnest(ev[2:] || [NULL]) AS nx,
             unnest(range(1, len(ev) + 1)) AS i
      FROM runtime_lists WHERE parts = 3 AND NOT tied)
WHERE e & 7 = 1 AND (coalesce(nx >> 3, $as_of) > e >> 3 OR i = stretch_from)
"""

# The exact pieces of the sessions the lists leave out, provisional through the open stretch
# (a running piece of positive length that starts at or after the stretch's first event is in
# it: whatever shares that millisecond before it in event-id order ends there); of the 0 ms
# pieces only the stretch's start at as_of is kept, as the merged intervals keep it.
_EXACT_RUNNING = """
SELECT p.session_id, p.status, p.start_ms, p.end_ms,
       coalesce(p.start_ms >= s.start_ms, false) AS provisional
FROM exact_pieces p LEFT JOIN ({stretch}) s USING (session_id)
WHERE p.status = 'running' AND (p.end_ms > p.start_ms OR p.start_ms = s.start_ms)
"""


def _next_cut(con: duckdb.DuckDBPyConnection, ms: str) -> str:
    """SQL: the first UTC midnight or book boundary after instant `ms`."""
    bounds = _book_bound_list(con)
    whens = " ".join(f"WHEN {ms} < {b} THEN {b}" for b in bounds)
    return (f"least({day_start(ms)} + {DAY_MS}, CASE {whens} ELSE {2**62} END)" if bounds
            else f"({day_start(ms)} + {DAY_MS})")


def stage_runtime(con: duckdb.DuckDBPyConnection, as_of_ms: int,
                  status_lists: StatusLists | None = None) -> None:
    """`runtime_days` from the status events, as `runtime_days_sql` over the merged intervals
    computes it, gathering each session's events rather than sorting them all (see
    _RUNTIME_LISTS; `status_lists`: those already gathered as of `as_of_ms`)."""
    params = {"as_of": as_of_ms}
    lists = status_lists or gather_status_lists(con, as_of_ms, "runtime_status_lists")
    con.execute(_RUNTIME_LISTS.format(lists=lists.table,
                                      next_cut_first=_next_cut(con, "first_ms"),
                                      next_cut_cut=_next_cut(con, "cut_ms")), params)
    if status_lists is None:
        con.execute(f"DROP TABLE {lists.table}")
    threads = lists.thread_only
    tied, many = con.execute("SELECT count(*) FILTER (WHERE tied), "
                             "count(*) FILTER (WHERE parts = 3 AND NOT tied) FROM runtime_lists"
                             ).fetchall()[0]
    pieces = [_LIST_PIECES] if many else []  # (left out of the plan when there are none)
    if threads or tied:
        exact = exact_pieces_sql("SELECT session_id FROM runtime_lists WHERE tied", threads)
        con.execute(f"CREATE OR REPLACE TEMP TABLE exact_pieces AS {exact}", params)
        stretch = open_stretch_sql("SELECT session_id FROM exact_pieces "
                                   "WHERE provisional AND status = 'running'", threads)
        pieces.append(_EXACT_RUNNING.format(stretch=stretch))
    in_lists = _LIST_DAYS.format(day_first=day_start("first_ms"),
                                 book_first=book_sql(con, "first_ms"),
                                 day_cut=day_start("cut_ms"), book_cut=book_sql(con, "cut_ms"))
    if pieces:
        con.execute(runtime_days_sql(con, " UNION ALL ".join(pieces))
                    + f" UNION ALL SELECT * FROM ({in_lists})", params)
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE runtime_days AS {in_lists}", params)
    con.execute("DROP TABLE runtime_lists")
    con.execute("DROP TABLE IF EXISTS exact_pieces")


_OPEN_SESSIONS = """
CREATE OR REPLACE TEMP TABLE open_sessions AS
SELECT DISTINCT session_id FROM runtime_days WHERE open
"""

# What a charge line is priced as (its SKU): meter, model, token class, tier, unit price and
# book. Runtime and search SKUs are numbered -2 x book - 1 and -2 x book - 2; token SKUs
# 8 x line_key + the class's position (see _TOKEN_SKUS), so charge lines compute theirs
# without a join.
_CHARGE_SKUS = f"""
CREATE OR REPLACE TEMP TABLE charge_skus AS
SELECT CAST(-2 * book_id - 1 AS BIGINT) AS sku, 'runtime' AS meter, NULL::VARCHAR AS model,
       NULL::VARCHAR AS token_class, 'standard' AS tier,
       CAST(runtime_usd_per_hour AS DECIMAL(38, 12)) AS unit_price, 'ms' AS unit,
       '{PRICE_UNITS["runtime"]}' AS price_unit, name AS book, version AS book_version,
       CAST(rt_units AS HUGEINT) AS units_per_unit
FROM pb_books
UNION ALL
SELECT -2 * book_id - 2, 'web_search', NULL, NULL, 'standard',
       CAST(search_usd_per_1000 AS DECIMAL(38, 12)), 'searches', '{PRICE_UNITS["web_search"]}',
       name, version, units_of(search_usd_per_1000 * 0.001)
FROM pb_books
UNION ALL
SELECT sku, 'tokens', model_id, token_class, tier, CAST(unit_price AS DECIMAL(38, 12)),
       'tokens', '{PRICE_UNITS["tokens"]}', name, version, units_of(unit_price * 0.000001)
FROM token_skus JOIN pb_books USING (book_id) WHERE sku = canonical
"""

# Token SKUs: 8 x line_key + the class's position. Two price lists of one model may share a
# class's price (e.g. fast rates that leave cache reads as they are): such SKUs are the same
# line item, numbered by the smallest (`canonical`).
_TOKEN_SKUS = f"""
CREATE OR REPLACE TEMP TABLE token_skus AS
SELECT *, min(sku) OVER (PARTITION BY book_id, model_id, tier, token_class, unit_price)
              AS canonical
FROM (SELECT DISTINCT 8 * line_key + unnest([0, 1, 2, 3, 4]) AS sku, book_id, model_id, tier,
             unnest({_CLASS_LIST}) AS token_class, unnest([{", ".join(_P)}]) AS unit_price
      FROM token_prices WHERE book_id >= 0)
WHERE unit_price IS NOT NULL
"""

# Token quantities summed per session x UTC day x resolved price list (line_key), with their
# provisional flag: what both shapes of token lines below are made of.
_TOK = f"""
    SELECT t.session_id, t.day_ms, t.line_key,
           {", ".join(f"sum({q})::BIGINT AS {q}" for q in _Q)},
           t.session_id IN (SELECT session_id FROM open_sessions) AS provisional
    FROM token_priced t WHERE t.book_id >= 0 GROUP BY ALL"""
_NO_TOK_LINES = """
    SELECT NULL::VARCHAR AS session_id, NULL::BIGINT AS day_ms, NULL::BOOLEAN AS provisional,
           NULL::BIGINT AS sku, NULL::BIGINT AS quantity, NULL::DECIMAL(18, 12) AS unit_price
    WHERE false"""

# Token lines, wide: one row per session x day x price list, a quantity and an exact amount
# per token class (NULL where the class has no price: that usage is in `unrated`). The
# `charges` view unpivots them into one line per SKU on read (writing five narrow rows per
# line here took 0.4 s of the 1.0 s pricing took at 10M requests). Empty where SKUs are
# shared (see below).
_TOKEN_LINES = f"""
CREATE OR REPLACE TEMP TABLE token_lines AS
SELECT {as_date("day_ms")} AS day, session_id, line_key,
       {", ".join(_Q)},
       {", ".join(f"CAST({q} * {p} * 0.000001 AS {EXACT_SQL_TYPE}) AS {a}"
                  for q, p, a in zip(_Q, _P, _A, strict=True))},
       provisional
FROM ({{tok}}) JOIN (SELECT DISTINCT line_key, {", ".join(_P)} FROM token_prices) p
     USING (line_key)
WHERE {{wide}}
"""

# Where two price lists of one model share a class's price (e.g. fast rates that leave cache
# reads as they are), such SKUs are one line item, numbered by the smallest (`canonical`):
# the token lines are then unpivoted, renumbered and summed again here, into charge_lines.
_MERGED_TOK_LINES = f"""
    SELECT u.session_id, u.day_ms, bool_or(u.provisional) AS provisional, k.canonical AS sku,
           sum(u.quantity)::BIGINT AS quantity, any_value(u.unit_price) AS unit_price
    FROM (SELECT session_id, day_ms, provisional, 8 * line_key + unnest([0, 1, 2, 3, 4]) AS sku,
                 unnest([{", ".join(_Q)}]) AS quantity, unnest([{", ".join(_P)}]) AS unit_price
          FROM ({{tok}}) JOIN (SELECT DISTINCT line_key, {", ".join(_P)} FROM token_prices)
               USING (line_key)) u
    JOIN token_skus k USING (sku)
    GROUP BY u.session_id, u.day_ms, k.canonical"""

# The priced lines, narrow: day, session, SKU, quantity and exact amount, for runtime,
# searches and shared token SKUs. The `charges` view adds the token lines, the SKU's and the
# session's attributes on read.
_CHARGE_LINES = f"""
CREATE OR REPLACE TEMP TABLE charge_lines AS
WITH tok_lines AS ({{tok_lines}}
)
SELECT {as_date("day_ms")} AS day, session_id, -2 * book_id - 1 AS sku, ms AS quantity,
       runtime_usd(ms, b.rt_units) AS amount_exact, provisional
FROM runtime_days JOIN pb_books b USING (book_id) WHERE ms > 0
UNION ALL
SELECT {as_date("day_ms")}, session_id, sku, quantity,
       CAST(quantity * unit_price * 0.000001 AS {EXACT_SQL_TYPE}), provisional
FROM tok_lines WHERE quantity <> 0 AND unit_price IS NOT NULL
UNION ALL
SELECT {as_date("day_ms")}, session_id, -2 * book_id - 2, quantity,
       CAST(quantity * b.search_usd_per_1000 * 0.001 AS {EXACT_SQL_TYPE}),
       session_id IN (SELECT session_id FROM open_sessions)
FROM (SELECT session_id, {day_start("at_ms")} AS day_ms, {{book}} AS book_id,
             sum(quantity)::BIGINT AS quantity
      FROM search_lines GROUP BY ALL) JOIN pb_books b USING (book_id)
"""

# Every day from the first to the last that can carry a line, with its period (YYYY-MM),
# found from the staged tables' bounds rather than by a pass over the charge lines.
_CHARGE_DAYS = f"""
CREATE OR REPLACE TEMP TABLE charge_days AS
WITH bounds AS (
    SELECT min(lo) AS lo, max(hi) AS hi FROM (
        SELECT min(day_ms) AS lo, max(day_ms) AS hi FROM runtime_days
        UNION ALL SELECT {day_start("min(at_ms)")}, {day_start("max(at_ms)")} FROM usage_lines
        UNION ALL SELECT {day_start("min(at_ms)")}, {day_start("max(at_ms)")} FROM search_lines)
)
SELECT {as_date("d")} AS day, strftime({as_date("d")}, '%Y-%m') AS period
FROM (SELECT unnest(range(lo, hi + 1, {DAY_MS})) AS d FROM bounds WHERE lo IS NOT NULL)
"""

# The charges relation reports read: one row per day x session x SKU.
CHARGES_VIEW = f"""
CREATE OR REPLACE TEMP VIEW charges AS
WITH lines AS (
    SELECT day, session_id, sku, quantity, amount_exact, provisional FROM charge_lines
    UNION ALL
    SELECT * FROM (
        SELECT day, session_id, 8 * line_key + unnest([0, 1, 2, 3, 4]) AS sku,
               unnest([{", ".join(_Q)}]) AS quantity, unnest([{", ".join(_A)}]) AS amount_exact,
               provisional
        FROM token_lines)
    WHERE quantity <> 0 AND amount_exact IS NOT NULL
)
SELECT d.period, c.day, c.session_id,
       s.agent_id, s.environment_id, s.metadata AS tags,
       k.meter, k.model, k.token_class, k.tier, c.quantity, k.unit, k.unit_price, k.price_unit,
       c.amount_exact, k.book, k.book_version, c.provisional,
       c.quantity * k.units_per_unit AS amount_units
FROM lines c
JOIN charge_skus k USING (sku)
JOIN charge_days d USING (day)  -- a period filter prunes lines through this small join
LEFT JOIN rating_sessions s USING (session_id)
"""

_UNRATED = f"""
CREATE OR REPLACE TEMP TABLE unrated AS
WITH tok AS (
    SELECT {as_date("day_ms")} AS day, session_id, model_raw,
           unnest({_CLASS_LIST}) AS token_class,
           unnest([{", ".join(_Q)}]) AS quantity, unnest([{", ".join(_R)}]) AS reason
    FROM token_priced WHERE {" OR ".join(f"{r} IS NOT NULL" for r in _R)}
)
SELECT day, strftime(day, '%Y-%m') AS period, session_id, 'tokens' AS meter,
       model_raw AS model, token_class, sum(quantity)::BIGINT AS quantity, 'tokens' AS unit,
       reason
FROM tok WHERE reason IS NOT NULL AND quantity <> 0
GROUP BY ALL
UNION ALL
SELECT {as_date("day_ms")}, strftime({as_date("day_ms")}, '%Y-%m'), session_id, 'runtime',
       NULL, NULL, sum(ms)::BIGINT, 'ms', 'no price book in force'
FROM runtime_days WHERE book_id = -1 AND ms > 0 GROUP BY ALL
UNION ALL
SELECT {as_date(day_start("at_ms"))}, strftime({as_date(day_start("at_ms"))}, '%Y-%m'),
       session_id, 'web_search', NULL, NULL, sum(quantity)::BIGINT, 'searches',
       'no price book in force'
FROM search_lines WHERE {{book}} = -1
GROUP BY ALL
"""


def book_sql(con: duckdb.DuckDBPyConnection, ms: str) -> str:
    """SQL: the id of the book in force at instant `ms` (-1 when none), as a CASE over the few
    loaded books. Where books overlap, the one that took effect last applies."""
    books = sorted(_loaded_books(con), key=lambda b: (b[1], b[0]), reverse=True)
    whens = " ".join(
        f"WHEN {ms} >= {from_ms}" + (f" AND {ms} < {to_ms}" if to_ms is not None else "")
        + f" THEN {book_id}" for book_id, from_ms, to_ms in books)
    return f"(CASE {whens} ELSE -1 END)" if books else "-1"


def _book_bound_list(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Every instant at which the book in force may change."""
    books = _loaded_books(con)
    return sorted({f for _, f, _ in books} | {t for _, _, t in books if t is not None})


def runtime_days_query(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """SQL of runtime_days' rows from query `source` (rows of session_id, status, start_ms,
    end_ms, provisional), cut at the loaded books' boundaries and at UTC midnights."""
    bounds = _book_bound_list(con)
    return _RUNTIME_DAYS_QUERY.format(
        source=source, day_start=day_start("start_ms"), day_last=day_start("end_ms - 1"),
        day=DAY_MS, book=book_sql(con, "start_ms"),
        bounds="[" + ", ".join(map(str, bounds)) + "]::BIGINT[]",
        inside=" OR ".join(f"(start_ms < {b} AND end_ms > {b})" for b in bounds) or "false")


def prepare_usage(
    con: duckdb.DuckDBPyConnection,
    books: Sequence[PriceBook],
    options: RatingOptions,
    status_lists: StatusLists | None = None,
) -> None:
    """Stage 1: load the books and meter the usage into temp tables, not yet priced
    (`status_lists`: see `stage_runtime`).

    Leaves `pb_books`, `pb_rates`, `pb_aliases`, `runtime_days` (running ms per session x day
    x book), `rating_sessions`, `thread_models`, `usage_lines` (token quantities, a column per
    class) and `search_lines`. What-if scenarios change these (or reload other books with
    `load_books`) before `price_usage`.
    """
    params = {"as_of": options.as_of_ms}
    install_sql_macros(con)
    load_books(con, books)
    stage_runtime(con, options.as_of_ms, status_lists)
    con.execute(_SESSIONS)
    con.execute(_THREAD_MODELS)
    groups, long_context = _span_groups(con)
    con.execute(_USAGE_LINES.format(
                    span_groups=groups, span_lines=_SPAN_LINES, long_context=long_context,
                    long_context_lines=_LONG_CONTEXT_LINES if long_context else ""),
                {**params, "ttl": options.span_cache_ttl})
    con.execute(_SEARCHES, params)


_SPAN_GROUP = """
    SELECT m.session_id, {thread} AS thread_id, {book} AS book_id, {day} AS day_ms,
           -- fast or not as the request says, else as its session's agent says (NULL: the
           -- session has no record)
           CAST(CASE WHEN m.speed = 'fast' THEN 1 WHEN m.speed IS NOT NULL THEN 0
                     WHEN s.speed = 'fast' THEN 1 WHEN s.speed IS NOT NULL THEN 0 END
                AS TINYINT) AS speed_code,
           m.at_ms > coalesce(ls.last_ms, -1) AS after_last, {bucket} AS lc_bucket,
           -- the session's (or thread's) model and residency: the same for the whole group
           any_value({model}) AS model_raw, any_value(coalesce(s.inference_geo = 'us', false))
               AS us,
           min(m.at_ms) AS at_ms,
           sum(m.input_tokens)::BIGINT AS q_input, sum(m.output_tokens)::BIGINT AS q_output,
           sum(m.cache_write_tokens)::BIGINT AS q_write,
           sum(m.cache_read_tokens)::BIGINT AS q_read
    FROM {source} m LEFT JOIN last_snap ls USING (session_id)
    LEFT JOIN rating_sessions s USING (session_id){thread_join}
    WHERE m.at_ms <= $as_of AND m.thread_id IS {null}{where}
    GROUP BY ALL"""

_THREAD_JOIN = """
    LEFT JOIN thread_models tm ON tm.session_id = m.session_id AND tm.thread_id = m.thread_id"""

_PROMPT = "(m.input_tokens + m.cache_read_tokens + m.cache_write_tokens)"

# Requests that may be long context, dated at the snapshot that covers them (the first at or
# after them), where snapshots carry the session's usage: their long-context line then meets
# the standard quantities it takes its tokens from on the same day, book and usage line.
# (The requests are filtered before the ASOF join: DuckDB does not push a filter below one.)
_COVERED = """(
    SELECT m.* REPLACE (CASE WHEN m.session_id IN (SELECT session_id FROM multi) THEN m.at_ms
                             ELSE coalesce(c.at_ms, m.at_ms) END AS at_ms)
    FROM (SELECT * FROM model_requests m WHERE m.at_ms <= $as_of{where}) m
    ASOF LEFT JOIN (SELECT session_id, at_ms FROM usage_snapshots
                    WHERE at_ms <= $as_of
                      AND session_id IN (SELECT session_id FROM lc_sessions)) c
      ON c.session_id = m.session_id AND c.at_ms >= m.at_ms)"""


def _span_groups(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    """SQL of the request groups (see `_USAGE_LINES`): all requests (bucket 0); and the
    long-context CTEs (_LONG_CONTEXT, "" where no model in use has a long-context rate), with
    the thresholds of the models in use (threshold_tokens, k): a request is in bucket b when
    its prompt exceeds b of them."""
    thresholds = [r[0] for r in con.execute(
        f"SELECT DISTINCT r.threshold_tokens {_LC_RATES} "
        "WHERE r.threshold_tokens IS NOT NULL ORDER BY 1").fetchall()]
    book, day = book_sql(con, "m.at_ms"), day_start("m.at_ms")
    sides = (("NULL::VARCHAR", "NULL", "s.model_id", ""),
             ("m.thread_id", "NOT NULL", "coalesce(tm.model_id, s.model_id)", _THREAD_JOIN))

    def groups(bucket: str, where: str, source: str) -> str:
        return "\n    UNION ALL".join(
            _SPAN_GROUP.format(thread=thread, null=null, model=model, thread_join=join,
                               book=book, day=day, bucket=bucket, where=where, source=source)
            for thread, null, model, join in sides)

    standard = groups("0", "", "model_requests")
    if not thresholds:
        return standard, ""
    bucket = " + ".join(f"({_PROMPT} > {t})::INTEGER" for t in thresholds)
    where = (f" AND {_PROMPT} > {thresholds[0]} "
             "AND m.session_id IN (SELECT session_id FROM lc_sessions)")
    values = ", ".join(f"({t}, {k})" for k, t in enumerate(thresholds))
    return standard, _LONG_CONTEXT.format(
        lc_thresholds=f"VALUES {values}", lc_rates=_LC_RATES, span_lines=_SPAN_LINES,
        lc_requests=_COVERED.format(where=where), lc_groups=groups(bucket, "", "lc_requests"))


def runtime_days_sql(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """SQL rebuilding `runtime_days` from query `source` (see runtime_days_query)."""
    return "CREATE OR REPLACE TEMP TABLE runtime_days AS " + runtime_days_query(con, source)


def price_usage(con: duckdb.DuckDBPyConnection) -> None:
    """Stage 2: price the staged usage with the loaded books into `charges` and `unrated`."""
    install_sql_macros(con)
    at_book = book_sql(con, "at_ms")
    shared = _price_tables(con)
    con.execute(_TOKEN_PRICED.format(
        day=day_start("u.at_ms"), book=book_sql(con, "u.at_ms"),
        prices=", ".join(f"p.{c}" for c in _P), reasons=", ".join(f"p.{c}" for c in _R)))
    con.execute(_OPEN_SESSIONS)
    tok_lines = _MERGED_TOK_LINES.format(tok=_TOK) if shared else _NO_TOK_LINES
    con.execute(_CHARGE_LINES.format(book=at_book, tok_lines=tok_lines))
    con.execute(_TOKEN_LINES.format(tok=_TOK, wide="false" if shared else "true"))
    con.execute(_CHARGE_DAYS)
    # (unrated: a ledger reader may have left a view of that name)
    drop_relation(con, "charges", "unrated")
    con.execute(CHARGES_VIEW)
    con.execute(_UNRATED.format(book=at_book))


def _price_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """`token_prices`, `token_skus` and `charge_skus` for the loaded books and the model
    spellings and tiers of `usage_lines`; whether some token SKUs are shared. A connection that
    rates again with the same books (a store kept open by an API user, which brings its
    ledger up to date now and then) keeps its tables while they cover the pairs at hand, else
    prices the new pairs with the old. (The collector opens a connection per stored batch,
    so it builds them every time.)"""
    kept = _PRICED.pop(con, None)
    loaded = _BOOKS_OF.get(con)
    token = loaded[0] if loaded is not None else 0  # (0: books loaded otherwise, not kept)
    fresh = "SELECT DISTINCT model_raw, tier FROM usage_lines"
    missing = None
    if kept is not None and kept == token:
        try:
            other, missing, shared = con.execute(f"""
                SELECT (SELECT count(*) FROM price_keys WHERE token <> $t),
                       (SELECT count(*) FROM ({fresh} EXCEPT
                                              SELECT model_raw, tier FROM price_keys)),
                       (SELECT count(*) FROM token_skus WHERE sku <> canonical)""",
                {"t": token}).fetchall()[0]
        except duckdb.CatalogException:  # (a table dropped since: build them again)
            other = 1
        if other:  # (of another load: a transaction rolled back)
            missing = None
        elif missing == 0:
            _PRICED[con] = token
            return bool(shared)
    if missing is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE price_keys AS "
                    f"SELECT *, {token}::BIGINT AS token FROM ({fresh})")
    else:
        con.execute(f"INSERT INTO price_keys SELECT *, {token} FROM ({fresh} EXCEPT "
                    "SELECT model_raw, tier FROM price_keys)")
    con.execute(_TOKEN_PRICES)
    _narrow_prices(con)
    con.execute(_TOKEN_SKUS)
    con.execute(_CHARGE_SKUS)  # with the books' names as of this pricing
    _check_whole_units(con)
    if token:
        _PRICED[con] = token
    return bool(con.execute("SELECT count(*) FROM token_skus WHERE sku <> canonical"
                            ).fetchall()[0][0])


def _check_whole_units(con: duckdb.DuckDBPyConnection) -> None:
    """Every SKU's price per unit of quantity must be a whole number of money units (at most
    12 decimals per token, as rates of 8 decimals x a residency multiplier are), so that
    `amount_units` = quantity x units_per_unit is the exact amount of any line."""
    rows = con.execute("""
        SELECT meter, model, token_class, unit_price FROM charge_skus
        WHERE CAST(units_per_unit AS DECIMAL(38, 0)) <> CASE meter
            WHEN 'runtime' THEN CAST(unit_price * 2500000000000 AS DECIMAL(38, 0))
            WHEN 'tokens' THEN unit_price * 9000000000000
            ELSE unit_price * 9000000000000000 END
        LIMIT 1""").fetchall()
    if rows:
        meter, model, token_class, price = rows[0]
        raise UsageError(f"{meter} {model or ''} {token_class or ''} price {price} is finer "
                         "than the money unit (USD / 9e18 per token, search or ms)")


_NARROW_PRICE = "DECIMAL(18, 12)"


def _narrow_prices(con: duckdb.DuckDBPyConnection) -> None:
    """Store the unit prices as DECIMAL(18,12) (64-bit) when that is exact for every one of
    them, as it is for list prices even times a residency multiplier: DuckDB multiplies
    64-bit decimals an order of magnitude faster than 128-bit ones. Otherwise keep them wide."""
    exact = con.execute("SELECT coalesce(bool_and(" + " AND ".join(
        f"({p} IS NULL OR coalesce(TRY_CAST({p} AS {_NARROW_PRICE}) = {p}, false))"
        for p in _P)
        + "), true) FROM token_prices").fetchall()[0][0]
    if exact:
        con.execute("CREATE OR REPLACE TEMP TABLE token_prices AS SELECT * REPLACE ("
                    + ", ".join(f"CAST({p} AS {_NARROW_PRICE}) AS {p}" for p in _P)
                    + ") FROM token_prices")


def drop_relation(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop each temp table or view of `names`, whichever it is (what-if swaps one for the
    other), looked up at once."""
    found = con.execute(
        "SELECT 'VIEW', view_name FROM duckdb_views() "
        "WHERE temporary AND list_contains($n, view_name) "
        "UNION ALL SELECT 'TABLE', table_name FROM duckdb_tables() "
        "WHERE temporary AND list_contains($n, table_name)", {"n": list(names)}).fetchall()
    for kind, name in found:
        con.execute(f"DROP {kind} temp.main.{name}")


def rate(
    con: duckdb.DuckDBPyConnection,
    books: Sequence[PriceBook],
    options: RatingOptions,
    status_lists: StatusLists | None = None,
) -> None:
    """Rate everything in the store as of `options.as_of_ms` (`status_lists`: the status
    events already gathered as of then, meter.intervals.gather_status_lists; else gathered
    here).

    Leaves `charges` (priced line items, one per day x session x SKU: a view over the temp
    tables `charge_lines` (runtime, searches) and `token_lines` (wide, a column pair per token
    class), adding the session's dimensions and the book's names) and
    `unrated` (usage that could not be priced, with the reason) on the connection.
    Works on a read-only connection: only temp objects are written.
    """
    prepare_usage(con, books, options, status_lists)
    price_usage(con)
