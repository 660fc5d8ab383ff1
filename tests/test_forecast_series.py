"""The evaluation's series (bench/forecast_series.py): simulated, rated, summed per day, and
showing the regime each fleet is there for. Small scales and windows: a few seconds."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import forecast_series
from bench.forecast_series import (
    EVAL_FLEETS,
    EVAL_PRICEBOOKS,
    HELD_OUT_SEEDS,
    cache_path,
    profile_series,
)

PROFILES = Path(__file__).resolve().parents[1] / "data" / "profiles"
SEED = 5  # not one of the held-out seeds


@pytest.fixture(scope="module")
def onboarding(tmp_path_factory) -> pd.DataFrame:
    cache = tmp_path_factory.mktemp("series")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forecast_series, "CACHE_DIR", cache)
        frame = profile_series("onboarding", SEED, days=80, scale=0.1)
        again = profile_series("onboarding", SEED, days=80, scale=0.1)  # from the cache
        assert len(list(cache.glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(frame, again)
    return frame


def test_a_series_has_one_row_per_consecutive_day_and_its_teams_add_up_to_the_total(
        onboarding):
    assert list(onboarding.columns) == ["total", "data-science", "platform", "security",
                                        "support"]
    assert len(onboarding) == 80 and onboarding.index[0] == pd.Timestamp("2026-08-10")
    assert (onboarding.index == pd.date_range("2026-08-10", periods=80, freq="D")).all()
    teams = onboarding.drop(columns="total").sum(axis=1)
    np.testing.assert_allclose(teams, onboarding["total"], rtol=1e-12, atol=1e-9)
    assert (onboarding["total"] > 0).all()


def test_a_team_onboarding_on_day_70_costs_nothing_before_it(onboarding):
    science = onboarding["data-science"]
    assert (science.iloc[:70] == 0).all()
    assert science.iloc[70:].sum() > 0 and (science.iloc[-3:] > 0).all()  # ramping up
    assert (onboarding["security"] == 0).all()  # starts on day 112: after this window


def test_the_year_end_holiday_is_visibly_lower():
    frame = profile_series("holiday", SEED, start=date(2026, 11, 30), days=35, scale=0.15,
                           cache=False)
    before = frame.loc["2026-11-30":"2026-12-20", "total"].mean()  # three whole weeks
    during = frame.loc["2026-12-21":"2027-01-03", "total"].mean()  # two whole weeks
    assert during < 0.5 * before


def test_the_price_book_change_raises_cost_from_its_day_and_not_before():
    args = dict(start=date(2026, 10, 29), days=8, scale=0.05, cache=False)
    shipped = profile_series("midsize", SEED, **args)
    changed = profile_series("midsize", SEED, pricebooks_dir=EVAL_PRICEBOOKS, **args)
    cut = "2026-11-02"
    before = slice(None, "2026-11-01")
    pd.testing.assert_frame_equal(shipped.loc[before], changed.loc[before])
    ratio = changed.loc[cut:, "total"].sum() / shipped.loc[cut:, "total"].sum()
    assert 1.1 < ratio < 1.25  # Opus 5.5 tokens +25%, Sonnet 5.5 +20%: most of the bill


def test_the_cache_key_names_every_input():
    base = dict(days=150, start=date(2026, 8, 10), scale=1.0, pricebooks_dir=None, by="team")
    keys = {cache_path("demo", 101, **base),
            cache_path("demo", 102, **base),
            cache_path("demo", 101, **{**base, "scale": 0.5}),
            cache_path("demo", 101, **{**base, "days": 149}),
            cache_path("demo", 101, **{**base, "start": date(2026, 8, 11)}),
            cache_path("demo", 101, **{**base, "by": "model"}),
            cache_path("demo", 101, **{**base, "pricebooks_dir": EVAL_PRICEBOOKS})}
    assert len(keys) == 7
    assert cache_path("demo", 101, **base) == cache_path("demo", 101, **base)


def test_the_evaluation_covers_every_shipped_profile_with_held_out_seeds():
    assert {f.profile for f in EVAL_FLEETS} == {p.stem for p in PROFILES.glob("*.toml")}
    assert any(f.pricebooks == EVAL_PRICEBOOKS for f in EVAL_FLEETS)
    assert len({f.name for f in EVAL_FLEETS}) == len(EVAL_FLEETS)
    assert all(f.seeds == HELD_OUT_SEEDS and len(f.seeds) >= 3 for f in EVAL_FLEETS)
