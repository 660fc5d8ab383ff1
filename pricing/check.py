"""Our rating vs the provider's own `list_cost`, per session: drift made visible.

`session.usage.list_cost` is the provider's cumulative cost at list prices, in whole cents,
at the snapshot instant. We price the same usage up to that instant (tokens and searches of
the snapshots, runtime of the running time before it) and show both side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb

from meter.intervals import build_pieces
from pricing.rating import book_sql

CHECK_SQL = """
WITH last_snap AS (
    SELECT session_id, at_ms, list_cost_cents FROM usage_snapshots
    WHERE list_cost_cents IS NOT NULL AND at_ms <= $as_of
    QUALIFY row_number() OVER (PARTITION BY session_id ORDER BY at_ms DESC, event_id DESC) = 1
), token_classes AS (
    SELECT t.session_id, t.at_ms, unnest([t.q_input, t.q_output, t.q_5m, t.q_1h, t.q_read]) AS q,
           unnest([t.p_input, t.p_output, t.p_5m, t.p_1h, t.p_read]) AS price,
           unnest([t.r_input, t.r_output, t.r_5m, t.r_1h, t.r_read]) AS reason
    FROM token_priced t SEMI JOIN last_snap l USING (session_id)
), tokens AS (
    SELECT t.session_id,
           sum(t.q * t.price * 0.000001) FILTER (WHERE t.reason IS NULL) AS amount,
           count(*) FILTER (WHERE t.reason IS NOT NULL AND t.q <> 0) AS unrated_lines
    FROM token_classes t JOIN last_snap l USING (session_id)
    WHERE t.at_ms <= l.at_ms GROUP BY t.session_id
), searches AS (
    SELECT s.session_id, sum(s.quantity * b.search_usd_per_1000 * 0.001) AS amount
    FROM search_lines s JOIN last_snap l USING (session_id)
    JOIN pb_books b ON b.book_id = {search_book}  -- the book rating uses
    WHERE s.at_ms <= l.at_ms GROUP BY s.session_id
), running AS (
    SELECT l.session_id, sum(least(i.end_ms, l.at_ms) - i.start_ms)::BIGINT AS ms
    FROM last_snap l JOIN check_pieces i
      ON i.session_id = l.session_id AND i.status = 'running' AND i.start_ms < l.at_ms
    GROUP BY l.session_id
), engine AS (
    SELECT l.session_id, l.at_ms, l.list_cost_cents,
           coalesce(t.amount, 0) + coalesce(s.amount, 0)
             + coalesce(units_usd(runtime_units(r.ms, b.runtime_usd_per_hour)), 0) AS engine_usd,
           coalesce(t.unrated_lines, 0) AS unrated_lines
    FROM last_snap l
    LEFT JOIN tokens t USING (session_id)
    LEFT JOIN searches s USING (session_id)
    LEFT JOIN running r USING (session_id)
    LEFT JOIN pb_books b ON b.book_id = {snapshot_book}
)
SELECT session_id, at_ms AS snapshot_ms,
       CAST(list_cost_cents AS DECIMAL(38,2)) * 0.01 AS provider_usd,
       CAST(engine_usd AS DECIMAL(38,6)) AS engine_usd,
       CAST(engine_usd - CAST(list_cost_cents AS DECIMAL(38,2)) * 0.01 AS DECIMAL(38,6))
           AS difference_usd,
       abs(engine_usd - CAST(list_cost_cents AS DECIMAL(38,2)) * 0.01) > $tolerance
           OR unrated_lines > 0 AS flagged
FROM engine
ORDER BY abs(difference_usd) DESC, session_id
"""


def list_cost_check(
    con: duckdb.DuckDBPyConnection, as_of_ms: int, tolerance_usd: str = "0.005"
) -> duckdb.DuckDBPyRelation:
    """Per session with a list_cost: provider vs engine. Needs `pricing.rating.rate` first.

    The provider rounds to the nearest cent, so a difference up to half a cent is expected;
    anything beyond `tolerance_usd`, or any unrated usage, is flagged.
    """
    build_pieces(con, as_of_ms, table="check_pieces")
    sql = CHECK_SQL.format(search_book=book_sql(con, "s.at_ms"),
                           snapshot_book=book_sql(con, "l.at_ms"))
    return con.sql(sql, params={"as_of": as_of_ms, "tolerance": tolerance_usd})


@dataclass(frozen=True)
class ListCostRow:
    """One session: the provider's list_cost at its last snapshot and ours for the same usage
    (USD), their difference, and whether it is flagged (beyond the tolerance, or unrated
    usage). The fields are the columns of `list_cost_check`, in its order."""

    session_id: str
    snapshot_ms: int
    provider_usd: Decimal
    engine_usd: Decimal
    difference_usd: Decimal
    flagged: bool


def list_cost_rows(con: duckdb.DuckDBPyConnection, as_of_ms: int,
                   tolerance_usd: str = "0.005") -> list[ListCostRow]:
    """`list_cost_check` as typed rows, largest difference first."""
    return [ListCostRow(*row) for row in list_cost_check(con, as_of_ms, tolerance_usd).fetchall()]
