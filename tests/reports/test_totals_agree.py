"""Every report of a period adds up to its invoice, to the cent: chargeback, the sum of FOCUS
BilledCost, the dashboard's month-to-date total and what-if's baseline, for every period of a
demo store whose days cross a month end (the demo's models are priced from the August book on,
so its days cannot reach back over that book change)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from agenttally.cli import main
from agenttally.cli.simulate import seed_demo
from meter.store import connect
from meter.vocabulary import parse_instant
from pricing.pricebook import load_pricebooks
from pricing.rating import RatingOptions, rate
from pricing.scenario import parse_scenario
from pricing.whatif import compare, run_whatif
from reports.chargeback import build_chargeback
from reports.dashboard.filters import Filters
from reports.dashboard.overview import month_to_date
from reports.dashboard.source import read_store
from reports.focus import build_focus
from reports.invoice import build_invoice

AS_OF = "2026-09-12T00:00:00Z"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo profile from 2026-08-19 to 2026-09-10, rated into the store as `rate` does."""
    path = tmp_path_factory.mktemp("walk") / "demo.duckdb"
    con = connect(path)
    try:
        seed_demo(con, days=23, end=date(2026, 9, 10))
    finally:
        con.close()
    assert main(["rate", "--db", str(path), "--as-of", AS_OF]) == 0
    return path


def test_every_period_totals_the_same_everywhere(demo):
    books = load_pricebooks()
    as_of = parse_instant(AS_OF)
    with read_store(demo) as stored:
        periods = [r[0] for r in stored.execute(
            "SELECT DISTINCT period FROM charges ORDER BY 1").fetchall()]
        dashboard = {p: month_to_date(stored, Filters(period=p)).total for p in periods}
    assert periods == ["2026-08", "2026-09"]
    con = connect(demo, read_only=True)
    rate(con, books, RatingOptions(as_of_ms=as_of))
    what_if = run_whatif(con, books, parse_scenario({}), RatingOptions(as_of_ms=as_of))
    for period in periods:
        invoice = build_invoice(con, period, as_of=AS_OF).total
        chargeback = build_chargeback(con, period, by=["team"])
        build_focus(con, period)
        focus = con.execute("SELECT sum(BilledCost) FROM focus").fetchall()[0][0]
        baseline = compare(con, by="team", period=period, what_if=what_if).baseline_total
        totals = {"invoice": invoice, "chargeback": sum(g.total for g in chargeback.groups),
                  "focus": Decimal(focus), "dashboard": dashboard[period],
                  "what-if baseline": baseline}
        assert invoice > 1000 and len(set(totals.values())) == 1, (period, totals)
