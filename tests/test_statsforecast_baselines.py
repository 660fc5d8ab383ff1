"""The statsforecast baselines, run for real in .venv-baselines (bench/statsforecast_baselines.py).

`make test` builds .venv-baselines (`make baselines`); without it these tests fail, saying so,
rather than skip: issue 19 asks for the comparison to be tested on a fresh clone. One run of
the harness serves every test here (statsforecast's import, ~1-2 s, is paid once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.statsforecast_baselines import (
    MODELS,
    VENV_PYTHON,
    BaselinesUnavailable,
    StatsforecastRun,
    Task,
    run_statsforecast,
)

HORIZON = 7
WEEKLY = np.array([1.15, 1.2, 1.2, 1.15, 1.0, 0.35, 0.3])  # the simulator's weekday weights


def _weekly(days: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * WEEKLY[np.arange(days) % 7] * np.exp(0.1 * rng.standard_normal(days))


TASKS = [
    Task("weekly-60d", _weekly(60, seed=1), HORIZON),
    # a team that starts spending on day 22: AutoETS must not pick a multiplicative model
    Task("leading-zeros", np.concatenate([np.zeros(21), _weekly(39, seed=2)]), HORIZON),
    Task("short-10d", _weekly(10, seed=3), HORIZON),
]


@pytest.fixture(scope="module")
def run() -> StatsforecastRun:
    if not VENV_PYTHON.exists():
        pytest.fail(f"{VENV_PYTHON} is missing: run `make baselines` (`make test` builds it) "
                    "to create the statsforecast environment these tests use")
    return run_statsforecast(TASKS, timeout=120)


def test_every_model_forecasts_every_series_or_says_why_not(run: StatsforecastRun) -> None:
    assert run.versions["statsforecast"] == "2.1.1"
    assert list(run.forecasts) == [task.id for task in TASKS]
    for task in TASKS:
        assert sorted(run.forecasts[task.id]) == sorted(MODELS)
        for name, fc in run.forecasts[task.id].items():
            assert fc.model == name
            bounds = (fc.lo95, fc.lo80, fc.mean, fc.hi80, fc.hi95)
            assert all(b.shape == (HORIZON,) for b in bounds), (task.id, name)
            if not fc.ok:  # only the 10-day series may defeat a model, and it must say why
                assert task.id == "short-10d" and fc.error, (task.id, name, fc.error)
                continue
            assert all(np.isfinite(b).all() for b in bounds), (task.id, name)
            for lower, upper in zip(bounds, bounds[1:], strict=False):
                assert (lower <= upper).all(), (task.id, name, lower, upper)
            assert fc.seconds >= 0


def test_the_full_series_are_forecast_by_every_model(run: StatsforecastRun) -> None:
    for task_id in ("weekly-60d", "leading-zeros"):
        failed = [fc.error for fc in run.forecasts[task_id].values() if not fc.ok]
        assert failed == [], (task_id, failed)
    assert run.failures == [f"short-10d/{m}: {fc.error}"
                            for m, fc in run.forecasts["short-10d"].items() if not fc.ok]


def test_the_weekly_cycle_is_forecast_weekends_low(run: StatsforecastRun) -> None:
    # the first forecast day is day 60, weekday 60 % 7 = 4 (weight 1.0): forecast days 2 and 3
    # are the weekend (weights 0.35, 0.3), days 4-7 the high weekdays (1.15-1.2)
    for name, fc in run.forecasts["weekly-60d"].items():
        assert fc.mean[1:3].max() < fc.mean[3:7].min(), name


def test_a_missing_environment_names_make_baselines() -> None:
    with pytest.raises(BaselinesUnavailable, match="make baselines"):
        run_statsforecast(TASKS[:1], python=Path("/nonexistent/.venv-baselines/bin/python"))
