"""The commitment calculator: exact outcomes on constant spend, and the CLI verb."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import duckdb
import numpy as np
import pytest

from agenttally.cli import main
from reports.commitment import commitment_options, commitment_outlook, window_of
from tests.conftest import ms
from tests.reports.test_budgets import _twenty_days
from tests.reports.test_forecast import charges

D = Decimal


def constant_store() -> duckdb.DuckDBPyConnection:
    """Team a spends $10 a day on tokens, team b $5 on tokens and $1 on runtime, Sep 1 on."""
    con = duckdb.connect()
    start = date(2026, 9, 1)
    rows = []
    for i in range(61):
        day = start + timedelta(days=i)
        rows += [(day, "a", "tokens", "claude-opus-5", "10"),
                 (day, "b", "tokens", "claude-opus-5", "5"), (day, "b", "runtime", None, "1")]
    charges(con, rows)
    return con


def options_of(outlook):
    return {(o.level, o.group): o for o in outlook.options}


def test_commitment_met_by_every_path_saves_the_discount():
    outlook = commitment_outlook(constant_store(), [D(400), D(500)], discount_percent=D(10),
                                 as_of_ms=ms("2026-10-31T00:00:00Z"), meters=["tokens"],
                                 n_paths=200)
    assert (outlook.window, outlook.start, outlook.end) == ("2026-11", date(2026, 11, 1),
                                                            date(2026, 12, 1))
    got = options_of(outlook)
    # November: a 300, b 150 eligible; counted 450 x 0.9 = 405 >= 400: saving 45, no true-up
    total = got[(D(400), "TOTAL")]
    assert (total.expected_eligible, total.expected_saving, total.p_underused,
            total.expected_true_up) == (D("450.00"), D("45.00"), 0.0, D("0.00"))
    # 500: true-up 95, saving 45 - 95 = -50; a: 30 - 95 x 2/3 = -33.33, b: 15 - 31.67
    total = got[(D(500), "TOTAL")]
    assert (total.expected_saving, total.p_underused, total.expected_true_up) == (
        D("-50.00"), 1.0, D("95.00"))
    assert (got[(D(500), "a")].expected_saving, got[(D(500), "b")].expected_saving) == (
        D("-33.33"), D("-16.67"))
    assert outlook.eligible_share["b"] == D(5) / D(6)


def test_options_on_hand_made_paths():
    eligible = {"x": np.array([100.0, 200.0, 300.0, 400.0])}
    [total, x] = commitment_options(eligible, [D(180)], D(10))
    # counted 90, 180, 270, 360 vs 180: true-up 90 on one path of four
    assert (total.p_underused, total.expected_true_up) == (0.25, D("22.50"))
    assert total.expected_saving == D("2.50")  # mean(10, 20, 30, 40) - 22.50
    assert (x.group, x.expected_saving) == ("x", D("2.50"))


def test_windows_are_whole_periods_after_the_as_of_day():
    assert [str(p) for p in window_of(date(2026, 11, 20), "quarter")] == ["2026-12", "2027-02"]
    assert [str(p) for p in window_of(date(2026, 12, 31), "month")] == ["2027-01", "2027-01"]
    assert [str(p) for p in window_of(date(2026, 12, 1), "month")] == ["2026-12", "2026-12"]


def test_the_commit_verb_prints_each_level_in_total_and_per_team(tmp_path, capsys):
    db = str(_twenty_days(tmp_path))
    assert main(["commit", "--db", db, "--as-of", "2026-11-21", "--levels", "10,40",
                 "--discount", "10", "--paths", "200", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["window"] == "2026-12" and doc["discount_percent"] == "10"
    assert [(o["level"], o["group"]) for o in doc["options"]] == [
        ("10.00", "TOTAL"), ("10.00", "platform"), ("40.00", "TOTAL"), ("40.00", "platform")]
    # about $0.705 a day: December's ~$21.86 clears $10 always and never reaches $40
    assert doc["options"][0]["p_underused_%"] == "0.00"
    assert doc["options"][2]["p_underused_%"] == "100.00"


@pytest.mark.parametrize("argv, line", [
    (["--levels", "30k,40000", "--discount", "10"],
     "agenttally commit: --levels: expected a comma list of USD amounts per period, e.g. "
     "30000,40000,50000, got '30k,40000'"),
    (["--levels", "100", "--discount", "120"],
     "agenttally commit: --discount: expected a percentage from 0 to 100, e.g. 10, got '120'"),
])
def test_the_commit_verb_refuses_malformed_flags_with_one_line(tmp_path, capsys, argv, line):
    with pytest.raises(SystemExit) as stopped:
        main(["commit", *argv, "--db", str(tmp_path / "s.duckdb")])
    assert stopped.value.code == 2
    assert capsys.readouterr() == ("", line + "\n")


def test_the_commit_verb_needs_a_discount(tmp_path, capsys):
    db = str(_twenty_days(tmp_path))
    assert main(["commit", "--db", db, "--levels", "10"]) == 2
    assert capsys.readouterr().err == ("agenttally commit: --discount: give the commitment "
                                       "discount in percent, e.g. 10 (or --contract FILE with "
                                       "a commitment)\n")
