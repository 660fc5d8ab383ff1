"""Files other tools read: CSV and Parquet of the charges, and of any report.

Large relations (charges, FOCUS rows) are written by DuckDB itself (`COPY ... TO`), never
pulled through Python; a report already in Python (a few hundred rows) is written with
pyarrow (Parquet) or with the same CSV writer the CLI prints (`reports.render`).
Money keeps its decimal type in Parquet (decimal128) and is a plain decimal string in CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from meter.errors import UsageError
from reports.render import EXPORT_FORMATS, render

__all__ = ["EXPORT_FORMATS", "copy_query", "export_charges", "export_unrated", "format_of",
           "write_rows"]

_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

CHARGES_SQL = """
SELECT period, day, session_id, agent_id, environment_id, CAST(tags AS VARCHAR) AS tags,
       meter, model, token_class, tier, quantity, unit, unit_price, price_unit,
       CAST(amount_exact AS DECIMAL(38, 18)) AS amount_exact, book, book_version, provisional
FROM charges WHERE $period IS NULL OR period = $period
ORDER BY day, session_id, meter, model NULLS FIRST, token_class NULLS FIRST, tier
"""

UNRATED_SQL = """
SELECT period, day, session_id, meter, model, token_class, quantity, unit, reason
FROM unrated WHERE $period IS NULL OR period = $period
ORDER BY day, session_id, meter, model NULLS FIRST, token_class NULLS FIRST
"""


def format_of(path: str | Path, fmt: str | None = None) -> str:
    """`fmt` if given, else the format the file name says (.csv, .parquet, .pq)."""
    if fmt:
        if fmt not in EXPORT_FORMATS:
            raise UsageError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, "
                             f"got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise UsageError(f"{path}: cannot tell the format from the name; end it in .csv or "
                         ".parquet, or pass --to csv|parquet")
    return _SUFFIXES[suffix]


def copy_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    path: str | Path,
    *,
    fmt: str | None = None,
    params: dict[str, Any] | None = None,
) -> int:
    """Write the rows of a query to `path` with DuckDB's COPY; returns the row count.

    The query runs once into a temp table (so that its parameters can be bound), which COPY
    then writes: no row passes through Python.
    """
    fmt = format_of(path, fmt)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"CREATE OR REPLACE TEMP TABLE export_rows AS {sql}", params or {})
    target = str(path).replace("'", "''")
    options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER"
    con.execute(f"COPY export_rows TO '{target}' ({options})")
    count = int(con.execute("SELECT count(*) FROM export_rows").fetchall()[0][0])
    con.execute("DROP TABLE export_rows")
    return count


def export_charges(con: duckdb.DuckDBPyConnection, path: str | Path, *,
                   period: str | None = None, fmt: str | None = None) -> int:
    """The priced charge lines (temp table `charges` after rating), one period or all."""
    return copy_query(con, CHARGES_SQL, path, fmt=fmt, params={"period": period})


def export_unrated(con: duckdb.DuckDBPyConnection, path: str | Path, *,
                   period: str | None = None, fmt: str | None = None) -> int:
    """Usage that could not be priced, with the reason (temp table `unrated`)."""
    return copy_query(con, UNRATED_SQL, path, fmt=fmt, params={"period": period})


def _arrow_column(values: list[Any]) -> pa.Array:
    if any(isinstance(v, Decimal) for v in values):
        # one decimal type for the whole column: the largest scale any value needs
        scale = max((-v.as_tuple().exponent for v in values  # type: ignore[operator]
                     if isinstance(v, Decimal) and v.is_finite()), default=0)
        scale = max(0, min(scale, 18))
        return pa.array([None if v is None else Decimal(v).quantize(Decimal(1).scaleb(-scale))
                         for v in values], pa.decimal128(38, scale))
    return pa.array(values)


def write_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], path: str | Path, *,
               fmt: str | None = None) -> int:
    """Any report's rows (as a report's `columns` / `rows` give them) to CSV or Parquet."""
    fmt = format_of(path, fmt)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        text = render(columns, rows, "csv")
        Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        table = pa.table({c: _arrow_column([r[i] for r in rows]) for i, c in enumerate(columns)})
        pq.write_table(table, path, compression="zstd")
    return len(rows)
