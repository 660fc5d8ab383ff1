"""Daily series, forecasts and the backtest, on hand-made and simulated series."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import duckdb
import numpy as np
import pandas as pd
import pytest

from pricing.money import units_of_usd
from reports.backtest import run_backtest, run_rate, seasonal_naive, synthetic_series
from reports.forecast import Interval, daily_series, forecast


def charges(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """A `charges`-shaped table with just the columns reports read:
    rows of (day, team, meter, model, amount)."""
    con.execute("""CREATE OR REPLACE TEMP TABLE charges (period VARCHAR, day DATE,
        session_id VARCHAR, agent_id VARCHAR, environment_id VARCHAR, tags JSON, meter VARCHAR,
        model VARCHAR, amount_exact DECIMAL(38, 18), provisional BOOLEAN, amount_units HUGEINT)""")
    con.executemany("INSERT INTO charges VALUES (strftime(?::DATE, '%Y-%m'), ?, 's', 'a', 'e', "
                    "?, ?, ?, ?, false, ?)",
                    [(d, d, None if team is None else f'{{"team": "{team}"}}', meter, model,
                      Decimal(amount), str(units_of_usd(Decimal(amount))))
                     for d, team, meter, model, amount in rows])


def test_daily_series_sums_exactly_per_group_and_fills_missing_days_with_zero():
    con = duckdb.connect()
    d = date(2026, 11, 1)
    charges(con, [(d, "platform", "tokens", "claude-opus-5", "0.1"),
                  (d, "platform", "runtime", None, "0.2"),
                  (d, None, "tokens", "claude-opus-5", "1.25"),
                  (d + timedelta(days=2), "research", "web_search", None, "3")])
    by_team = daily_series(con, "team")
    assert list(by_team.columns) == ["(none)", "platform", "research"]
    assert by_team.index.strftime("%Y-%m-%d").tolist() == ["2026-11-01", "2026-11-02",
                                                           "2026-11-03"]
    assert by_team["platform"].tolist() == [pytest.approx(0.3), 0.0, 0.0]
    assert by_team.loc["2026-11-03", "research"] == 3.0
    assert list(daily_series(con, "model").columns) == ["(runtime)", "(web_search)",
                                                        "claude-opus-5"]
    total = daily_series(con, start=d, end=d + timedelta(days=5))
    assert total["total"].tolist() == [1.55, 0.0, 3.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="unknown group 'color'"):
        daily_series(con, "color")


def test_a_constant_history_is_forecast_as_itself():
    series = pd.Series(100.0, index=pd.date_range("2026-09-01", periods=30, freq="D"))
    fc = forecast(series, 10)
    assert fc.method == "constant" and fc.origin == date(2026, 10, 1)
    assert fc.total() == Interval(*[Decimal("1000.00")] * 5)


def test_short_history_falls_back_to_a_flat_level_and_says_so():
    series = pd.Series([100.0, 120, 80, 100, 110, 90, 100, 105, 95, 100],
                       index=pd.date_range("2026-11-01", periods=10, freq="D"))
    fc = forecast(series, 7)
    assert fc.method == "fallback: mean of the last 7 days"
    assert "only 10 days of history (< 14)" in fc.note and "without weekly seasonality" in fc.note
    mean = fc.total().mean
    assert Decimal("650") < mean < Decimal("750")  # 7 x 100 (mean of the last 7 days)
    lo, hi = fc.daily["lo80"].iloc[0], fc.daily["hi80"].iloc[0]
    assert lo < 100 < hi


def test_no_history_forecasts_zero():
    empty = pd.Series([], dtype=float, index=pd.DatetimeIndex([], freq="D"))
    fc = forecast(empty, 5, origin=date(2026, 11, 1))
    assert fc.method == "none" and fc.total().hi95 == 0


def test_weekly_seasonality_is_learnt():
    series = synthetic_series(84, seed=3, daily_noise=0.05, sessions_per_day=2000)
    fc = forecast(series, 14, n_paths=500)
    assert fc.method.startswith("comb(ETS(A,N,A)")
    median = fc.daily["median"]
    weekdays = median[median.index.day_of_week < 5].mean()
    weekends = median[median.index.day_of_week >= 5].mean()
    # the simulator's calendar: weekend weight (0.35, 0.3) vs weekdays (~1.14)
    assert 0.25 < weekends / weekdays < 0.32


def test_scenario_growth_compounds_on_the_paths():
    series = pd.Series(100.0, index=pd.date_range("2026-09-01", periods=30, freq="D"))
    fc = forecast(series, 61, growth_per_month=10)
    daily = fc.daily["mean"]
    assert daily.iloc[0] == pytest.approx(100 * 1.1 ** (1 / 30.4375))
    assert daily.iloc[60] == pytest.approx(100 * 1.1 ** (61 / 30.4375))
    assert "grown 10%/month" in fc.note


def test_baselines():
    index = pd.date_range("2026-11-01", periods=10, freq="D")  # Sunday .. Tuesday
    history = pd.Series(np.arange(1.0, 11.0), index=index)
    assert seasonal_naive(history, 9).tolist() == [4, 5, 6, 7, 8, 9, 10, 4, 5]
    assert run_rate(history, 3).tolist() == [5.5] * 3  # (1 + ... + 10) / 10 days
    # origin on the 1st: last month's daily mean
    october = pd.Series(2.0, index=pd.date_range("2026-10-01", periods=31, freq="D"))
    assert run_rate(october, 2).tolist() == [2.0, 2.0]


def test_backtest_on_a_series_with_known_weekly_seasonality_beats_both_baselines():
    series = synthetic_series(98, seed=11, sessions_per_day=400, daily_noise=0.1)
    result = run_backtest(series, horizon=7, n_origins=8, step=3, n_paths=400)
    model = result.score("model")
    naive = result.score("seasonal_naive")
    rate = result.score("run_rate")
    assert model.points == 8 * 7 and model.zero_days == 0
    assert model.mape < naive.mape and model.mape < rate.mape
    assert model.smape < naive.smape
    assert result.improvement is not None and result.improvement > 10
    assert model.period_end_mape is not None and model.period_end_mape < rate.period_end_mape


def test_interval_coverage_on_simulated_series_is_within_tolerance():
    """12 independent simulated series, 70 days of history, 14 days scored each."""
    inside80, inside95 = [], []
    for seed in range(12):
        series = synthetic_series(84, seed=seed, sessions_per_day=300)
        fc = forecast(series.iloc[:70], 14, n_paths=1000, seed=seed)
        actual = series.iloc[70:].to_numpy()
        inside80.append((actual >= fc.daily["lo80"]) & (actual <= fc.daily["hi80"]))
        inside95.append((actual >= fc.daily["lo95"]) & (actual <= fc.daily["hi95"]))
    assert 72 <= 100 * np.mean(inside80) <= 88
    assert 88 <= 100 * np.mean(inside95) <= 99


def test_backtest_with_too_little_history_says_so():
    series = synthetic_series(20, seed=1)
    result = run_backtest(series, horizon=14)
    assert result.origins == [] and "needs at least 42" in result.notes[0]
