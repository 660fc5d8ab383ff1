"""Budgets: actual, forecast at period end, overrun odds and crossing dates, by hand."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pytest

from reports.budgets import Budget, BudgetError, budget_status, load_budgets, period_bounds
from tests.conftest import ms
from tests.reports.test_forecast import charges

SEP_1 = date(2026, 9, 1)
DATA = Path(__file__).resolve().parents[2] / "data"


def store(team_daily: dict[str, list[float]]) -> duckdb.DuckDBPyConnection:
    """Daily spend per team from 2026-09-01 on."""
    con = duckdb.connect()
    charges(con, [(SEP_1 + timedelta(days=i), team, "tokens", "claude-opus-5", str(amount))
                  for team, amounts in team_daily.items() for i, amount in enumerate(amounts)])
    return con


def status(con, amount, as_of="2026-11-11T00:00:00Z", team="platform", **kw):
    budget = Budget(name="b", group="team", value=team, amount=Decimal(amount), **kw)
    return budget_status(con, [budget], ms(as_of), n_paths=1000)[0]


def test_constant_spend_crosses_each_threshold_on_the_day_arithmetic_says():
    # $100 a day; by Nov 11 00:00 November has spent 1,000. Budget 2,050:
    # 50% (1,025) on Nov 11, 80% (1,640) on Nov 17 (1,700), 100% on Nov 21 (2,100)
    con = store({"platform": [100] * 71})
    s = status(con, "2050", thresholds=(50, 80, 100))
    assert (s.period, s.start, s.end, s.actual) == ("2026-11", date(2026, 11, 1),
                                                    date(2026, 12, 1), Decimal("1000.00"))
    assert s.used_percent == Decimal("48.8")
    assert s.forecast_end.mean == s.forecast_end.lo95 == s.forecast_end.hi95 == Decimal("3000.00")
    assert s.p_overrun == 1.0
    assert [(t.percent, t.amount, t.median, t.p10, t.p90, t.probability)
            for t in s.thresholds] == [
        (50, Decimal("1025"), date(2026, 11, 11), date(2026, 11, 11), date(2026, 11, 11), 1.0),
        (80, Decimal("1640"), date(2026, 11, 17), date(2026, 11, 17), date(2026, 11, 17), 1.0),
        (100, Decimal("2050"), date(2026, 11, 21), date(2026, 11, 21), date(2026, 11, 21), 1.0)]


def test_crossing_date_on_a_linear_series():
    # day i (0 = Sep 1) costs 50 + i: Nov 1..10 are i = 61..70, 1,155 spent. Budget 2,000:
    # 845 to go at 121, 122, ... a day: 4 days reach 490 (80% = 1,600 needs 445: Nov 14),
    # 7 days reach 868 >= 845: Nov 17
    con = store({"search": [50 + i for i in range(71)]})
    s = status(con, "2000", team="search", thresholds=(50, 80, 100))
    assert s.actual == Decimal("1155.00")
    first, eighty, full = s.thresholds
    assert first.crossed_on == date(2026, 11, 9)  # 50% = 1,000: 1,155 - 70 - 69 = 1,016 on the 9th
    assert first.median is None and first.probability == 1.0
    assert eighty.median == date(2026, 11, 14)
    assert (full.p10, full.median, full.p90) == (date(2026, 11, 17),) * 3
    assert s.p_overrun == 1.0
    # the period total follows the line: 1,155 + (121 + ... + 140) = 3,765, within 2%
    assert abs(s.forecast_end.mean - Decimal("3765")) < Decimal("75")


def test_a_noisy_series_gives_a_crossing_range_around_the_linear_date():
    rng = np.random.default_rng(5)
    con = store({"platform": list(np.round(100 * (1 + 0.1 * rng.standard_normal(71)), 2))})
    s = status(con, "2050")
    crossing = s.crossing
    assert crossing is not None and crossing.crossed_on is None
    assert crossing.p10 <= date(2026, 11, 21) <= crossing.p90
    assert date(2026, 11, 20) <= crossing.median <= date(2026, 11, 22)
    assert (crossing.p90 - crossing.p10).days <= 4
    assert s.forecast_end.lo80 < s.forecast_end.mean < s.forecast_end.hi80


def test_a_budget_unlikely_to_be_crossed_reports_after_the_period():
    con = store({"platform": [100] * 71})
    s = status(con, "5000")
    assert s.p_overrun == 0.0
    assert s.crossing.probability == 0.0 and s.crossing.median is None \
        and s.crossing.p90 is None


def test_quarterly_budget_and_a_partial_as_of_day():
    # as of Nov 11 12:00: Q4 so far = Oct (31) + Nov 1..10 (10) days x 100 + half of Nov 11
    # (no charges yet that day) -> actual 4,100; remaining 50.5 days x 100 -> 9,150 at the end
    con = store({"platform": [100] * 71})
    budget = Budget(name="q", group="total", period="quarterly", amount=Decimal("9000"))
    s = budget_status(con, [budget], ms("2026-11-11T12:00:00Z"), n_paths=200)[0]
    assert (s.period, s.actual, s.forecast_end.mean) == ("2026-Q4", Decimal("4100.00"),
                                                         Decimal("9150.00"))
    # 4,150 by the end of Nov 11, then 100 a day: 8,950 on Dec 29, 9,050 on Dec 30
    assert s.crossing.median == date(2026, 12, 30)


def test_a_group_without_charges_is_zero_and_says_so():
    con = store({"platform": [100] * 30})
    s = status(con, "100", team="nobody", as_of="2026-10-01T00:00:00Z")
    assert s.actual == 0 and s.p_overrun == 0 and s.notes == ["no charges for team 'nobody' so far"]


def test_period_bounds():
    assert period_bounds(date(2026, 11, 20), "monthly") == (date(2026, 11, 1),
                                                            date(2026, 12, 1), "2026-11")
    assert period_bounds(date(2026, 12, 31), "quarterly") == (date(2026, 10, 1),
                                                              date(2027, 1, 1), "2026-Q4")


def test_the_example_budgets_file_loads_with_default_thresholds():
    budgets = load_budgets(DATA / "budgets.toml")
    assert [b.thresholds for b in budgets][:3] == [(50, 80, 100), (50, 80, 100), (80, 100)]


@pytest.mark.parametrize(("text", "message"), [
    ('[[budgets]]\nname = "x"\namount = 100.5\n', 'budgets[0].amount: write decimals as a '
                                                  'string, e.g. "100.5"'),
    ('[[budgets]]\nname = "x"\ngroup = "team"\namount = "1"\n',
     "budgets[0].value: name the team this budget is for"),
    ('[[budgets]]\nname = "x"\namount = "1"\nperiod = "weekly"\n', "budgets[0].period: "),
])
def test_bad_budget_files_name_the_field(tmp_path, text, message):
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(BudgetError, match="b.toml: " + message.replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        load_budgets(path)


def test_forecast_and_budgets_cli_on_a_tiny_store(tmp_path, capsys):
    from agenttally.cli import main

    db = _twenty_days(tmp_path)
    assert main(["forecast", "--db", str(db), "--as-of", "2026-11-21", "--horizon", "10",
                 "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "group,days,forecast,lo80,hi80,lo95,hi95,history_days,method"
    assert out[1] == "total,2026-11-21..2026-11-30,7.05,7.05,7.05,7.05,7.05,20,constant"
    budgets = tmp_path / "b.toml"
    budgets.write_text('[[budgets]]\nname = "all"\namount = "20"\n')
    assert main(["budgets", "--db", str(db), "--as-of", "2026-11-21", "--budgets",
                 str(budgets), "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["actual"], row["forecast_end"]["mean"], row["p_overrun"]) == \
        ("14.10", "21.15", 1.0)
    # 20 x 0.705 = 14.10; 100% (20) after 9 more days: 14.10 + 9 x 0.705 = 20.445 on Nov 29
    assert row["thresholds"][-1]["median"] == "2026-11-29"


def _twenty_days(tmp_path):
    """A store of the worked example on each of Nov 1..20 ($0.705 a day)."""
    from meter.ingest import ingest_lines
    from meter.store import connect
    from tests.pricing.test_rating import worked_example

    db = tmp_path / "s.duckdb"
    con = connect(db)
    events = [e for d in range(1, 21) for e in worked_example(
        f"s{d}", 50_000, 0) for e in [_shift(e, d)]]
    ingest_lines(con, [json.dumps(e) for e in events], source="t", max_future_ms=10**12)
    con.close()
    return db


def _shift(event: dict, day: int) -> dict:
    """The worked example moved from Nov 3 to Nov `day`."""
    out = dict(event)
    for key in ("processed_at", "created_at"):
        if key in out:
            out[key] = out[key].replace("2026-11-03", f"2026-11-{day:02d}")
    return out


def test_the_budgets_table_says_crossings_in_words(tmp_path, capsys):
    """Issue 21: 'after (after..after)' and 'p=0% ~after' for a budget not crossed in its
    period."""
    from agenttally.cli import main

    db = _twenty_days(tmp_path)
    budgets = tmp_path / "b.toml"
    budgets.write_text('[[budgets]]\nname = "roomy"\namount = "1000"\n'
                       '[[budgets]]\nname = "tight"\namount = "20"\n')
    assert main(["budgets", "--db", str(db), "--as-of", "2026-11-21", "--budgets",
                 str(budgets)]) == 0
    out = capsys.readouterr().out
    roomy = next(line for line in out.splitlines() if line.startswith("roomy"))
    tight = next(line for line in out.splitlines() if line.startswith("tight"))
    assert "not in the period (median)" in roomy and "100%: 0% chance" in roomy
    assert "after" not in roomy.replace("after the period", "")
    assert "~11-29" in tight and "100%: 100% chance, ~11-29" in tight
