"""agenttally.whatif_report: what the `whatif` verb prints, as a typed result, on the tiny
hand-checked store of tests/app (the verb only renders it)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

import agenttally
from meter.ingest import ingest_lines
from meter.store import connect
from tests.app.conftest import build_tiny_store
from tests.conftest import session_record, status

D = Decimal


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """tests/app/conftest.py's store: November's invoice is $1.25 (runtime $0.14)."""
    return build_tiny_store(tmp_path_factory.mktemp("whatif") / "tiny.duckdb")


@pytest.fixture(scope="module")
def double_runtime(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenario") / "double.toml"
    path.write_text('name = "double-runtime"\ndescription = "Runtime at twice the price."\n'
                    '[prices]\nruntime_usd_per_hour = "0.16"\n')
    return path


def test_whatif_report_gives_the_scenario_the_instant_and_the_rollups(tiny, double_runtime):
    # platform: runtime 0.12 -> 0.24, tokens 0.63; search: runtime 0.02 -> 0.04, tokens 0.45,
    # web search 0.03. The baseline is November's invoice, $1.25; the scenario adds $0.14.
    with agenttally.open_store(tiny, read_only=True) as store:
        report = agenttally.whatif_report(store, double_runtime, by="team",
                                          as_of="2026-11-20")
    assert isinstance(report, agenttally.WhatIfReport)
    assert (report.scenario.name, report.scenario.description) == (
        "double-runtime", "Runtime at twice the price.")
    assert agenttally.iso_ms(report.as_of_ms) == "2026-11-20T00:00:00.000Z"
    assert report.period == "2026-11"  # the month of the as-of
    assert [(r.group, r.meter, r.baseline, r.scenario) for r in report.comparison.rows] == [
        ("platform", "runtime", D("0.12"), D("0.24")), ("platform", "tokens", D("0.63"), D("0.63")),
        ("search", "runtime", D("0.02"), D("0.04")), ("search", "tokens", D("0.45"), D("0.45")),
        ("search", "web_search", D("0.03"), D("0.03"))]
    total = report.total()
    assert (total.baseline, total.scenario, total.delta, total.delta_percent) == (
        D("1.25"), D("1.39"), D("0.14"), D("11.2"))
    assert [(g.group, g.baseline, g.scenario, g.delta_percent) for g in report.by_group()] == [
        ("platform", D("0.75"), D("0.87"), D("16.0")), ("search", D("0.50"), D("0.52"), D("4.0"))]


def test_whatif_is_the_reports_comparison(tiny, double_runtime):
    with agenttally.open_store(tiny, read_only=True) as store:
        comparison = agenttally.whatif(store, double_runtime, period="2026-11", by="team",
                                       as_of="2026-11-20", span_cache_ttl="1h")
        report = agenttally.whatif_report(store, double_runtime, period="2026-11", by="team",
                                          as_of="2026-11-20", span_cache_ttl="1h")
    assert comparison == report.comparison


def test_whatif_report_refuses_a_tag_group_no_session_carries_before_rating(tmp_path,
                                                                            double_runtime):
    # every session of this store carries `team` only
    con = connect(tmp_path / "s.duckdb")
    ingest_lines(con, [json.dumps(e) for e in (
        session_record("s", created_at="2026-11-03T08:00:00Z"),
        status("s", "e1", "2026-11-03T09:00:00.000Z", "running"),
        status("s", "e2", "2026-11-03T10:00:00.000Z", "idle"))],
        source="t", max_future_ms=10**12)
    con.close()
    with agenttally.open_store(tmp_path / "s.duckdb", read_only=True) as store, \
            pytest.raises(agenttally.DimensionError, match="'project' is not a tag key"):
        agenttally.whatif_report(store, double_runtime, by="project", as_of="2026-12-01")


def test_whatif_verb_renders_the_report(tiny, double_runtime, capsys):
    from agenttally.cli import main

    assert main(["whatif", str(double_runtime), "--db", str(tiny), "--as-of", "2026-11-20",
                 "--by", "team"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "What-if double-runtime vs baseline, period 2026-11, as of 2026-11-20T00:00:00.000Z "
        "(USD)",
        "Runtime at twice the price.",
        "meter       baseline  scenario  delta  delta_%",
        "----------  --------  --------  -----  -------",
        "runtime         0.14      0.28   0.14  +100.0",
        "tokens          1.08      1.08   0.00  0.0",
        "web_search      0.03      0.03   0.00  0.0",
        "TOTAL           1.25      1.39   0.14  +11.2",
        "",
        "by team:",
        "team      baseline  scenario  delta  delta_%",
        "--------  --------  --------  -----  -------",
        "platform      0.75      0.87   0.12  +16.0",
        "search        0.50      0.52   0.02  +4.0",
    ]
