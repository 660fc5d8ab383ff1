"""The dashboard's data layer: small functions taking a read-only DuckDB connection and the
filters, doing their work in SQL and returning small DataFrames.

`app.py` and `pages/` only draw; everything they show comes from `batches.run`, which the
AppTests and `bench/bench_dashboard.py` call too. How the dashboard reads a store that a
collector is writing is explained in `reports.dashboard.source`.
"""

from reports.dashboard.batches import BATCHES, bench_plan, run
from reports.dashboard.filters import FilterOptions, Filters, filter_options
from reports.dashboard.source import StoreState, read_store, store_path, store_state

__all__ = ["BATCHES", "FilterOptions", "Filters", "StoreState", "bench_plan", "filter_options",
           "read_store", "run", "store_path", "store_state"]
