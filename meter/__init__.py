"""What happened: the ingest format, the DuckDB store, session intervals, collectors, simulator.

The small public API; everything else stays importable from its module.
"""

from meter.ingest import IngestResult, ingest_lines, ingest_path
from meter.intervals import build_intervals, intervals, running_ms_by_session, split_sql
from meter.store import connect, default_db_path, open_store

__all__ = [
    "IngestResult", "build_intervals", "connect", "default_db_path", "ingest_lines",
    "ingest_path", "intervals", "open_store", "running_ms_by_session", "split_sql",
]
