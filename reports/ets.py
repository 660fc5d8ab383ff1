"""Exponential smoothing with weekly seasonality, fitted by a vectorised grid in numpy.

The forecast (reports.forecast) models the logarithm of daily cost. This module owns the
statistics on that log series ``z``: fitting, point forecasts and simulated sample paths. It
knows nothing of money, days or stores.

Three members, each an additive-error state-space model with additive weekly seasonality
(Hyndman et al., *Forecasting with Exponential Smoothing*, 2008, ch. 2 and 6):

- ``N``:  ETS(A,N,A), a level and a season;
- ``Ad``: ETS(A,Ad,A), plus a damped trend (Gardner & McKenzie);
- ``Theta``: the ``N`` member plus half the history's linear drift, the Theta method of
  Assimakopoulos & Nikolopoulos (2000) as Hyndman & Billah (2003) showed it to be (SES with
  drift); the M3 competition's winner.

The point forecast combines them on the log scale: half Theta, half the two ETS members by
their Akaike weights (Kolassa 2011, "Combining exponential smoothing forecasts using Akaike
weights"), the M3/M4 lesson that a combination of smoothers beats picking one. On the
synthetic tuning series (bench/bench_forecast.py profiles, seeds 0-1) this scored MASE 0.817
(h=7) and 0.891 (h=30), against 0.819/0.892 for equal weights, 0.824/0.912 for Akaike
weights without Theta and 0.819/0.923 for the previous AICc-selected statsmodels ETS. The
sample paths come from the member with the lowest AICc, re-centred on the combination: each
path is the combination plus that member's simulated deviation from its own point forecast,
with innovations bootstrapped from its in-sample one-step errors (so skew and heavy tails in
the data reach the intervals), scaled by ``sqrt(n / (n - k))`` for the fitted parameters.

Why a grid and not an optimiser: a filter over the whole grid at once is one pass over the
series with numpy arrays as wide as the grid (~1-2 ms for 120 days), fast enough to refit at
every origin of a backtest for the organisation and twenty teams inside the dashboard's
budget (bench/bench_forecast_speed.py: 1.5-1.7 s for both at 1M sessions; the previous
statsmodels ETSModel forecast took 0.08-0.17 s a series, 22-45 s for the same work).
The grid's resolution is finer than the parameters' standard errors on months of daily data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SEASON", "Fit", "fit", "simulate"]

SEASON = 7
BURN_IN = 2 * SEASON  # one-step errors before this are the initial states settling: not resampled
MIN_DAYS = 2 * SEASON  # two weekly cycles: the least a seasonal fit is made on

_ALPHA = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8)
_GAMMA = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35)
_BETA = (0.002, 0.01, 0.03, 0.08)
_PHI = (0.8, 0.9, 0.95, 0.98)


@dataclass(frozen=True)
class Member:
    """One fitted model: its smoothing parameters, final states and one-step errors."""

    name: str
    alpha: float
    beta: float
    phi: float
    gamma: float
    level: float
    trend: float
    season: np.ndarray  # the next SEASON seasonal states, in forecast order
    errors: np.ndarray  # one-step in-sample errors after the burn-in
    aicc: float
    drift: float = 0.0  # Theta: per-day drift added to the point forecast

    def point(self, horizon: int) -> np.ndarray:
        h = np.arange(1, horizon + 1)
        if self.phi > 0:
            damped = np.cumsum(self.phi ** h)
        else:
            damped = np.zeros(horizon)
        seasonal = self.season[(h - 1) % SEASON]
        # Theta's drift: b/2 per day, plus the lag SES carries on a trend, (1/alpha - 1) days
        drift = self.drift * (h - 1 + 1 / self.alpha) if self.drift else 0.0
        return self.level + damped * self.trend + seasonal + drift


@dataclass(frozen=True)
class Fit:
    """The three members and the combination's point forecast."""

    members: tuple[Member, ...]
    best: Member  # lowest AICc: the one whose dynamics give the sample paths
    n: int

    def point(self, horizon: int) -> np.ndarray:
        points = np.array([m.point(horizon) for m in self.members])
        return np.asarray(self.weights @ points)

    @property
    def weights(self) -> np.ndarray:
        """Half to Theta, half to the two ETS members by their Akaike weights."""
        aicc = np.array([m.aicc for m in self.members[:2]])
        w = np.exp(-(aicc - aicc.min()) / 2)
        return np.array([*(w / w.sum() / 2), 0.5])


def _initial_states(z: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Level, trend and seasonal states from the first two to four weeks (Hyndman et al.'s
    heuristic: a regression of the weekly means on time, the average weekday deviations)."""
    weeks = min(len(z) // SEASON, 4)
    block = z[: weeks * SEASON].reshape(weeks, SEASON)
    means = block.mean(axis=1)
    slope = float(np.polyfit(np.arange(weeks), means, 1)[0]) / SEASON if weeks > 1 else 0.0
    centre = (SEASON - 1) / 2
    level0 = float(means[0]) - slope * (centre + 1)  # the level just before day 0
    season = (block - means[:, None]).mean(axis=0)
    return level0, slope, season - season.mean()


def _grid(trend: bool) -> np.ndarray:
    """Rows (alpha, beta, phi, gamma) of the member's grid; beta <= alpha, as ETS requires."""
    rows = []
    for a in _ALPHA:
        for g in _GAMMA:
            if g > 1 - a:
                continue
            if not trend:
                rows.append((a, 0.0, 0.0, g))
                continue
            for b in _BETA:
                if b > a:
                    continue
                for p in _PHI:
                    rows.append((a, b, p, g))
    return np.array(rows)


def _filter(z: np.ndarray, params: np.ndarray, level0: float, trend0: float,
            season0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          np.ndarray]:
    """Run every parameter row over ``z`` at once: SSE after the burn-in, the final states,
    and the one-step errors of every row (n x K)."""
    alpha, beta, phi, gamma = params.T
    k = len(params)
    level = np.full(k, level0)
    trend = np.full(k, trend0) * (phi > 0)
    season = np.tile(season0, (k, 1)).T.copy()  # (SEASON, K): row j is weekday slot j
    errors = np.empty((len(z), k))
    for t, value in enumerate(z):
        slot = season[t % SEASON]
        damped = phi * trend
        e = value - (level + damped + slot)
        errors[t] = e
        level = level + damped + alpha * e
        trend = damped + beta * e
        slot += gamma * e
    order = (np.arange(len(z), len(z) + SEASON)) % SEASON
    return errors, level, trend, season[order].T, errors[burn_in(len(z)):]


def burn_in(n: int) -> int:
    """One-step errors left out of the fit's score and the resampling: the first two weeks,
    or half of a shorter history (at least a week of errors always remains)."""
    return min(BURN_IN, n // 2)


def _aicc(sse: np.ndarray, n: int, k: int) -> np.ndarray:
    return n * np.log(np.maximum(sse, 1e-300) / n) + 2 * k + 2 * k * (k + 1) / max(n - k - 1, 1)


def _member(name: str, z: np.ndarray, trend: bool, n_params: int, level0: float,
            trend0: float, season0: np.ndarray) -> Member:
    params = _grid(trend)
    errors, level, slope, season, scored = _filter(z, params, level0, trend0, season0)
    sse = (scored**2).sum(axis=0)
    i = int(np.argmin(sse))
    a, b, p, g = params[i]
    n = len(scored)
    return Member(name=name, alpha=float(a), beta=float(b), phi=float(p), gamma=float(g),
                  level=float(level[i]), trend=float(slope[i]), season=season[i].copy(),
                  errors=errors[burn_in(len(z)):, i].copy(), aicc=float(_aicc(sse[i:i + 1], n,
                                                                      n_params)[0]))


def fit(z: np.ndarray) -> Fit:
    """Fit the three members to the log series ``z`` (at least 2 * SEASON days)."""
    z = np.asarray(z, dtype=float)
    if len(z) < MIN_DAYS:
        raise ValueError(f"need at least {MIN_DAYS} days, got {len(z)}")
    level0, trend0, season0 = _initial_states(z)
    # parameters counted for AICc: smoothing parameters + initial states (level, trend, 6 free
    # seasonal) + the error variance
    plain = _member("ETS(A,N,A)", z, False, 2 + 1 + SEASON - 1 + 1, level0, 0.0, season0)
    damped = _member("ETS(A,Ad,A)", z, True, 4 + 2 + SEASON - 1 + 1, level0, trend0, season0)
    t = np.arange(len(z), dtype=float)
    weekday_mean = np.array([z[j::SEASON].mean() for j in range(SEASON)])
    deseasoned = z - weekday_mean[np.arange(len(z)) % SEASON]
    slope = float(np.polyfit(t, deseasoned, 1)[0])
    theta = Member(name="Theta", alpha=plain.alpha, beta=0.0, phi=0.0, gamma=plain.gamma,
                   level=plain.level, trend=0.0, season=plain.season, errors=plain.errors,
                   aicc=plain.aicc + 2, drift=slope / 2)
    members = (plain, damped, theta)
    best = min((plain, damped), key=lambda m: m.aicc)
    return Fit(members=members, best=best, n=len(z))


def simulate(model: Fit, horizon: int, n_paths: int, rng: np.random.Generator,
             inflate: float = 1.0, picks: np.ndarray | None = None) -> np.ndarray:
    """Sample paths (n_paths x horizon) of the log series: the combination's point forecast
    plus the best member's simulated deviations, innovations resampled from its one-step
    errors (centred, scaled for the fitted parameters and by ``inflate``).

    ``picks`` (n_paths x horizon) chooses which one-step error each innovation is, by its
    position in ``model.best.errors`` (-1 or out of range: a random one). Series forecast
    with the same picks (the same days' errors) keep the correlation their errors had."""
    m = model.best
    errors = m.errors - m.errors.mean()
    k = 4 if m.name == "ETS(A,Ad,A)" else 2
    scale = inflate * np.sqrt(len(errors) / max(len(errors) - k, 1))
    chosen = rng.integers(0, len(errors), size=(n_paths, horizon))
    if picks is not None:
        chosen = np.where((picks >= 0) & (picks < len(errors)), picks, chosen)
    draws = errors[chosen] * scale
    level = np.zeros(n_paths)  # deviations from the member's point forecast
    trend = np.zeros(n_paths)
    season = np.zeros((SEASON, n_paths))
    out = np.empty((n_paths, horizon))
    for h in range(horizon):
        e = draws[:, h]
        slot = season[h % SEASON]
        damped = m.phi * trend
        out[:, h] = level + damped + slot + e
        level = level + damped + m.alpha * e
        trend = damped + m.beta * e
        slot += m.gamma * e
    return out + model.point(horizon)
