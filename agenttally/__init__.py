"""AgentTally's public API: meter, price and report the spend of Claude Managed Agents.

    import agenttally

    with agenttally.open_store("data/agenttally.duckdb") as store:
        agenttally.ingest(store, "data/samples/demo-day.jsonl.gz")
        run = agenttally.rate(store, as_of="2026-12-01")
        bill = agenttally.invoice(store, "2026-11", as_of="2026-12-01")
        print(bill.total, [(line.meter, line.amount) for line in bill.lines])

The names below are the whole API; the modules behind them (`meter`, `pricing`, `reports`)
are the implementation. Every error raised on purpose is an `AgentTallyError`: a
`UsageError` for malformed input (a `DimensionError` for a grouping key no record carries,
a `ContractError` for a contract file that cannot be used),
a `DataError` for data or a store that is not as needed.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and readers; at run time each name loads on first use
    from agenttally._billing import (
        RatingRun,
        WhatIfReport,
        chargeback,
        close,
        contract_statement,
        invoice,
        rate,
        whatif,
        whatif_report,
    )
    from agenttally._check import ListCostCheck, check
    from agenttally._collection import Emulator, collect, emulator
    from agenttally._planning import (
        DailyForecast,
        ForecastLine,
        ForecastReport,
        budgets,
        commitment,
        forecast,
        forecast_report,
    )
    from agenttally._reports import ExportResult, export, reconcile
    from agenttally._serve import PreparedStore, prepare_store
    from agenttally._simulation import SimulationRun, simulate
    from agenttally._status import LastRating, StoreStatus, status
    from agenttally._store import Store, ingest, open_store, sessions
    from meter.collector import CollectorConfig, CollectStats
    from meter.errors import AgentTallyError, DataError, UsageError
    from meter.ingest import IngestResult, IngestRunState
    from meter.intervals import SessionAsOf
    from meter.vocabulary import Period, iso_ms, parse_instant
    from pricing.check import ListCostRow
    from pricing.contracts import (
        AdjustmentLine,
        CommitmentUse,
        Contract,
        ContractError,
        ContractSet,
        CreditBalance,
        Statement,
        load_contracts,
    )
    from pricing.scenario import Scenario, load_scenario
    from pricing.whatif import Comparison, ComparisonRow
    from reports.allocation import AllocationRules, load_rules
    from reports.budgets import Budget, BudgetStatus
    from reports.chargeback import Chargeback, ChargebackGroup, DimensionError
    from reports.closing import Issued, LatePolicy
    from reports.commitment import CommitmentOutlook
    from reports.forecast import Forecast, GroupForecasts
    from reports.invoice import Invoice, InvoiceLine, UnratedLine
    from reports.reconcile import ReconcileRow, Reconciliation

# Where each public name lives: imported on first use, so that `import agenttally` (and the
# CLI's `--help`) does not load DuckDB, Arrow and pandas before a verb needs them.
_HOMES = {
    "AdjustmentLine": "pricing.contracts",
    "AgentTallyError": "meter.errors",
    "AllocationRules": "reports.allocation",
    "Chargeback": "reports.chargeback",
    "ChargebackGroup": "reports.chargeback",
    "CommitmentUse": "pricing.contracts",
    "Comparison": "pricing.whatif",
    "ComparisonRow": "pricing.whatif",
    "Contract": "pricing.contracts",
    "ContractError": "pricing.contracts",
    "ContractSet": "pricing.contracts",
    "CreditBalance": "pricing.contracts",
    "DataError": "meter.errors",
    "DimensionError": "reports.chargeback",
    "ExportResult": "agenttally._reports",
    "IngestResult": "meter.ingest",
    "Invoice": "reports.invoice",
    "InvoiceLine": "reports.invoice",
    "Issued": "reports.closing",
    "LatePolicy": "reports.closing",
    "Period": "meter.vocabulary",
    "RatingRun": "agenttally._billing",
    "ReconcileRow": "reports.reconcile",
    "Reconciliation": "reports.reconcile",
    "Scenario": "pricing.scenario",
    "SessionAsOf": "meter.intervals",
    "Statement": "pricing.contracts",
    "Store": "agenttally._store",
    "UnratedLine": "reports.invoice",
    "UsageError": "meter.errors",
    "Budget": "reports.budgets",
    "BudgetStatus": "reports.budgets",
    "Forecast": "reports.forecast",
    "GroupForecasts": "reports.forecast",
    "DailyForecast": "agenttally._planning",
    "ForecastLine": "agenttally._planning",
    "ForecastReport": "agenttally._planning",
    "budgets": "agenttally._planning",
    "commitment": "agenttally._planning",
    "CommitmentOutlook": "reports.commitment",
    "forecast": "agenttally._planning",
    "forecast_report": "agenttally._planning",
    "chargeback": "agenttally._billing",
    "close": "agenttally._billing",
    "export": "agenttally._reports",
    "contract_statement": "agenttally._billing",
    "ingest": "agenttally._store",
    "invoice": "agenttally._billing",
    "iso_ms": "meter.vocabulary",
    "load_contracts": "pricing.contracts",
    "load_rules": "reports.allocation",
    "load_scenario": "pricing.scenario",
    "open_store": "agenttally._store",
    "parse_instant": "meter.vocabulary",
    "rate": "agenttally._billing",
    "reconcile": "agenttally._reports",
    "sessions": "agenttally._store",
    "whatif": "agenttally._billing",
    "WhatIfReport": "agenttally._billing",
    "whatif_report": "agenttally._billing",
    "ListCostCheck": "agenttally._check",
    "ListCostRow": "pricing.check",
    "check": "agenttally._check",
    "IngestRunState": "meter.ingest",
    "LastRating": "agenttally._status",
    "StoreStatus": "agenttally._status",
    "status": "agenttally._status",
    "PreparedStore": "agenttally._serve",
    "prepare_store": "agenttally._serve",
    "SimulationRun": "agenttally._simulation",
    "simulate": "agenttally._simulation",
    "CollectStats": "meter.collector",
    "CollectorConfig": "meter.collector",
    "Emulator": "agenttally._collection",
    "collect": "agenttally._collection",
    "emulator": "agenttally._collection",
}

__all__ = [
    "AdjustmentLine", "AgentTallyError", "AllocationRules", "Budget", "BudgetStatus", "Chargeback",
    "ChargebackGroup", "CollectStats", "CollectorConfig", "CommitmentOutlook", "CommitmentUse",
    "Comparison", "ComparisonRow", "Contract", "ContractError", "ContractSet", "CreditBalance",
    "DailyForecast", "DataError", "DimensionError", "Emulator", "ExportResult", "Forecast",
    "ForecastLine", "ForecastReport", "GroupForecasts", "IngestResult", "IngestRunState",
    "Invoice", "InvoiceLine", "Issued", "LastRating", "LatePolicy", "ListCostCheck", "ListCostRow",
    "Period", "PreparedStore", "RatingRun", "ReconcileRow", "Reconciliation", "Scenario",
    "SessionAsOf", "SimulationRun", "Statement", "Store", "StoreStatus", "UnratedLine",
    "UsageError", "WhatIfReport", "budgets", "chargeback", "check", "close", "collect",
    "commitment", "contract_statement", "emulator", "export", "forecast", "forecast_report",
    "ingest", "invoice", "iso_ms", "load_contracts", "load_rules", "load_scenario", "open_store",
    "parse_instant", "prepare_store", "rate", "reconcile", "sessions", "simulate", "status",
    "whatif", "whatif_report",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'agenttally' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
