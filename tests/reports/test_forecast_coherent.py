"""The forecast's model (reports.ets), coherent group forecasts and prices known ahead."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pricing.money import units_of_usd
from pricing.pricebook import load_pricebook
from reports import ets
from reports.backtest import synthetic_series
from reports.forecast import forecast, forecast_groups, forecast_store, reconcile
from reports.prices_ahead import prices_ahead, revalued_view

WEEK = np.array([0.3, 0.35, 0.3, 0.2, 0.0, -0.6, -0.55])


def test_ets_continues_an_exact_weekly_pattern_exactly():
    z = np.tile(WEEK, 12) + 5.0
    model = ets.fit(z)
    assert np.allclose(model.point(14), np.tile(WEEK, 2) + 5.0, atol=1e-9)


def test_ets_follows_a_log_linear_trend():
    t = np.arange(84)
    z = 4.0 + 0.01 * t + WEEK[t % 7]
    point = ets.fit(z).point(7)
    # 1% a day: the next week is 7% above the last; the damped, combined forecast follows
    # most of it (the flat member's share holds it back a little), never falls behind
    growth = point.mean() - z[-7:].mean()
    assert 0.05 < growth <= 0.07
    assert np.all(np.diff(point - WEEK[np.arange(84, 91) % 7]) > 0)


def test_paths_are_the_point_forecast_plus_centred_resampled_errors():
    rng = np.random.default_rng(1)
    z = np.tile(WEEK, 16) + 3 + 0.1 * rng.standard_normal(112)
    model = ets.fit(z)
    paths = ets.simulate(model, 7, 20_000, np.random.default_rng(2))
    assert np.allclose(paths.mean(axis=0), model.point(7), atol=0.01)
    # the same picks give the same innovations: two series drawn on the same days correlate
    picks = np.random.default_rng(3).integers(0, len(model.best.errors), (500, 7))
    a = ets.simulate(model, 7, 500, np.random.default_rng(4), picks=picks)
    b = ets.simulate(model, 7, 500, np.random.default_rng(5), picks=picks)
    assert np.array_equal(a, b)


def test_reconcile_gives_the_gap_to_the_groups_by_their_variance():
    top = np.array([[10.0], [10.0]])  # certain: variance 0, it takes none of the gap
    bottom = np.array([[[2.0], [4.0]],  # variance 1: takes all of it
                       [[3.0], [3.0]]])  # variance 0
    new_top, new_bottom = reconcile(top, bottom)
    assert new_bottom.tolist() == [[[7.0], [7.0]], [[3.0], [3.0]]]
    assert new_top.tolist() == [[10.0], [10.0]]


def test_reconcile_with_a_fixed_top_and_equal_variances_splits_the_gap_evenly():
    top = np.array([[12.0], [20.0]])
    bottom = np.array([[[1.0], [3.0]], [[2.0], [4.0]]])  # variances 1 and 1
    new_top, new_bottom = reconcile(top, bottom, top_fixed=True)
    # gaps 9 and 13, half each
    assert new_bottom.tolist() == [[[5.5], [9.5]], [[6.5], [10.5]]]
    assert new_top.tolist() == top.tolist()


def test_group_forecasts_add_up_to_the_organisation_on_every_path():
    teams = pd.DataFrame({f"t{i}": synthetic_series(90, seed=i, sessions_per_day=40 * (i + 1))
                          for i in range(4)})
    coherent = forecast_groups(teams, teams.sum(axis=1), 20, n_paths=300)
    summed = sum(f.paths for f in coherent.groups.values())
    assert np.allclose(summed, coherent.total.paths, rtol=0, atol=1e-9)
    assert "reconciled" in coherent.total.note and set(coherent.groups) == set(teams.columns)
    # the organisation's reconciled mean lies between its own forecast and the teams' sum
    alone = forecast(teams.sum(axis=1), 20, n_paths=300).total().mean
    parts = sum(forecast(teams[c], 20, n_paths=300).total().mean for c in teams)
    low, high = sorted([alone, parts])
    assert low * Decimal("0.98") <= coherent.total.total().mean <= high * Decimal("1.02")


def test_a_history_with_gaps_says_they_count_as_zero():
    series = synthetic_series(40, seed=2)
    series.iloc[20:23] = 0.0
    fc = forecast(series, 7, n_paths=200)
    assert "3 days without cost inside the history (gaps or quiet days) counted as zero" \
        in fc.note


# --- prices known ahead ------------------------------------------------------------------

BOOK = """
name = "list"
version = "{version}"
effective_from = {start}
{end}
source = "test"
[runtime]
usd_per_session_hour = "{runtime}"
[web_search]
usd_per_1000 = "10"
[modifiers]
fast_mode_applies = false
data_residency_applies = false
[[models]]
id = "claude-x"
input = "3"
output = "15"
cache_write_5m = "3.75"
cache_write_1h = "6"
cache_read = "0.30"
"""


def books(tmp_path: Path, change: date) -> list:
    first = tmp_path / "a.toml"
    first.write_text(BOOK.format(version="v1", start="2026-01-01", end=f"effective_to = {change}",
                                 runtime="0.08"))
    second = tmp_path / "b.toml"
    second.write_text(BOOK.format(version="v2", start=change, end="", runtime="0.16"))
    return [load_pricebook(first), load_pricebook(second)]


def priced_charges(con: duckdb.DuckDBPyConnection, days: int, start: date,
                   runtime_price: dict[str, str]) -> None:
    """Each day: team "ops" runs 125 session-hours ($10 at $0.08/h), team "dev" spends $30
    on input tokens of claude-x (10M at $3/MTok); runtime is billed at the book of its day."""
    con.execute("""CREATE OR REPLACE TEMP TABLE charges (period VARCHAR, day DATE,
        session_id VARCHAR, agent_id VARCHAR, environment_id VARCHAR, tags JSON, meter VARCHAR,
        model VARCHAR, token_class VARCHAR, tier VARCHAR, quantity HUGEINT,
        unit_price DECIMAL(38, 12), book VARCHAR, book_version VARCHAR,
        amount_exact DECIMAL(38, 18), provisional BOOLEAN, amount_units HUGEINT)""")
    rows = []
    for i in range(days):
        day = start + timedelta(days=i)
        version = "v2" if day >= date.fromisoformat(runtime_price["from"]) else "v1"
        rate = Decimal(runtime_price[version])
        runtime = rate * 125
        rows.append((day, day, '{"team": "ops"}', "runtime", None, None, "standard",
                     125 * 3_600_000, rate, "list", version, runtime,
                     str(units_of_usd(runtime))))
        rows.append((day, day, '{"team": "dev"}', "tokens", "claude-x", "input", "standard",
                     10_000_000, Decimal(3), "list", version, Decimal(30),
                     str(units_of_usd(Decimal(30)))))
    con.executemany("INSERT INTO charges VALUES (strftime(?::DATE, '%Y-%m'), ?, 's', 'a', 'e', "
                    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false, ?)", rows)


def test_a_scheduled_price_change_moves_the_forecast_on_its_date(tmp_path):
    con = duckdb.connect()
    start, origin, change = date(2026, 9, 1), date(2026, 11, 1), date(2026, 11, 11)
    priced_charges(con, 61, start, {"from": "2030-01-01", "v1": "0.08", "v2": "0.16"})
    ahead = prices_ahead(con, books(tmp_path, change), "team", origin, 20)
    # runtime doubles from Nov 11: ops' cost x2, dev's unchanged, the total (10 + 30) -> 50
    assert ahead.factor("ops").tolist() == [1.0] * 10 + [2.0] * 10
    assert ahead.factor("dev").tolist() == [1.0] * 20
    assert ahead.factor("total").tolist() == [1.0] * 10 + [1.25] * 10
    [moved] = ahead.changes
    assert (moved.day, moved.version, moved.effect) == (change, "v2", 0.25)
    coherent = forecast_store(con, "team", 20, end=origin, n_paths=200,
                              books=books(tmp_path, change))
    daily = coherent.total.daily["mean"]
    assert abs(daily.iloc[9] - 40) < 1e-6 and abs(daily.iloc[10] - 50) < 1e-6
    assert abs(coherent.groups["ops"].daily["mean"].iloc[12] - 20) < 1e-6
    assert coherent.price_changes == (moved,)


def test_a_past_price_change_is_not_read_as_a_change_in_usage(tmp_path):
    con = duckdb.connect()
    start, change = date(2026, 9, 1), date(2026, 10, 1)
    priced_charges(con, 61, start, {"from": str(change), "v1": "0.08", "v2": "0.16"})
    name = revalued_view(con, books(tmp_path, change), date(2026, 11, 1))
    per_day = con.execute(f"SELECT day, sum(amount_units) FROM {name} GROUP BY day "
                          f"ORDER BY day").fetchall()
    # September's runtime re-valued at November's $0.16: every day is $20 + $30
    assert {int(units) for _, units in per_day} == {units_of_usd(Decimal(50))}


def test_two_weeks_of_history_are_enough_for_the_seasonal_model():
    for days in (14, 15, 20):
        fc = forecast(synthetic_series(days, seed=days), 10, n_paths=200)
        assert fc.method.startswith("comb(") and fc.history_days == days
        assert np.isfinite(fc.paths).all()
    assert forecast(synthetic_series(13, seed=1), 10, n_paths=200).method.startswith("fallback")
