"""Data page: what the store holds, how it got there, what was refused and why, which prices.

Everything here is metadata-sized: table counts, the ingest log, quarantine grouped by
reason, rating runs and the price books (read from their TOML files, not from the store).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from meter.store import table_counts

__all__ = ["billing_status", "data_status", "price_books"]


def price_books(at_ms: int) -> pd.DataFrame:
    """The price books on disk: which is in force at `at_ms`, and their headline rates."""
    from pricing.pricebook import default_pricebook_dir, load_pricebooks

    books = load_pricebooks(default_pricebook_dir())
    return pd.DataFrame([{
        "book": b.name, "version": b.version,
        "from": b.effective_from.date(), "to": b.effective_to.date() if b.effective_to else None,
        "in force": b.covers(at_ms),
        "runtime $/session-hour": float(b.runtime.usd_per_session_hour),
        "web search $/1,000": float(b.web_search.usd_per_1000),
        "models": len(b.models), "fast mode": b.modifiers.fast_mode_applies,
        "US residency": b.modifiers.data_residency_applies, "source": b.source,
    } for b in books])


def data_status(con: duckdb.DuckDBPyConnection, path: str | Path) -> dict[str, Any]:
    """{"counts", "ingests" (the latest, each with its state: running, finished, failed,
    interrupted or continued), "quarantine" (by reason), "quarantined" (latest rows),
    "rating_runs", "unrated" (by reason), "size_bytes", "wal_bytes"}."""
    counts = pd.DataFrame(sorted(table_counts(con).items()), columns=["table", "rows"])
    ingests = _ingests(con)
    by_reason = con.execute("""
        SELECT error AS reason, count(*) AS lines, count(DISTINCT source) AS sources,
               make_timestamp(max(quarantined_ms) * 1000) AS latest
        FROM quarantine GROUP BY error ORDER BY lines DESC, reason LIMIT 50
    """).fetch_df()
    latest = con.execute("""
        SELECT make_timestamp(quarantined_ms * 1000) AS quarantined, source, line_no,
               error AS reason, left(raw, 300) AS raw
        FROM quarantine ORDER BY quarantined_ms DESC, line_no DESC LIMIT 100
    """).fetch_df()
    runs = con.execute("""
        SELECT make_timestamp(rated_ms * 1000) AS rated, make_timestamp(as_of_ms * 1000) AS as_of,
               coalesce(kind, 'full') AS kind, sessions_rated, elapsed_ms,
               charges AS charge_lines, unrated AS unrated_lines, books
        FROM rating_runs ORDER BY rated_ms DESC LIMIT 10
    """).fetch_df()
    unrated = con.execute("""
        SELECT reason, meter, model, sum(quantity)::BIGINT AS quantity, any_value(unit) AS unit,
               count(DISTINCT session_id) AS sessions
        FROM unrated_usage GROUP BY ALL ORDER BY sessions DESC, reason LIMIT 50
    """).fetch_df()
    p = Path(path)
    wal = Path(f"{path}.wal")
    return {
        "counts": counts, "ingests": ingests, "quarantine": by_reason, "quarantined": latest,
        "rating_runs": runs, "unrated": unrated,
        "size_bytes": p.stat().st_size if p.exists() else 0,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
    }


def _ingests(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The latest 20 ingests; an ingest killed mid-file shows as 'interrupted' with what its
    committed batches stored (meter.ingest.ingest_runs)."""
    from meter.ingest import ingest_runs

    columns = ["ingest_id", "state", "source", "started", "seconds", "lines", "new_events",
               "duplicates", "records", "quarantined", "id_collisions", "error"]
    rows = [{
        "ingest_id": r.ingest_id, "state": r.state, "source": r.source,
        "started": pd.Timestamp(r.started_ms, unit="ms"),
        "seconds": None if r.finished_ms is None else (r.finished_ms - r.started_ms) / 1000.0,
        "lines": r.lines, "new_events": r.new_events, "duplicates": r.duplicates,
        "records": r.records, "quarantined": r.quarantined, "id_collisions": r.id_collisions,
        "error": r.error,
    } for r in ingest_runs(con, limit=20)]
    return pd.DataFrame(rows, columns=columns)


def billing_status(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """{"closed": each closed month: issued, billed since as corrections or notes, pending
    corrections, what it costs now; "corrections": the correction lines due in open months}.
    Reads the ledger (`charges`) and the issued documents (reports.closing)."""
    from reports.closing import closed_periods, corrections_due, next_open
    from reports.invoice import build_invoice

    closed = closed_periods(con)
    due: list[dict[str, Any]] = []
    for period in sorted({next_open(p, closed) for p in closed}):
        for line in corrections_due(con, period, as_of=""):
            due.append({"billed in": str(period), "corrects": line.corrects_period,
                        "meter": line.meter, "model": line.model,
                        "token class": line.token_class, "tier": line.tier,
                        "quantity": line.quantity, "amount $": line.amount})
    months = []
    for period in closed:
        issued = con.execute("""
            SELECT any_value(document_id ORDER BY version DESC), max(version),
                   make_timestamp(max(issued_ms) * 1000),
                   sum(total) FILTER (WHERE version = 1 AND kind = 'invoice')
            FROM billing_documents WHERE period = $p
        """, {"p": str(period)}).fetchall()[0]
        billed_later = con.execute("""
            SELECT coalesce(sum(amount), 0) FROM billed_lines
            WHERE usage_period = $p AND (billed_period <> $p OR document_id LIKE 'NOTE-%')
        """, {"p": str(period)}).fetchall()[0][0]
        pending = sum((r["amount $"] for r in due if r["corrects"] == str(period)),
                      Decimal("0.00"))
        now = build_invoice(con, str(period), as_of="").total
        months.append({"month": str(period), "document": issued[0], "version": issued[1],
                       "issued": issued[2], "first issued $": issued[3] or Decimal("0.00"),
                       "billed later $": billed_later, "pending corrections $": pending,
                       "costs now $": now})
    # (exact above; floats only for the table's display, at the end)
    return {"closed": _display_money(pd.DataFrame(months)),
            "corrections": _display_money(pd.DataFrame(due))}


def _display_money(frame: pd.DataFrame) -> pd.DataFrame:
    """The `... $` columns as floats for Streamlit's number formatting (cents, already
    rounded)."""
    for column in frame.columns:
        if column.endswith(" $"):
            frame[column] = frame[column].map(float)
    return frame
