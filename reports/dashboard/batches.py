"""Each page's data as named batches: one read-only connection per batch, closed after it.

`run("overview", path, filters=..., as_of_ms=...)` opens the store (reports.dashboard.source),
calls the batch and returns small, picklable results (DataFrames, dataclasses, dicts), which
the app caches with `st.cache_data`. The benchmark times the same batches (`bench_plan`), so
what it measures is what a page waits for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from reports.dashboard import (
    chargeback,
    contracts,
    overview,
    planning,
    sessions,
    status,
    whatif,
)
from reports.dashboard.filters import Filters, filter_options
from reports.dashboard.source import read_store, store_state

__all__ = ["BATCHES", "bench_plan", "run"]


def _overview(con: duckdb.DuckDBPyConnection, path: str, f: Filters,
              as_of_ms: int | None = None) -> dict[str, Any]:
    overview.stage(con, f)
    return {
        "mtd": overview.month_to_date(con, f, as_of_ms),
        "daily": overview.daily_by_meter(con, f),
        "top_team": overview.top_spenders(con, f, "team"),
        "top_agent": overview.top_spenders(con, f, "agent"),
        "top_session": overview.top_spenders(con, f, "session"),
        # (on the tables staged above: the ledger's time by month of the same sessions)
        "utilisation": (overview.utilisation(con, f, as_of_ms) if as_of_ms is not None
                        else None),
    }


def _planning(con: duckdb.DuckDBPyConnection, path: str, f: Filters, as_of_ms: int,
              horizon: int | None = None, growth: float | None = None) -> dict[str, Any]:
    out = planning.forecast_frame(con, f, as_of_ms, horizon=horizon, growth_per_month=growth)
    out.pop("paths", None)
    return out


def _whatif(con: duckdb.DuckDBPyConnection, path: str, f: Filters, as_of_ms: int,
            scenario: dict[str, Any], sample_percent: int | None = None) -> dict[str, Any]:
    from pricing.scenario import parse_scenario

    return whatif.run_scenario(con, f, parse_scenario(scenario), as_of_ms, sample_percent)


BATCHES: dict[str, Callable[..., Any]] = {
    "state": lambda con, path: store_state(con, path),
    "options": lambda con, path: filter_options(con),
    "overview": _overview,
    "month_end": lambda con, path, f, as_of_ms: planning.month_end(con, f, as_of_ms),
    "budgets": lambda con, path, f, as_of_ms, only_selected=False: planning.budgets(
        con, f, as_of_ms, only_selected),
    "chargeback_keys": lambda con, path: chargeback.group_keys(con),
    "chargeback": lambda con, path, f, by, mode: chargeback.chargeback_report(con, f, by, mode),
    "contracts": lambda con, path, f, contract_path=None: contracts.contract_view(
        con, f, contract_path),
    "export": lambda con, path, f, what, fmt, by, mode: chargeback.export_bytes(
        con, f, what, fmt, by=by, mode=mode),
    "planning": _planning,
    "backtest": lambda con, path, f, as_of_ms: planning.backtest(con, f, as_of_ms),
    "whatif": _whatif,
    "whatif_context": lambda con, path, f, as_of_ms: whatif.context(con, f, as_of_ms),
    "sessions": lambda con, path, f, search="", limit=200: sessions.session_list(
        con, f, search, limit),
    "session": lambda con, path, session_id, as_of_ms: sessions.session_detail(
        con, session_id, as_of_ms),
    "data": lambda con, path: status.data_status(con, path),
    "billing": lambda con, path: status.billing_status(con),
}


def encode(**kwargs: Any) -> str:
    """Batch arguments as stable JSON text (a cache key): Filters by their key, Decimals as
    strings."""
    def default(value: Any) -> Any:
        if isinstance(value, Filters):
            return {"__filters__": value.key()}
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(f"cannot encode {type(value).__name__} as a batch argument")

    return json.dumps(kwargs, sort_keys=True, default=default)


def decode(text: str) -> dict[str, Any]:
    def hook(obj: dict[str, Any]) -> Any:
        if set(obj) == {"__filters__"}:
            return Filters.from_key(obj["__filters__"])
        return obj

    return json.loads(text, object_hook=hook)


def run(name: str, path: str | Path, **kwargs: Any) -> Any:
    """Run batch `name` on the store at `path` (read-only, closed afterwards)."""
    fn = BATCHES[name]
    with read_store(path) as con:
        return fn(con, str(path), **kwargs)


def bench_plan(db: str | Path) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(page, label, batch name, arguments) for every batch the pages run, on the store's
    latest period (and the Overview's on the last full month too): what
    `bench/bench_dashboard.py` times."""
    state = run("state", db)
    period = state.periods[-1] if state.periods else None
    as_of = state.rated_as_of_ms or int(time.time() * 1000)
    f = Filters(period=period)
    # the month before: a whole month of sessions (the dashboard opens on it)
    full = Filters(period=state.periods[-2] if len(state.periods) > 1 else period)
    opts = run("options", db)
    narrowed = Filters(period=period, teams=opts.teams[:1], models=opts.models[:1])
    top = run("sessions", db, f=f, limit=1)
    sid = str(top["session_id"].iloc[0]) if len(top) else ""
    # what the What-if page offers on a big selection: about 10,000 sessions re-rated
    sessions = run("whatif_context", db, f=f, as_of_ms=as_of)["sessions"]
    sample = whatif.sample_percent_for(sessions)
    lever = whatif.build_scenario(None, whatif.Levers(
        runtime_usd_per_hour=Decimal("0.10"), cache_hit_rate_percent=Decimal(60)))
    return [
        ("all pages", "state", "state", {}),
        ("all pages", "options", "options", {}),
        ("Overview", "overview", "overview", {"f": f, "as_of_ms": as_of}),
        ("Overview", "overview (team+model filter)", "overview",
         {"f": narrowed, "as_of_ms": as_of}),
        ("Overview", "month_end", "month_end", {"f": f, "as_of_ms": as_of}),
        ("Overview", "budget card", "budgets", {"f": f, "as_of_ms": as_of,
                                                "only_selected": True}),
        ("Forecast & budgets", "budgets", "budgets", {"f": f, "as_of_ms": as_of}),
        ("Overview", "overview (last full month)", "overview", {"f": full, "as_of_ms": as_of}),
        ("Chargeback", "chargeback_keys", "chargeback_keys", {}),
        ("Chargeback", "chargeback", "chargeback", {"f": f, "by": "team",
                                                    "mode": "chargeback"}),
        ("Forecast & budgets", "planning", "planning", {"f": f, "as_of_ms": as_of}),
        ("Forecast & budgets", "backtest (on click)", "backtest", {"f": f, "as_of_ms": as_of}),
        ("Sessions", "sessions", "sessions", {"f": f}),
        ("Sessions", "session", "session", {"session_id": sid, "as_of_ms": as_of}),
        ("Data", "data", "data", {}),
        ("Data", "billing", "billing", {}),
        ("What-if", "whatif_context", "whatif_context", {"f": f, "as_of_ms": as_of}),
        ("What-if", f"whatif ({sample}% sample)" if sample else "whatif", "whatif",
         {"f": f, "as_of_ms": as_of, "sample_percent": sample,
          "scenario": lever.model_dump(mode="json")}),
    ]
