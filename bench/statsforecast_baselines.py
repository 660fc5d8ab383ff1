"""Nixtla's statsforecast models as forecast baselines, run in their own environment.

statsforecast 2.1.1 needs pandas<3 and AgentTally pins pandas 3, so the models run in
.venv-baselines (`make baselines`, pinned by bench/baselines/pyproject.toml) as a subprocess,
bench/baselines/run_statsforecast.py, and the two sides exchange JSON files::

    tasks = [Task("team-a@2026-11-01", history, horizon=14)]
    forecasts = forecast_with_statsforecast(tasks)
    forecasts["team-a@2026-11-01"]["AutoETS"].mean      # 14 daily point forecasts
    forecasts["team-a@2026-11-01"]["AutoETS"].hi95      # and the 95% upper bound

One call runs every task in one process (statsforecast's import, ~1-2 s, is paid once). Which
model is which, how a history with zeros is handled (no multiplicative ETS) and what a
failure looks like are described in run_statsforecast.py. This module depends on numpy and
the standard library only, not on reports/.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BaselinesUnavailable",
    "MODELS",
    "ModelForecast",
    "StatsforecastRun",
    "Task",
    "forecast_with_statsforecast",
    "run_statsforecast",
]

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv-baselines" / "bin" / "python"
RUNNER = ROOT / "bench" / "baselines" / "run_statsforecast.py"
FORMAT = "agenttally-baselines/1"
MODELS = ("AutoETS", "AutoARIMA", "AutoTheta", "MSTL")
LEVELS = (80, 95)

FloatArray = npt.NDArray[np.float64]


class BaselinesUnavailable(RuntimeError):
    """The statsforecast environment is missing or its run failed."""


@dataclass(frozen=True)
class Task:
    """One forecast to make: ``history`` is daily values, oldest first, consecutive days
    ending the day before the forecast origin; forecast the next ``horizon`` days."""

    id: str
    history: FloatArray
    horizon: int
    season_length: int = 7

    def __post_init__(self) -> None:
        history = np.asarray(self.history, dtype=np.float64)
        if history.ndim != 1:
            raise ValueError(f"task {self.id!r}: history must be 1-dimensional, "
                             f"got shape {history.shape}")
        if self.horizon < 1:
            raise ValueError(f"task {self.id!r}: horizon must be at least 1, got {self.horizon}")
        object.__setattr__(self, "history", history)


@dataclass(frozen=True)
class ModelForecast:
    """One model's forecast for one task. When the model failed, ``error`` says why and the
    arrays are all NaN (length ``horizon``, so forecasts stack); no fallback is substituted."""

    model: str
    mean: FloatArray
    lo80: FloatArray
    hi80: FloatArray
    lo95: FloatArray
    hi95: FloatArray
    seconds: float  # wall time of the model's fit + forecast for this task
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class StatsforecastRun:
    """Everything one run gave: forecasts[task id][model name], and what the run cost."""

    forecasts: dict[str, dict[str, ModelForecast]]
    versions: dict[str, str]
    import_seconds: float  # statsforecast's import in the subprocess
    warmup_seconds: dict[str, float]  # each model's first (untimed-per-task) fit
    wall_seconds: float  # the whole subprocess, start to finish
    failures: list[str] = field(default_factory=list)  # "task/model: error", in task order


def _array(values: Sequence[float], horizon: int) -> FloatArray:
    if not values:
        return np.full(horizon, np.nan)
    return np.asarray(values, dtype=np.float64)


def _parse(result: dict[str, Any], horizon: int) -> ModelForecast:
    lo, hi = result.get("lo", {}), result.get("hi", {})
    return ModelForecast(
        model=str(result["model"]),
        mean=_array(result.get("mean", []), horizon),
        lo80=_array(lo.get("80", []), horizon), hi80=_array(hi.get("80", []), horizon),
        lo95=_array(lo.get("95", []), horizon), hi95=_array(hi.get("95", []), horizon),
        seconds=float(result["seconds"]),
        error=None if result.get("ok") else str(result.get("error") or "failed (no reason)"),
        warnings=tuple(result.get("warnings", ())),
    )


def run_statsforecast(
    tasks: Sequence[Task],
    *,
    models: Sequence[str] = MODELS,
    workers: int = 1,
    python: Path | None = None,
    timeout: float | None = None,
) -> StatsforecastRun:
    """Forecast every task with every model in one run of .venv-baselines' Python.

    Raises BaselinesUnavailable if that environment is missing (the message says to run
    `make baselines`) or the run itself fails; a model failing on a task is not an error
    (its ModelForecast says why)."""
    interpreter = python or VENV_PYTHON
    if not interpreter.exists():
        raise BaselinesUnavailable(
            f"{interpreter}: not found. The statsforecast baselines run in their own "
            "environment (statsforecast 2.1.1 needs pandas<3, AgentTally pins pandas 3); "
            "build it with `make baselines`.")
    ids = [task.id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(MODELS)}")
    for task in tasks:
        if not np.isfinite(task.history).all():
            raise ValueError(f"task {task.id!r}: the history has non-finite values")
    document = {"format": FORMAT, "tasks": [
        {"id": task.id, "history": [float(v) for v in task.history], "horizon": task.horizon,
         "season_length": task.season_length, "levels": list(LEVELS)} for task in tasks]}
    with tempfile.TemporaryDirectory(prefix="agenttally-baselines-") as tmp:
        inp, out = Path(tmp) / "tasks.json", Path(tmp) / "forecasts.json"
        inp.write_text(json.dumps(document, allow_nan=False), encoding="utf-8")
        command = [str(interpreter), str(RUNNER), str(inp), str(out),
                   "--models", ",".join(models), "--workers", str(workers)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        if done.returncode != 0 or not out.exists():
            tail = "\n".join((done.stderr or "").strip().splitlines()[-15:])
            raise BaselinesUnavailable(
                f"{RUNNER.relative_to(ROOT)} failed (exit {done.returncode}) in "
                f"{interpreter}:\n{tail}\nIf the environment is stale or broken, rebuild it: "
                "rm -rf .venv-baselines && make baselines")
        output = json.loads(out.read_text(encoding="utf-8"))
    if output.get("format") != FORMAT:
        raise BaselinesUnavailable(f"the runner answered in format {output.get('format')!r}, "
                                   f"expected {FORMAT!r}")
    horizons = {task.id: task.horizon for task in tasks}
    forecasts: dict[str, dict[str, ModelForecast]] = {task.id: {} for task in tasks}
    failures = []
    for result in output["results"]:
        forecast = _parse(result, horizons[result["task"]])
        forecasts[result["task"]][forecast.model] = forecast
        if forecast.error is not None:
            failures.append(f"{result['task']}/{forecast.model}: {forecast.error}")
    return StatsforecastRun(
        forecasts=forecasts, versions={k: str(v) for k, v in output["versions"].items()},
        import_seconds=float(output["import_seconds"]),
        warmup_seconds={k: float(v) for k, v in output["warmup_seconds"].items()},
        wall_seconds=wall, failures=failures)


def forecast_with_statsforecast(
    tasks: Sequence[Task], *, models: Sequence[str] = MODELS, workers: int = 1
) -> dict[str, dict[str, ModelForecast]]:
    """forecasts[task id][model name] for every task and model (see run_statsforecast)."""
    return run_statsforecast(tasks, models=models, workers=workers).forecasts
