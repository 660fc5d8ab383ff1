"""A store written before the plausibility bounds: upgrading it moves an event beyond them
into quarantine, so it cannot poison every report (issue 18: one request of 2^63 - 1 tokens
made every invoice, chargeback and rating fail with a raw INT64 error)."""

from __future__ import annotations

import json

import duckdb

from meter.ingest import ingest_lines
from meter.store import BOUNDS_VERSION, MIGRATIONS, _schema_sql, connect
from pricing.pricebook import load_pricebooks
from pricing.rating import RatingOptions, rate
from tests.conftest import ms, session_record, span, status

EVENTS = [session_record("s"),
          status("s", "e1", "2026-11-03T09:00:00.000Z", "running"),
          span("s", "e2", "2026-11-03T09:10:00.000Z", input=1_000, output=100),
          status("s", "e3", "2026-11-03T10:00:00.000Z", "idle")]


def _old_store(path) -> None:
    """A store as the version before the bounds left it, with one poisonous request."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_ms BIGINT "
                "NOT NULL)")
    con.execute(_schema_sql())
    con.execute("INSERT INTO schema_version VALUES (1, 0)")
    for version in range(2, BOUNDS_VERSION):
        con.execute(MIGRATIONS[version])
        con.execute("INSERT INTO schema_version VALUES (?, 0)", [version])
    con.execute("INSERT INTO events VALUES ('e9', 's', 'span.model_request_end', ?, NULL, 7)",
                [ms("2026-11-03T09:20:00Z")])
    con.execute("INSERT INTO model_requests VALUES ('e9', 's', NULL, ?, ?, 0, 0, 0, NULL, "
                "false)", [ms("2026-11-03T09:20:00Z"), 2**63 - 1])
    con.close()


def test_upgrading_quarantines_an_event_beyond_the_bounds_and_rates_again(tmp_path):
    path = tmp_path / "old.duckdb"
    _old_store(path)
    con = connect(path)  # migrates
    ingest_lines(con, (json.dumps(e) for e in EVENTS), source="after")
    assert con.execute("SELECT count(*) FROM model_requests WHERE event_id = 'e9'"
                       ).fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM events WHERE event_id = 'e9'").fetchall()[0][0] == 0
    [(error, raw)] = con.execute("SELECT error, raw FROM quarantine WHERE source LIKE "
                                 "'upgrade%'").fetchall()
    assert "event e9 (session s)" in error
    assert f"model_requests.input_tokens: {2**63 - 1} is beyond the plausible bound" in error
    assert json.loads(raw)["input_tokens"] == 2**63 - 1
    rate(con, load_pricebooks(), RatingOptions(as_of_ms=ms("2026-11-04T00:00:00Z")))
    total = con.execute("SELECT sum(amount_exact) FROM charges").fetchall()[0][0]
    # 1 h running x $0.08 + 1,000 x $5/M + 100 x $25/M (Opus 5): the request e9 is not in it
    assert str(total).rstrip("0") == "0.0875"


def test_a_store_within_the_bounds_upgrades_untouched(tmp_path):
    path = tmp_path / "old.duckdb"
    _old_store(path)
    raw = duckdb.connect(str(path))
    raw.execute("UPDATE model_requests SET input_tokens = 5")
    raw.close()
    con = connect(path)
    assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM model_requests").fetchall()[0][0] == 1
