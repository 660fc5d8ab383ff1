"""AgentTally's public API: meter, price and report the spend of Claude Managed Agents.

    import agenttally

    with agenttally.open_store("data/agenttally.duckdb") as store:
        agenttally.ingest(store, "data/samples/demo-day.jsonl.gz")
        run = agenttally.rate(store, as_of="2026-12-01")
        bill = agenttally.invoice(store, "2026-11", as_of="2026-12-01")
        print(bill.total, [(line.meter, line.amount) for line in bill.lines])

The names below are the whole API; the modules behind them (`meter`, `pricing`, `reports`)
are the implementation. Every error raised on purpose is an `AgentTallyError`: a
`UsageError` for malformed input, a `DataError` for data or a store that is not as needed.
"""

from agenttally._billing import RatingRun, chargeback, close, invoice, rate, whatif
from agenttally._store import Store, ingest, open_store, sessions
from meter.errors import AgentTallyError, DataError, UsageError
from meter.ingest import IngestResult
from meter.intervals import SessionAsOf
from meter.vocabulary import Period, iso_ms, parse_instant
from pricing.scenario import Scenario, load_scenario
from pricing.whatif import Comparison, ComparisonRow
from reports.allocation import AllocationRules, load_rules
from reports.chargeback import Chargeback, ChargebackGroup
from reports.closing import Issued, LatePolicy
from reports.invoice import Invoice, InvoiceLine, UnratedLine

__all__ = [
    "AgentTallyError", "AllocationRules", "Chargeback", "ChargebackGroup", "Comparison",
    "ComparisonRow", "DataError", "IngestResult", "Invoice", "InvoiceLine", "Issued",
    "LatePolicy", "Period", "RatingRun", "Scenario", "SessionAsOf", "Store", "UnratedLine",
    "UsageError", "chargeback", "close", "ingest", "invoice", "iso_ms", "load_rules",
    "load_scenario", "open_store", "parse_instant", "rate", "sessions", "whatif",
]
