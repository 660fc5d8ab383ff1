"""agenttally.check: our rating of each session beside the provider's list_cost, as a typed
result on a hand-checked store (the `check` verb only renders it)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

import agenttally
from meter.ingest import ingest_lines
from meter.store import connect
from tests.conftest import session_record, snapshot, status

D = Decimal


def worked(sid: str, list_cost_cents: str) -> list[dict]:
    """Opus 5, one running hour, 50,000 input and 15,000 output tokens: the snapshot at
    59:59 says `list_cost_cents`; we price its usage at $0.625 tokens + $0.07997778 runtime
    = $0.704978 (to the micro-dollar)."""
    usage = snapshot(sid, f"{sid}_2", "2026-11-03T09:59:59.000Z", input=50_000, output=15_000)
    usage["usage"]["list_cost"] = {"amount": list_cost_cents, "currency": "USD"}
    return [session_record(sid, created_at="2026-11-03T08:00:00Z"),
            status(sid, f"{sid}_1", "2026-11-03T09:00:00.000Z", "running"), usage,
            status(sid, f"{sid}_3", "2026-11-03T10:00:00.000Z", "idle")]


@pytest.fixture(scope="module")
def with_list_cost(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "s.duckdb"
    con = connect(path)
    result = ingest_lines(con, [json.dumps(e) for e in [*worked("sesn_near", "70"),
                                                       *worked("sesn_far", "71")]],
                          source="t", max_future_ms=10**12)
    con.close()
    assert result.quarantined == 0, result.errors
    return path


def test_check_sets_our_cost_beside_the_providers_and_flags_beyond_the_tolerance(
        with_list_cost):
    with agenttally.open_store(with_list_cost, read_only=True) as store:
        check = agenttally.check(store, as_of="2026-12-01")
    assert isinstance(check, agenttally.ListCostCheck)
    assert (check.tolerance, agenttally.iso_ms(check.as_of_ms)) == (
        D("0.005"), "2026-12-01T00:00:00.000Z")
    # largest difference first: $0.71 vs $0.704978 is $0.005022 apart, beyond half a cent
    assert [(r.session_id, agenttally.iso_ms(r.snapshot_ms), r.provider_usd, r.engine_usd,
             r.difference_usd, r.flagged) for r in check.rows] == [
        ("sesn_far", "2026-11-03T09:59:59.000Z", D("0.71"), D("0.704978"), D("-0.005022"), True),
        ("sesn_near", "2026-11-03T09:59:59.000Z", D("0.70"), D("0.704978"), D("0.004978"),
         False)]
    assert [r.session_id for r in check.flagged] == ["sesn_far"]
    with agenttally.open_store(with_list_cost, read_only=True) as store:
        looser = agenttally.check(store, as_of="2026-12-01", tolerance="0.01")
    assert looser.tolerance == D("0.01") and looser.flagged == []


def test_check_refuses_a_tolerance_that_is_not_an_amount(with_list_cost):
    with agenttally.open_store(with_list_cost, read_only=True) as store:
        for bad in ("-0.01", "cents", "NaN"):
            with pytest.raises(agenttally.UsageError, match="tolerance: expected an amount"):
                agenttally.check(store, tolerance=bad)


def test_check_leaves_the_stored_ledger_as_it_was(with_list_cost, tmp_path):
    import shutil

    path = tmp_path / "rated.duckdb"
    shutil.copy(with_list_cost, path)
    with agenttally.open_store(path) as store:
        agenttally.rate(store, as_of="2026-11-04")
        agenttally.check(store, as_of="2026-12-01")
        runs = store.connection.execute("SELECT count(*) FROM rating_runs").fetchall()[0][0]
    assert runs == 1  # rated on the connection only


def test_check_verb_renders_the_rows_and_the_count(with_list_cost, capsys):
    from agenttally.cli import main

    argv = ["check", "--db", str(with_list_cost), "--as-of", "2026-12-01"]
    assert main([*argv, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "session_id,snapshot_ms,provider_usd,engine_usd,difference_usd,flagged",
        "sesn_far,2026-11-03T09:59:59.000Z,0.71,0.704978,-0.005022,True"]
    assert err == ("2 sessions compared with the provider's list_cost; 1 differ by more than "
                   "$0.005\n")
    assert main([*argv, "--tolerance", "0.01"]) == 0
    assert capsys.readouterr().out == (
        "0 sessions differ by more than $0.01 (2 compared with the provider's list_cost)\n")
    assert main([*argv, "--strict"]) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--tolerance", "half"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "agenttally check: --tolerance: expected an amount in USD >= 0, e.g. 0.005, "
        "got 'half'\n")
