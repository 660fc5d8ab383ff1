"""Every report of a period adds up to its invoice, to the cent: chargeback (as the CLI's default
and with a shared pool over finer groups), the sum of FOCUS BilledCost, the dashboard's
Overview total and what-if's baseline, for every period of a demo store whose days cross a
month end. The demo's models are priced from the August book on, so its days cannot reach back
over that book change; its Haiku 5.5 requests above 100K prompt tokens give long-context lines
in both months.

Fine groups make the test sensitive: a report that rounds per group instead of apportioning
each invoice line's cents drifts by cents (what-if's baseline did, by team and more by agent).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from agenttally.cli import main
from meter.store import connect
from meter.vocabulary import parse_instant
from pricing.pricebook import load_pricebooks
from pricing.rating import RatingOptions, rate
from pricing.scenario import parse_scenario
from pricing.whatif import compare, run_whatif
from reports.allocation import AllocationRules
from reports.chargeback import build_chargeback
from reports.dashboard.filters import Filters
from reports.dashboard.overview import month_to_date
from reports.dashboard.source import read_store
from reports.focus import build_focus
from reports.invoice import build_invoice
from tests.conftest import seeded_demo

AS_OF = "2026-09-04T00:00:00Z"

# The support project's charges shared over the other projects by their running time.
SHARED_SUPPORT = AllocationRules.model_validate({"shared": [
    {"name": "support desk", "key": "project", "tags": {"project": "support"},
     "driver": "running_time"},
]})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo profile from 2026-08-28 to 2026-09-02, rated into the store as `rate` does
    (the dashboard reads the stored charges)."""
    path = seeded_demo(tmp_path_factory.mktemp("walk") / "demo.duckdb", days=6,
                       end=date(2026, 9, 2))
    assert main(["rate", "--db", str(path), "--as-of", AS_OF]) == 0
    return path


def test_every_period_totals_the_same_in_every_report(demo):
    as_of_ms = parse_instant(AS_OF)
    with read_store(demo) as stored:
        periods = [r[0] for r in stored.execute(
            "SELECT DISTINCT period FROM charges ORDER BY 1").fetchall()]
        # as the Overview page calls it: the store's rating as-of
        dashboard = {p: month_to_date(stored, Filters(period=p), as_of_ms).total
                     for p in periods}
    con = connect(demo, read_only=True)
    books = load_pricebooks()
    options = RatingOptions(as_of_ms=as_of_ms)
    rate(con, books, options)  # as `agenttally invoice/chargeback/export` rate before reporting
    # what the walk covers: a month end, long-context lines and sessions on both sides of it
    assert periods == ["2026-08", "2026-09"]
    assert con.execute("SELECT list(DISTINCT period ORDER BY period) FROM charges "
                       "WHERE tier = 'long_context'").fetchall()[0][0] == periods
    assert con.execute("SELECT count(*) FROM (SELECT session_id FROM charges GROUP BY 1 "
                       "HAVING count(DISTINCT period) = 2)").fetchall()[0][0] > 0
    identity = run_whatif(con, books, parse_scenario({}), options)

    disagree = []
    for period in periods:
        invoice = build_invoice(con, period, as_of=AS_OF).total
        assert invoice > 100, (period, invoice)
        build_focus(con, period)
        totals = {
            "invoice": invoice,
            "chargeback by team": sum(
                g.total for g in build_chargeback(con, period, by=["team"]).groups),
            "chargeback by team, project, shared support": sum(
                g.total for g in build_chargeback(con, period, by=["team", "project"],
                                                  rules=SHARED_SUPPORT).groups),
            "FOCUS BilledCost": Decimal(
                con.execute("SELECT sum(BilledCost) FROM focus").fetchall()[0][0]),
            "dashboard": dashboard[period],
            "what-if baseline by team": compare(
                con, by="team", period=period, what_if=identity).baseline_total,
            "what-if baseline by agent": compare(
                con, by="agent", period=period, what_if=identity).baseline_total,
        }
        if len(set(totals.values())) != 1:
            disagree.append(f"{period}: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    assert not disagree, "totals differ:\n" + "\n".join(disagree)
