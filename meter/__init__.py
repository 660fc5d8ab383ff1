"""What happened: the ingest format, the DuckDB store, session intervals, collectors, simulator.

Import from the modules (`meter.ingest`, `meter.store`, `meter.intervals`, ...); the package
itself imports nothing, so that light modules (`meter.vocabulary`, `meter.settings`) load
without DuckDB.
"""
