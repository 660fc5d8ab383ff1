"""Reconciliation with a small hand-made provider cost report (provider_cost_report_small.json
beside this file; the demo's shipped report is tested in tests/test_readme_cli.py).

Metered (book 2026-08-07: runtime $0.08/h, Opus 5 input $5/M, output $25/M, search $10/1,000):
  Nov 3: runtime 1 h $0.08; 200,000 input tokens $1.00
  Nov 4: runtime 2 h $0.16; 10,000 output tokens $0.25; 5 web searches $0.05
  Nov 5: runtime 1 h $0.08
The provider's report (cents): Nov 1-2 empty buckets; Nov 3: runtime 8, Opus input 100.4
(within tolerance: 0.4 cent), Haiku 30 in another workspace; Nov 4: runtime 50 (the injected
mismatch), output 25 under a dated model id, search 5; no bucket for Nov 5.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from reports.provider import ProviderError, fetch_reports, load_into, load_reports
from reports.reconcile import missing_day_ranges, reconcile
from tests.reports.test_chargeback import rated, session

D = Decimal
SAMPLE = str(Path(__file__).with_name("provider_cost_report_small.json"))


def usage(sid, eid, at, *, input=0, output=0, searches=0):
    return {"session_id": sid, "type": "session.usage", "id": eid, "processed_at": at,
            "usage": {"input_tokens": input, "output_tokens": output,
                      "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                         "ephemeral_1h_input_tokens": 0},
                      "server_tool_use": {"web_search_requests": searches}}}


EVENTS = (session("r1", team="a", tokens=200_000, day="2026-11-03")
          + session("r2", team="a", run_ms=7_200_000, day="2026-11-04")
          + [usage("r2", "r2_o", "2026-11-04T09:30:00.000Z", output=10_000, searches=5)]
          + session("r3", team="b", day="2026-11-05"))


@pytest.fixture(scope="module")
def con():
    return rated(EVENTS)


USAGE_REPORT = {"data": [
    {"starting_at": "2026-11-03T00:00:00Z", "ending_at": "2026-11-04T00:00:00Z", "results": [
        {"uncached_input_tokens": 200_000, "cache_read_input_tokens": 0, "output_tokens": 0,
         "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
         "server_tool_use": {"web_search_requests": 0}, "model": "claude-opus-5",
         "workspace_id": "wrkspc_agents"}]},
    {"starting_at": "2026-11-04T00:00:00Z", "ending_at": "2026-11-05T00:00:00Z", "results": [
        {"uncached_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 9_000,
         "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
         "server_tool_use": {"web_search_requests": 5}, "model": "claude-opus-5",
         "workspace_id": "wrkspc_agents"}]}],
    "has_more": False, "next_page": None}


def run(con, paths, **kw):
    data = load_reports(paths)
    load_into(con, data)
    return reconcile(con, "2026-11", through=date(2026, 11, 5), sources=data.sources, **kw)


def table(result):
    return [(r.day.day, r.cost_type, r.model, r.metered, r.provider, r.variance, r.variance_pct,
             r.status) for r in result.rows]


def test_the_injected_mismatch_is_found_and_the_small_one_is_within_tolerance(con):
    result = run(con, [SAMPLE], workspace="wrkspc_agents")
    assert table(result) == [
        (3, "session_usage", None, D("0.08"), D("0.08"), D(0), D("0.00"), "ok"),
        (3, "tokens", "claude-opus-5", D("1.00"), D("1.004"), D("-0.004"), D("-0.40"), "ok"),
        (4, "session_usage", None, D("0.16"), D("0.50"), D("-0.34"), D("-68.00"),
         "over tolerance"),
        (4, "tokens", "claude-opus-5", D("0.25"), D("0.25"), D(0), D("0.00"), "ok"),
        (4, "web_search", None, D("0.05"), D("0.05"), D(0), D("0.00"), "ok"),
        (5, "session_usage", None, D("0.08"), None, None, None, "no provider data"),
    ]
    assert [(r.day.day, r.cost_type) for r in result.flagged] == [(4, "session_usage")]
    assert result.missing_days == [date(2026, 11, 5)]
    assert result.summary()[1] == ("provider cost report has no data for 2026-11-05 (1 day): "
                                   "not reconciled; fetch or pass the report for those days")
    assert result.totals() == (D("1.54"), D("1.884"))


def test_other_workspaces_show_as_provider_only_cost(con):
    result = run(con, [SAMPLE])
    haiku = [r for r in result.rows if r.model == "claude-haiku-4-5"]
    assert [(r.metered, r.provider, r.variance, r.variance_pct, r.flagged) for r in haiku] == [
        (D(0), D("0.30"), D("-0.30"), D("-100.00"), True)]


def test_tolerances_decide_what_is_flagged(con):
    strict = run(con, [SAMPLE], workspace="wrkspc_agents", tolerance_usd=D("0.001"),
                 tolerance_pct=D("0.1"))
    assert [(r.day.day, r.cost_type) for r in strict.flagged] == [(3, "tokens"),
                                                                  (4, "session_usage")]
    loose = run(con, [SAMPLE], workspace="wrkspc_agents", tolerance_usd=D("0.50"))
    assert loose.flagged == []


def test_usage_report_quantities_and_token_type_detail(con, tmp_path):
    path = tmp_path / "usage.json"
    path.write_text(json.dumps(USAGE_REPORT))
    result = run(con, [SAMPLE, path], workspace="wrkspc_agents", detail=True)
    rows = {(r.day.day, r.cost_type, r.token_type): (r.metered_quantity, r.provider_quantity)
            for r in result.rows if r.cost_type != "session_usage"}
    assert rows == {(3, "tokens", "uncached_input_tokens"): (200_000, 200_000),
                    (4, "tokens", "output_tokens"): (10_000, 9_000),
                    (4, "web_search", None): (5, 5)}
    assert result.sources == [f"{SAMPLE} (cost report)", f"{path} (usage report)"]


def test_no_cost_report_at_all_leaves_every_day_unreconciled(con, tmp_path):
    path = tmp_path / "usage.json"
    path.write_text(json.dumps(USAGE_REPORT))
    result = run(con, [path])
    assert missing_day_ranges(result.missing_days) == "2026-11-01..2026-11-05"
    assert {r.status for r in result.rows} == {"no provider data"}
    assert result.flagged == []


def test_bad_report_files_say_where(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"starting_at": "2026-11-03T00:00:00Z", "ending_at": '
                   '"2026-11-04T00:00:00Z", "results": [{"amount": "ten", "currency": "USD"}]}]}')
    with pytest.raises(ProviderError, match=r"bad\.json: data\[0\]\.results\[0\]\.amount: "):
        load_reports([bad])
    bad.write_text('{"items": []}')
    with pytest.raises(ProviderError, match="expected an Admin API report page"):
        load_reports([bad])


def test_fetch_pages_through_both_reports_with_the_admin_key(tmp_path):
    with open(SAMPLE) as handle:
        sample = json.load(handle)
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.headers["x-api-key"] == "sk-ant-admin01-test"
        assert request.headers["anthropic-version"] == "2023-06-01"
        if request.url.path.endswith("/cost_report"):
            page = request.url.params.get("page")
            half = 2 if page is None else None
            body = {"data": sample["data"][:half] if half else sample["data"][2:],
                    "has_more": page is None, "next_page": "page_2" if page is None else None}
            return httpx.Response(200, json=body)
        return httpx.Response(200, json=USAGE_REPORT)

    saved = tmp_path / "cost.json"
    data = fetch_reports("sk-ant-admin01-test", datetime(2026, 11, 1, tzinfo=UTC),
                         datetime(2026, 11, 6, tzinfo=UTC),
                         transport=httpx.MockTransport(handler), save_to=saved)
    assert len(data.cost) == 4 and len(data.usage) == 2
    first = seen[0].url.params
    assert (first["starting_at"], first["bucket_width"], first.get_list("group_by[]")) == (
        "2026-11-01T00:00:00Z", "1d", ["workspace_id", "description"])
    assert [r.url.params.get("page") for r in seen] == [None, "page_2", None]
    assert len(load_reports([saved]).cost) == 4


def test_a_regular_api_key_is_refused_before_any_request():
    with pytest.raises(ProviderError, match="needs an Admin API key"):
        fetch_reports("sk-ant-api03-x", datetime(2026, 11, 1, tzinfo=UTC),
                      datetime(2026, 11, 2, tzinfo=UTC))


def test_missing_days_read_as_ranges():
    assert missing_day_ranges([date(2026, 11, 4), date(2026, 11, 17), date(2026, 11, 18)]) == \
        "2026-11-04, 2026-11-17..2026-11-18"


def test_cli_reconcile_reports_and_exits_1_when_strict(tmp_path, capsys):
    from agenttally.cli import main
    from tests.reports.test_chargeback import store_file

    db = store_file(tmp_path, EVENTS)
    # as of Nov 5 00:00: the days through Nov 4, all covered by the sample
    args = ["reconcile", "--db", db, "--period", "2026-11", "--as-of",
            "2026-11-05T00:00:00Z", "--provider", SAMPLE, "--workspace", "wrkspc_agents"]
    assert main([*args, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    lines = [line.split(",") for line in out.splitlines()]
    assert lines[0] == ["day", "cost_type", "model", "token_type", "metered", "provider",
                        "variance", "variance_pct", "metered_quantity", "provider_quantity",
                        "status"]
    assert [*lines[1][:4], *map(D, lines[1][4:8]), lines[1][10]] == [
        "2026-11-03", "session_usage", "", "", D("0.08"), D("0.08"), 0, 0, "ok"]
    assert [*lines[2][:4], *map(D, lines[2][4:9]), lines[2][10]] == [
        "2026-11-03", "tokens", "claude-opus-5", "", 1, D("1.004"), D("-0.004"), D("-0.40"),
        200_000, "ok"]
    assert "1 beyond tolerance" in err and "no data for" not in err
    assert main([*args, "--strict", "--only-flagged", "--format", "json"]) == 1
    flagged = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["day"], r["cost_type"], r["status"]) for r in flagged] == [
        ("2026-11-04", "session_usage", "over tolerance")]
    assert main(["reconcile", "--db", db, "--period", "2026-11"]) == 2  # no report: usage
    assert "no provider data: pass --provider FILE" in capsys.readouterr().err


def test_cli_reconcile_table_shows_every_money_column_at_one_precision(tmp_path, capsys):
    """Issue 21: metered, provider and variance came out with 6, 3 and 2 decimals."""
    from agenttally.cli import main
    from tests.reports.test_chargeback import store_file

    db = store_file(tmp_path, EVENTS)
    assert main(["reconcile", "--db", db, "--period", "2026-11", "--as-of",
                 "2026-11-05T00:00:00Z", "--provider", SAMPLE, "--workspace",
                 "wrkspc_agents"]) == 0
    lines = capsys.readouterr().out.splitlines()
    opus = next(line for line in lines if "claude-opus-5" in line).split()
    assert opus[3:6] == ["1.0000", "1.0040", "-0.0040"]  # the exact -0.004 still visible
    money = [line.split()[2:5] for line in lines[2:] if "session_usage" in line]
    assert money and all(len(v.split(".")[1]) == 4 for row in money for v in row)
