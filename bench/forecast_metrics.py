"""Accuracy scores for daily forecasts, point and interval: pure numpy.

Every function takes one forecast: ``actual`` and the forecast arrays are the same ``horizon``
days; ``history`` is what the forecaster saw (daily values, oldest first, ending the day before
the first forecast day). Scores over many origins are the caller's to pool (by concatenating
the days, or by averaging per-origin scores: say which).

- ``mase``: mean absolute error / the in-sample MAE of the seasonal-naive (lag 7) forecast
  on the history (Hyndman & Koehler 2006). Below 1 beats last week's same weekday in sample.
- ``mape``: mean |actual - forecast| / |actual|, percent, over the days whose actual is not
  zero; the zero days are left out and counted (``MapeResult.zero_days``), never hidden.
- ``coverage``: percent of days with lo <= actual <= hi (bounds included).
- ``interval_score``: Gneiting & Raftery (2007), eq. 43, for a central (1 - alpha) interval:
  (hi - lo) + 2/alpha (lo - y)[y < lo] + 2/alpha (y - hi)[y > hi], averaged over the days;
  lower is better: narrow, and a penalty for each miss. ``scaled_interval_score`` divides it
  by the same scale as MASE: the M4 competition's MSIS.
- ``pinball_loss``: the quantile loss max(q (y - f), (q - 1)(y - f)), averaged over the days;
  ``mean_pinball_loss`` averages it over several quantiles. For an interval,
  interval_score = 2/alpha (pinball(lo, alpha/2) + pinball(hi, 1 - alpha/2)).

A score that is undefined for the data is NaN, never a guess: MASE and MSIS when the history
has fewer than ``season + 1`` days or its seasonal-naive MAE is 0 (a perfectly repeating
history); MAPE when every actual day is zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "MapeResult",
    "coverage",
    "interval_score",
    "mape",
    "mase",
    "mean_pinball_loss",
    "pinball_loss",
    "scaled_interval_score",
    "seasonal_naive_scale",
]

SEASON = 7

FloatArray = npt.NDArray[np.float64]


def _vectors(**arrays: npt.ArrayLike) -> list[FloatArray]:
    """The arrays as 1-d float arrays of one length, or a ValueError naming the odd one."""
    out = {name: np.asarray(values, dtype=np.float64) for name, values in arrays.items()}
    for name, array in out.items():
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-dimensional, got shape {array.shape}")
    lengths = {name: len(array) for name, array in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("arrays must have one length, got "
                         + ", ".join(f"{name}={n}" for name, n in lengths.items()))
    return list(out.values())


def seasonal_naive_scale(history: npt.ArrayLike, season: int = SEASON) -> float:
    """mean |history[t] - history[t - season]| over t = season .. n-1: the in-sample MAE of
    the seasonal-naive forecast. NaN when the history has fewer than season + 1 days."""
    (h,) = _vectors(history=history)
    if season < 1:
        raise ValueError(f"season must be at least 1, got {season}")
    if len(h) <= season:
        return float("nan")
    return float(np.mean(np.abs(h[season:] - h[:-season])))


def _scaled(value: float, scale: float) -> float:
    if not np.isfinite(scale) or scale == 0:
        return float("nan")
    return value / scale


def mase(actual: npt.ArrayLike, forecast: npt.ArrayLike, history: npt.ArrayLike,
         season: int = SEASON) -> float:
    """Mean absolute scaled error: MAE(actual, forecast) / seasonal_naive_scale(history).
    NaN when the scale is undefined or 0."""
    a, f = _vectors(actual=actual, forecast=forecast)
    if not len(a):
        return float("nan")
    return _scaled(float(np.mean(np.abs(a - f))), seasonal_naive_scale(history, season))


@dataclass(frozen=True)
class MapeResult:
    value: float  # percent; NaN when no day has a non-zero actual
    points: int  # days scored
    zero_days: int  # days with a zero actual, left out of value


def mape(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> MapeResult:
    """Mean absolute percentage error over the days whose actual is not zero, in percent."""
    a, f = _vectors(actual=actual, forecast=forecast)
    keep = a != 0
    zero_days = int((~keep).sum())
    if not keep.any():
        return MapeResult(float("nan"), 0, zero_days)
    value = 100 * float(np.mean(np.abs(a[keep] - f[keep]) / np.abs(a[keep])))
    return MapeResult(value, int(keep.sum()), zero_days)


def coverage(actual: npt.ArrayLike, lo: npt.ArrayLike, hi: npt.ArrayLike) -> float:
    """Percent of days with lo <= actual <= hi; NaN for no days."""
    a, low, high = _vectors(actual=actual, lo=lo, hi=hi)
    if not len(a):
        return float("nan")
    return 100 * float(np.mean((a >= low) & (a <= high)))


def _alpha(level: float) -> float:
    if not 0 < level < 100:
        raise ValueError(f"level is a percentage between 0 and 100, got {level}")
    return (100 - level) / 100  # not 1 - level/100: 0.2, not 0.19999999999999996


def interval_score(actual: npt.ArrayLike, lo: npt.ArrayLike, hi: npt.ArrayLike,
                   level: float) -> float:
    """Mean interval score of the central ``level``% interval [lo, hi] (alpha = 1 - level/100):
    (hi - lo) + 2/alpha (lo - y)[y < lo] + 2/alpha (y - hi)[y > hi]. NaN for no days."""
    a, low, high = _vectors(actual=actual, lo=lo, hi=hi)
    alpha = _alpha(level)
    if not len(a):
        return float("nan")
    below = np.where(a < low, low - a, 0.0)
    above = np.where(a > high, a - high, 0.0)
    return float(np.mean((high - low) + 2 / alpha * below + 2 / alpha * above))


def scaled_interval_score(actual: npt.ArrayLike, lo: npt.ArrayLike, hi: npt.ArrayLike,
                          level: float, history: npt.ArrayLike, season: int = SEASON) -> float:
    """interval_score / seasonal_naive_scale(history): the M4 MSIS. NaN when the scale is
    undefined or 0."""
    return _scaled(interval_score(actual, lo, hi, level), seasonal_naive_scale(history, season))


def pinball_loss(actual: npt.ArrayLike, forecast: npt.ArrayLike, quantile: float) -> float:
    """Mean quantile loss of ``forecast`` as the ``quantile`` (0 < q < 1) of each day:
    q (y - f) when y >= f, (1 - q)(f - y) when y < f. NaN for no days."""
    a, f = _vectors(actual=actual, forecast=forecast)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
    if not len(a):
        return float("nan")
    diff = a - f
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1) * diff)))


def mean_pinball_loss(actual: npt.ArrayLike,
                      forecasts: Mapping[float, npt.ArrayLike]) -> float:
    """pinball_loss averaged over the quantiles: ``forecasts`` maps each quantile (e.g. 0.1,
    0.5, 0.9) to its forecast array."""
    if not forecasts:
        raise ValueError("no quantile forecasts given")
    return float(np.mean([pinball_loss(actual, f, q) for q, f in forecasts.items()]))
