"""Sessions page data: the period's sessions by cost, and one session's timeline and bill.

The list is the rated charges grouped by session (the top `limit` only leave DuckDB). A
session's timeline is read live from its events: its running/idle intervals come from
meter.intervals (the rating's rules; DuckDB pushes the session filter into the windows, so
one session costs milliseconds on any store), thread lanes and model requests from the raw
tables. Its bill is its charge lines, each rounded half-even to the cent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb
import pandas as pd

from meter.intervals import INTERVALS_SQL
from meter.vocabulary import TOKEN_CLASSES
from reports.dashboard.filters import TEAM_SQL, Filters, filtered_charges, team_sql

__all__ = ["session_detail", "session_list"]


def _fast_rates() -> pd.DataFrame:
    """The fast-mode token rates of the price books, one row per (book, version, model,
    token class, price): the price with and without the data-residency multiplier, only
    where fast mode applied in the book and its rate differs from the standard one (a fast
    rate equal to the standard one is the standard line). Empty when the books cannot be
    loaded: the lines then keep their stored tier."""
    from pricing.pricebook import PriceBookError, load_pricebooks

    rows: list[tuple[str, str, str, str, str]] = []
    try:
        books = load_pricebooks()
    except (PriceBookError, OSError):
        books = []
    for book in books:
        if not book.modifiers.fast_mode_applies:
            continue
        for model in book.models:
            if model.fast is None:
                continue
            for token_class in TOKEN_CLASSES:
                fast, standard = model.fast.rate(token_class), model.rate(token_class)
                if fast == standard:
                    continue
                for price in {fast, fast * model.geo_multiplier}:
                    rows.append((book.name, book.version, model.id, token_class, str(price)))
    return pd.DataFrame(rows, columns=["book", "book_version", "model", "token_class", "price"])


def session_list(con: duckdb.DuckDBPyConnection, f: Filters, search: str = "",
                 limit: int = 200) -> pd.DataFrame:
    """The `limit` costliest sessions of `f.period` under the filters; `search` matches the
    session id, its title or its agent's name (case-insensitive substring).

    Columns: session_id, title, team, project, agent, model, status, created (UTC
    timestamp), cost (its invoice lines, each rounded to the cent, summed; float),
    running_h, tokens, provisional.
    """
    sub, params = filtered_charges(f)
    params["limit"] = limit
    where = join = ""
    if search.strip():
        join = "LEFT JOIN sessions d USING (session_id)"  # titles and names, to search
        params["q"] = f"%{search.strip()}%"
        where = ("WHERE s.session_id ILIKE $q OR coalesce(d.title, '') ILIKE $q "
                 "OR coalesce(d.agent_name, '') ILIKE $q")
    # Two passes: the costliest sessions by one sum (the cheap aggregate over every line),
    # then their running time and tokens from their own lines only. The subquery is written
    # twice rather than as a CTE, which DuckDB would materialise whole.
    return con.execute(f"""
        WITH top AS (
            SELECT s.session_id, s.exact FROM (
                SELECT session_id, sum(amount_units) AS exact FROM {sub} GROUP BY session_id) s
            {join} {where}
            ORDER BY s.exact DESC, s.session_id LIMIT $limit),
        lines AS (
            SELECT session_id, meter, model, token_class, tier, sum(amount_units) AS exact,
                   sum(quantity) AS quantity,
                   bool_or(provisional) AS provisional, any_value(agent_id) AS agent_id
            FROM {sub} WHERE session_id IN (SELECT session_id FROM top)
            GROUP BY ALL),
        detail AS (
            SELECT session_id, sum(units_cents(exact)) AS cents,
                   coalesce(sum(quantity) FILTER (WHERE meter = 'runtime'), 0) AS running_ms,
                   coalesce(sum(quantity) FILTER (WHERE meter = 'tokens'), 0) AS tokens,
                   bool_or(provisional) AS provisional, any_value(agent_id) AS agent_id
            FROM lines GROUP BY session_id)
        SELECT t.session_id, d.title,
               {team_sql("d.metadata")} AS team,
               d.metadata->>'$.project' AS project,
               coalesce(d.agent_name, x.agent_id) AS agent, d.model_id AS model,
               d.status, make_timestamp(d.created_ms * 1000) AS created,
               CAST(x.cents AS DOUBLE) AS cost,
               x.running_ms / 3600000.0 AS running_h, x.tokens::BIGINT AS tokens,
               x.provisional
        FROM top t JOIN detail x USING (session_id) LEFT JOIN sessions d USING (session_id)
        ORDER BY t.exact DESC, t.session_id
    """, params).fetch_df()


def session_detail(con: duckdb.DuckDBPyConnection, session_id: str,
                   as_of_ms: int) -> dict[str, Any]:
    """One session: {"info": dict or None, "intervals", "threads", "requests", "bill",
    "cost"}. `cost` follows the invoice's rule (lines of meter x model x token class per
    month, each rounded once), so it matches the session's row in the list.

    intervals: status, start_ms, end_ms, duration_ms, provisional (session level, as of
    `as_of_ms`); threads: thread lanes (thread_id, agent_name, status, start_ms, end_ms);
    requests: at_ms, thread_id, input/output/cache tokens, speed, is_error; bill: meter,
    model, token_class, tier (standard, fast or long_context), quantity, unit, unit_price,
    price_unit, amount (cents).
    """
    info_rows = con.execute(f"""
        SELECT session_id, title, status, agent_id, agent_name, model_id, model_speed,
               inference_geo, environment_id, created_ms, updated_ms,
               CAST(metadata AS VARCHAR) AS metadata, {TEAM_SQL.replace('tags', 'metadata')}
                   AS team
        FROM sessions WHERE session_id = $sid
    """, {"sid": session_id}).fetchall()
    cols = ["session_id", "title", "status", "agent_id", "agent_name", "model_id",
            "model_speed", "inference_geo", "environment_id", "created_ms", "updated_ms",
            "metadata", "team"]
    info = dict(zip(cols, info_rows[0], strict=True)) if info_rows else None
    intervals = con.execute(f"""
        SELECT status, start_ms, end_ms, duration_ms, provisional
        FROM ({INTERVALS_SQL}) WHERE session_id = $sid ORDER BY start_ms
    """, {"as_of": as_of_ms, "sid": session_id}).fetch_df()
    threads = con.execute("""
        WITH ev AS (
            SELECT thread_id, status, at_ms,
                   lead(at_ms) OVER (PARTITION BY thread_id ORDER BY at_ms, event_id) AS next_ms
            FROM status_events
            WHERE session_id = $sid AND thread_id IS NOT NULL AND at_ms <= $as_of)
        SELECT ev.thread_id, any_value(t.agent_name) AS agent_name, ev.status,
               ev.at_ms AS start_ms,
               CASE WHEN ev.status = 'terminated' THEN ev.at_ms
                    ELSE coalesce(ev.next_ms, $as_of) END AS end_ms
        FROM ev LEFT JOIN threads t ON t.session_id = $sid AND t.thread_id = ev.thread_id
        GROUP BY ALL ORDER BY ev.thread_id, start_ms
    """, {"sid": session_id, "as_of": as_of_ms}).fetch_df()
    requests = con.execute("""
        SELECT at_ms, thread_id, input_tokens, output_tokens, cache_write_tokens,
               cache_read_tokens, speed, is_error
        FROM model_requests WHERE session_id = $sid AND at_ms <= $as_of ORDER BY at_ms
    """, {"sid": session_id, "as_of": as_of_ms}).fetch_df()
    # The charge lines' tier is the price list's (standard or long context); a token line
    # priced at a fast-mode rate says "fast" here, read from its price book (see _fast_rates).
    con.register("fast_rates", _fast_rates())
    try:
        bill = con.execute("""
            WITH c AS (
                SELECT ch.*, CASE WHEN f.price IS NOT NULL THEN 'fast' ELSE ch.tier END
                           AS shown_tier
                FROM charges ch LEFT JOIN fast_rates f
                  ON ch.meter = 'tokens' AND ch.tier = 'standard' AND f.book = ch.book
                     AND f.book_version = ch.book_version AND f.model = ch.model
                     AND f.token_class = ch.token_class
                     AND CAST(f.price AS DECIMAL(38, 12)) = ch.unit_price
                WHERE ch.session_id = $sid)
            SELECT meter, model, token_class, shown_tier AS tier, sum(quantity)::BIGINT
                       AS quantity, unit,
                   CASE WHEN count(DISTINCT unit_price) = 1 THEN any_value(unit_price) END
                       AS unit_price,
                   any_value(price_unit) AS price_unit,
                   CAST(units_cents(sum(amount_units)) AS DOUBLE) AS amount,
                   bool_or(provisional) AS provisional
            FROM c
            GROUP BY meter, model, token_class, shown_tier, unit
            ORDER BY CASE meter WHEN 'runtime' THEN 0 WHEN 'tokens' THEN 1 ELSE 2 END, model,
                     CASE token_class WHEN 'input' THEN 0 WHEN 'output' THEN 1
                          WHEN 'cache_write_5m' THEN 2 WHEN 'cache_write_1h' THEN 3 ELSE 4 END,
                     shown_tier
        """, {"sid": session_id}).fetch_df()
    finally:
        con.unregister("fast_rates")
    if not bill.empty:
        bill["unit_price"] = bill["unit_price"].astype(float)
    cost = con.execute("""
        SELECT coalesce(sum(cents), 0) FROM (
            SELECT units_cents(sum(amount_units)) AS cents FROM charges
            WHERE session_id = $sid GROUP BY period, meter, model, token_class, tier)
    """, {"sid": session_id}).fetchall()[0][0]
    return {"info": info, "intervals": intervals, "threads": threads, "requests": requests,
            "bill": bill, "cost": Decimal(cost)}
