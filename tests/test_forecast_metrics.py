"""The forecast bench's scores (bench/forecast_metrics.py) on tiny arrays, worked by hand."""

from __future__ import annotations

import math

import pytest

from bench.forecast_metrics import (
    MapeResult,
    coverage,
    interval_score,
    mape,
    mase,
    mean_pinball_loss,
    pinball_loss,
    scaled_interval_score,
    seasonal_naive_scale,
)

# Nine days; the weekly seasonal-naive forecast of days 8 and 9 is days 1 and 2:
# |12 - 10| = 2, |18 - 20| = 2, so its in-sample MAE (the MASE / MSIS scale) is 2.
HISTORY = [10, 20, 30, 40, 50, 60, 70, 12, 18]

# An 80% interval (alpha = 0.2, 2/alpha = 10) on four days:
#   day 1: 5 in [2, 8]    -> width 6                      = 6
#   day 2: 1 below [3, 7] -> width 4 + 10 * (3 - 1)       = 24
#   day 3: 12 above [4, 10] -> width 6 + 10 * (12 - 10)   = 26
#   day 4: 1 in [0, 2]    -> width 2                      = 2
# mean (6 + 24 + 26 + 2) / 4 = 58 / 4 = 14.5
ACTUAL = [5, 1, 12, 1]
LO80 = [2, 3, 4, 0]
HI80 = [8, 7, 10, 2]


def test_seasonal_naive_scale_is_the_in_sample_mae_of_last_weeks_same_day() -> None:
    assert seasonal_naive_scale(HISTORY) == 2.0
    # season 1 (naive): |2-1| + |4-2| + |7-4| = 6 over 3 differences = 2
    assert seasonal_naive_scale([1, 2, 4, 7], season=1) == 2.0


def test_seasonal_naive_scale_is_nan_without_a_full_season_and_one_day() -> None:
    assert math.isnan(seasonal_naive_scale([1, 2, 3, 4, 5, 6, 7]))


def test_mase_divides_the_forecast_mae_by_the_history_scale() -> None:
    # errors |10 - 12| = 2, |22 - 18| = 4: MAE 3; scale 2 -> 1.5
    assert mase([10, 22], [12, 18], HISTORY) == 1.5
    # season 1: error |8 - 7| = 1, scale 2 -> 0.5
    assert mase([8], [7], [1, 2, 4, 7], season=1) == 0.5


def test_mase_is_nan_when_the_history_repeats_exactly_or_is_too_short() -> None:
    assert math.isnan(mase([5], [4], [5.0] * 14))  # scale 0
    assert math.isnan(mase([5], [4], [5.0] * 7))  # no seasonal difference yet


def test_mape_leaves_out_zero_days_and_counts_them() -> None:
    # |100-125|/100 = 0.25, day 2 has actual 0 (left out), |50-25|/50 = 0.5, |200-200| = 0:
    # (0.25 + 0.5 + 0) / 3 = 0.25 -> 25%
    assert mape([100, 0, 50, 200], [125, 5, 25, 200]) == MapeResult(25.0, 3, 1)


def test_mape_of_only_zero_days_is_nan_with_every_day_counted() -> None:
    result = mape([0, 0], [1, 2])
    assert math.isnan(result.value) and (result.points, result.zero_days) == (0, 2)


def test_coverage_counts_days_inside_the_bounds_included() -> None:
    # 1 in [0, 1] (on the bound), 5 > 4, 10 in [0, 10] (on the bound), 3 < 4: 2 of 4
    assert coverage([1, 5, 10, 3], [0, 0, 0, 4], [1, 4, 10, 6]) == 50.0


def test_interval_score_is_width_plus_two_over_alpha_times_each_miss() -> None:
    assert interval_score(ACTUAL, LO80, HI80, 80) == 14.5


def test_interval_score_of_a_95_interval_penalises_misses_forty_fold() -> None:
    # alpha 0.05, 2/alpha = 40: day 1: 0 below [1, 3] -> 2 + 40 * 1 = 42;
    # day 2: 10 above [2, 8] -> 6 + 40 * 2 = 86; mean (42 + 86) / 2 = 64
    assert interval_score([0, 10], [1, 2], [3, 8], 95) == 64.0


def test_scaled_interval_score_is_msis_divided_by_the_mase_scale() -> None:
    # 14.5 / 2 = 7.25
    assert scaled_interval_score(ACTUAL, LO80, HI80, 80, HISTORY) == 7.25
    assert math.isnan(scaled_interval_score(ACTUAL, LO80, HI80, 80, [1.0] * 14))


def test_pinball_loss_weighs_under_and_over_forecasts_by_the_quantile() -> None:
    # actual 10 each day, forecasts 8, 10, 14, 6: y - f = 2, 0, -4, 4
    # q = 0.25: 0.25*2 = 0.5, 0, 0.75*4 = 3, 0.25*4 = 1 -> 4.5 / 4 = 1.125
    assert pinball_loss([10, 10, 10, 10], [8, 10, 14, 6], 0.25) == 1.125
    # q = 0.5 is half the absolute error: (2 + 0 + 4 + 4) / 2 / 4 = 1.25
    assert pinball_loss([10, 10, 10, 10], [8, 10, 14, 6], 0.5) == 1.25


def test_mean_pinball_loss_averages_over_the_quantiles() -> None:
    # (1.125 + 1.25) / 2 = 1.1875
    forecast = [8, 10, 14, 6]
    assert mean_pinball_loss([10, 10, 10, 10], {0.25: forecast, 0.5: forecast}) == 1.1875


def test_interval_score_equals_two_over_alpha_times_the_pinball_of_its_bounds() -> None:
    # lower bound as the 0.1 quantile: y - lo = 3, -2, 8, 1 -> 0.3 + 1.8 + 0.8 + 0.1 = 3.0 / 4
    # = 0.75; upper as the 0.9 quantile: y - hi = -3, -6, 2, -1 -> 0.3 + 0.6 + 1.8 + 0.1 = 2.8
    # / 4 = 0.7; 10 * (0.75 + 0.7) = 14.5, the interval score above
    lower, upper = pinball_loss(ACTUAL, LO80, 0.1), pinball_loss(ACTUAL, HI80, 0.9)
    assert (lower, upper) == pytest.approx((0.75, 0.7), rel=1e-15)
    assert 10 * (lower + upper) == pytest.approx(interval_score(ACTUAL, LO80, HI80, 80),
                                                 rel=1e-15)


def test_arrays_of_different_lengths_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="actual=2, forecast=3"):
        mape([1, 2], [1, 2, 3])


def test_a_level_outside_0_100_or_a_quantile_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="level is a percentage"):
        interval_score([1], [0], [2], 100)
    with pytest.raises(ValueError, match="quantile must be between 0 and 1"):
        pinball_loss([1], [1], 50)
