"""The same rating on Spark over a lake: equal to DuckDB's to the atto-dollar, per session x
day x SKU, and invoice, chargeback and FOCUS equal to the cent (byte for byte).

One fixture covers every rating rule: threads on another model (and a thread-only session),
a month boundary, US residency, fast mode, long context, searches, snapshots after spans, an
unknown model and a session with no record (unrated), two events in one millisecond, a
session still running at as-of, and a price-book change mid-day (a third version from
1 Nov 12:00); plus two days of the demo fleet for volume. Spark runs in local mode on two
cores, as in CI.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest

import agenttally
from agenttally._lake import open_rated_lake
from agenttally._simulation import DEMO_PROFILE, build_simulation
from meter.ingest import ingest_lines
from meter.lake import export_lake, open_lake
from meter.simulator import write_store
from meter.store import connect
from meter.vocabulary import parse_instant
from pricing.rating import RatingOptions, rate
from reports.focus import FocusOptions, write_focus
from tests.conftest import session_record, span, status
from tests.pricing.test_ledger import POOL, _added, agent

pytestmark = pytest.mark.slow  # Spark starts a JVM and runs ~60 small jobs: 40-90 s on 2 cores

BOOKS = _added()
AS_OF = "2026-11-02T06:00:00Z"
EXTRA = [
    session_record("g", created_at="2026-11-01T00:00:00Z", agent=agent("claude-opus-5")),
    status("g", "g1", "2026-11-01T15:00:00.000Z", "running"),
    status("g", "g2", "2026-11-01T15:30:00.000Z", "idle"),
    status("g", "g3", "2026-11-01T15:30:00.000Z", "running"),  # the same ms: by event id
    status("g", "g4", "2026-11-01T16:00:00.000Z", "terminated"),
    session_record("h", created_at="2026-11-01T00:00:00Z", agent=agent("claude-unknown-9")),
    status("h", "h1", "2026-11-01T10:00:00.000Z", "running"),
    span("h", "h2", "2026-11-01T10:05:00.000Z", input=4_000, output=100),
    status("h", "h3", "2026-11-01T10:30:00.000Z", "idle"),
]
COLUMNS = ("period, day, session_id, agent_id, environment_id, meter, model, token_class, "
           "tier, quantity, unit, unit_price, price_unit, amount_exact, amount_units, book, "
           "book_version, provisional, CAST(tags AS VARCHAR) AS tags")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(DuckDB charges, DuckDB unrated, Spark charges, Spark unrated, store path, lake)."""
    from pricing.spark import rate_lake, spark_session

    root = tmp_path_factory.mktemp("spark")
    store_path = root / "store.duckdb"
    con = connect(store_path)
    ingest_lines(con, (json.dumps(e) for e in [*POOL, *EXTRA]), source="rules")
    sim = build_simulation(DEMO_PROFILE, start=date(2026, 10, 31), days=2, seed=11,
                           as_of_ms=parse_instant(AS_OF), book="anthropic-list")
    write_store(con, sim)
    export_lake(con, root / "lake")
    con.close()

    options = RatingOptions(as_of_ms=parse_instant(AS_OF))
    con = connect(store_path, read_only=True)
    rate(con, BOOKS, options)
    duck_charges = con.sql(f"SELECT {COLUMNS} FROM charges").to_arrow_table()
    duck_unrated = con.sql("SELECT * FROM unrated").to_arrow_table()
    con.close()

    spark = spark_session("local[2]")
    try:
        result = rate_lake(open_lake(root / "lake"), BOOKS, options, master="local[2]")
    finally:
        spark.stop()
    # what Spark wrote to the lake, read back as any engine would
    with open_rated_lake(root / "lake") as lake_store:
        spark_charges = lake_store.connection.sql(
            f"SELECT {COLUMNS} FROM charges").to_arrow_table()
        spark_unrated = lake_store.connection.sql(
            f"SELECT {', '.join(duck_unrated.column_names)} FROM unrated").to_arrow_table()
    assert result.charge_lines == duck_charges.num_rows
    return duck_charges, duck_unrated, spark_charges, spark_unrated, store_path, root / "lake"


def _differ(left: pa.Table, right: pa.Table) -> list[tuple]:
    con = duckdb.connect()
    con.register("l", left)
    con.register("r", right)
    return con.sql("(SELECT 'duckdb only' AS side, * FROM (SELECT * FROM l EXCEPT ALL "
                   "SELECT * FROM r)) UNION ALL (SELECT 'spark only', * FROM (SELECT * FROM r "
                   "EXCEPT ALL SELECT * FROM l)) LIMIT 10").fetchall()


def test_the_fixture_exercises_every_rule(both):
    charges, unrated, *_ = both
    con = duckdb.connect()
    con.register("c", charges)
    con.register("u", unrated)
    one = lambda sql: con.sql(sql).fetchall()[0][0]  # noqa: E731
    assert one("SELECT count(DISTINCT period) FROM c") == 2  # October and November
    assert one("SELECT count(DISTINCT book_version) FROM c WHERE meter = 'runtime'") >= 2
    assert one("SELECT count(*) FROM c WHERE tier = 'long_context'") > 0
    assert one("SELECT count(*) FROM c WHERE meter = 'web_search'") > 0
    assert one("SELECT count(*) FROM c WHERE provisional") > 0
    assert one("SELECT count(*) FROM c WHERE session_id = 'd' AND model LIKE '%haiku%'") > 0
    # fast mode with US residency: Opus 5 input dearer than the standard rate
    assert one("SELECT max(unit_price) FROM c WHERE session_id = 'c' AND meter = 'tokens' "
               "AND token_class = 'input'") > one(
        "SELECT max(unit_price) FROM c WHERE session_id = 'a' AND meter = 'tokens' "
        "AND token_class = 'input'")
    reasons = {r[0] for r in con.sql("SELECT DISTINCT reason FROM u").fetchall()}
    assert {"model not in price book", "session has no model"} <= reasons
    assert one("SELECT sum(quantity) FROM c WHERE session_id = 'g' AND meter = 'runtime'") \
        == 30 * 60_000 + 30 * 60_000  # 15:00-15:30 and 15:30-16:00, the tie read by id


def test_spark_charges_equal_duckdb_per_session_day_sku_to_the_atto_dollar(both):
    duck, _, spark, *_ = both
    assert duck.num_rows > 1_000
    assert _differ(duck, spark) == []
    total = sum(duck.column("amount_exact").to_pylist(), Decimal(0))
    assert total == sum(spark.column("amount_exact").to_pylist(), Decimal(0))


def test_spark_unrated_equal_duckdb(both):
    _, duck, _, spark, *_ = both
    assert duck.num_rows > 0
    assert _differ(duck, spark) == []


def test_invoice_chargeback_and_focus_read_from_the_lake_equal_the_store(both, tmp_path):
    *_, store_path, lake = both
    with agenttally.open_store(store_path, read_only=True) as store:
        bills = {p: agenttally.invoice(store, p, as_of=AS_OF, pricebooks=BOOKS).to_json()
                 for p in ("2026-10", "2026-11")}
        team = agenttally.chargeback(store, "2026-11", as_of=AS_OF, pricebooks=BOOKS)
        write_focus(store.connection, "2026-11", tmp_path / "store.csv", fmt="csv",
                    options=FocusOptions("org", "Org"))
    with open_rated_lake(lake) as store:
        assert {p: agenttally.invoice(store, p).to_json() for p in bills} == bills
        assert agenttally.chargeback(store, "2026-11").to_json() == team.to_json()
        write_focus(store.connection, "2026-11", tmp_path / "lake.csv", fmt="csv",
                    options=FocusOptions("org", "Org"))
        with pytest.raises(agenttally.UsageError, match="rated as of"):
            agenttally.invoice(store, "2026-11", as_of="2026-11-05")
    assert (tmp_path / "lake.csv").read_bytes() == (tmp_path / "store.csv").read_bytes()
    assert json.loads(bills["2026-11"])["total"] != "0.00"
