"""Forecast daily series with Nixtla's statsforecast: the baselines of the forecast bench.

    .venv-baselines/bin/python bench/baselines/run_statsforecast.py TASKS.json OUT.json
        [--models AutoETS,AutoARIMA,AutoTheta,MSTL] [--workers 1]

This runs in .venv-baselines (`make baselines`), not in the project's .venv: statsforecast 2.1.1
needs pandas<3 and AgentTally pins pandas 3. It imports only the standard library, numpy and
statsforecast, never agenttally; bench/statsforecast_baselines.py writes its input and reads
its output.

Input (JSON): ``{"format": "agenttally-baselines/1", "tasks": [{"id": "a", "history": [...],
"horizon": 14, "season_length": 7, "levels": [80, 95]}, ...]}``: each history is a daily
series (consecutive days, oldest first; it may start with zeros and may be short).

Output (JSON): ``{"format": ..., "versions": {...}, "import_seconds": s, "warmup_seconds":
{model: s}, "results": [{"task": "a", "model": "AutoETS", "ok": true, "mean": [...],
"lo": {"80": [...], "95": [...]}, "hi": {...}, "seconds": s, "error": null,
"warnings": [...], "fallback": null}, ...]}``, one result per task and model, in task order.

The models, each called as ``model.forecast(y=history, h=horizon, level=levels)`` (a fit and
a forecast; ``seconds`` is the wall time of that call):

- ``AutoETS(season_length=7)``: the model ``ZZZ``, chosen by AICc. On a series with any zero
  (or negative) day statsforecast leaves out every model with a multiplicative component, as
  R's ets() does, so such a series gets an additive model (e.g. ETS(A,N,A) instead of
  ETS(M,N,M)); asking for a multiplicative model explicitly on such data raises
  "Inappropriate model for data with negative or zero values", which would be recorded as a
  failure. Fewer than 7 days (3 in practice) raise "tiny datasets": a failure.
- ``AutoARIMA(season_length=7)``.
- ``AutoTheta(season_length=7)``: a multiplicative classical decomposition when the series
  is seasonal, additive when it has zeros.
- ``MSTL(season_length=7, trend_forecaster=AutoETS(model="ZZN"))``: STL-decomposes the weekly
  cycle and forecasts the deseasonalised series with a non-seasonal ETS (statsforecast's own
  default trend model, written out here so a change of default cannot change the baseline);
  the weekly component is repeated from the last cycle.

Nothing is clipped: a forecast or bound may be negative. A model that raises, or returns
non-finite values or arrays of the wrong length, is recorded as failed for that task with the
error text (``ok`` false, ``mean`` etc. empty); the run goes on. No fallback forecast is ever
substituted (``fallback`` is always null; it is there so a future one is named, not hidden).
Each model is first fitted once on a small synthetic series ("warm-up", timed apart) so a
task's seconds do not include one-off costs of the first call.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

FORMAT = "agenttally-baselines/1"
MODELS = ("AutoETS", "AutoARIMA", "AutoTheta", "MSTL")

_start = time.perf_counter()
import numpy as np  # noqa: E402  (timed: the import cost is reported)
import statsforecast  # noqa: E402
from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _start


def make_model(name: str, season_length: int) -> Any:
    """A fresh, unfitted statsforecast model (models keep state: one per task)."""
    if name == "AutoETS":
        return AutoETS(season_length=season_length)
    if name == "AutoARIMA":
        return AutoARIMA(season_length=season_length)
    if name == "AutoTheta":
        return AutoTheta(season_length=season_length)
    if name == "MSTL":
        return MSTL(season_length=season_length, trend_forecaster=AutoETS(model="ZZN"))
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def _finite_list(values: Any, horizon: int, what: str) -> list[float]:
    array = np.asarray(values, dtype=float)
    if array.shape != (horizon,):
        raise ValueError(f"{what} has shape {array.shape}, expected ({horizon},)")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} has {int((~np.isfinite(array)).sum())} non-finite values")
    return [float(v) for v in array]


def forecast_one(task: dict[str, Any], name: str) -> dict[str, Any]:
    """One model on one task; never raises (a failure is a result with its error text)."""
    horizon = int(task["horizon"])
    levels = [int(level) for level in task.get("levels", [80, 95])]
    history = np.asarray(task["history"], dtype=float)
    result: dict[str, Any] = {"task": task["id"], "model": name, "ok": False, "mean": [],
                              "lo": {}, "hi": {}, "seconds": 0.0, "error": None,
                              "warnings": [], "fallback": None}
    caught: list[warnings.WarningMessage] = []
    start = time.perf_counter()
    try:
        if not np.isfinite(history).all():
            raise ValueError("the history has non-finite values")
        model = make_model(name, int(task.get("season_length", 7)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = model.forecast(y=history, h=horizon, level=levels)
        result["seconds"] = time.perf_counter() - start
        result["mean"] = _finite_list(out["mean"], horizon, "mean")
        for level in levels:
            result["lo"][str(level)] = _finite_list(out[f"lo-{level}"], horizon, f"lo-{level}")
            result["hi"][str(level)] = _finite_list(out[f"hi-{level}"], horizon, f"hi-{level}")
        result["ok"] = True
    except Exception as error:  # any failure of one model on one task is recorded, not raised
        result["seconds"] = result["seconds"] or time.perf_counter() - start
        result["mean"], result["lo"], result["hi"] = [], {}, {}
        where = traceback.extract_tb(error.__traceback__)[-1]
        result["error"] = (f"{type(error).__name__}: {error} "
                           f"(at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
    result["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})[:5]
    return result


def _run_chunk(chunk: Sequence[dict[str, Any]], models: Sequence[str]) -> list[dict[str, Any]]:
    return [forecast_one(task, name) for task in chunk for name in models]


def warm_up(models: Sequence[str]) -> dict[str, float]:
    """Fit each model once on 28 synthetic days; returns the seconds each took."""
    y = 100 + 10 * np.sin(np.arange(28) * 2 * np.pi / 7) + np.arange(28) % 3
    seconds = {}
    for name in models:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                make_model(name, 7).forecast(y=y, h=7, level=[80, 95])
            except Exception:  # a failing model fails again, recorded, in its task
                pass
        seconds[name] = time.perf_counter() - start
    return seconds


def run(tasks: Sequence[dict[str, Any]], models: Sequence[str], workers: int = 1,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every model on every task; the output document (see the module docstring)."""
    for name in models:
        make_model(name, 7)  # an unknown name fails here, before any work
    warmup = warm_up(models)
    start = time.perf_counter()
    if workers <= 1 or len(tasks) < 2:
        results = _run_chunk(tasks, models)
    else:
        # fork: the workers inherit the imported and warmed-up modules
        chunks = [list(tasks[i::workers]) for i in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            parts = list(pool.map(_run_chunk, chunks, [models] * workers))
        by_key = {(r["task"], r["model"]): r for part in parts for r in part}
        results = [by_key[(task["id"], name)] for task in tasks for name in models]
    if progress:
        failed = sum(not r["ok"] for r in results)
        progress(f"{len(tasks)} tasks x {len(models)} models in "
                 f"{time.perf_counter() - start:.1f} s ({failed} failed)")
    return {
        "format": FORMAT,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "statsforecast": statsforecast.__version__},
        "import_seconds": IMPORT_SECONDS,
        "warmup_seconds": warmup,
        "workers": max(1, workers),
        "models": list(models),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", help="input JSON (tasks)")
    parser.add_argument("out", help="output JSON (forecasts)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, of {', '.join(MODELS)} (all)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    args = parser.parse_args(argv)
    with open(args.tasks, encoding="utf-8") as f:
        document = json.load(f)
    if document.get("format") != FORMAT:
        print(f"{args.tasks}: format {document.get('format')!r}, expected {FORMAT!r}",
              file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    output = run(document["tasks"], models, args.workers,
                 progress=lambda line: print(line, file=sys.stderr))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(output, f, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
