"""The lake: the store's usage as partitioned Parquet (meter.lake), rated on Spark
(pricing.spark), and read back by the same reports as a store."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenttally._store import Store
from meter.errors import UsageError
from meter.lake import LakeError, LakeExport, export_lake, open_lake
from meter.store import connect
from meter.vocabulary import iso_ms, to_epoch_ms
from pricing.pricebook import PriceBook, default_pricebook_dir, load_pricebooks

if TYPE_CHECKING:
    from pricing.spark import LakeRating

__all__ = ["LakeExport", "export", "open_rated_lake", "rate_on_spark"]


def export(store: Store, directory: str | Path,
           pricebooks: str | Path | None = None) -> LakeExport:
    """Write `store`'s events (only those not in the lake yet, by UTC day) and its sessions,
    agents and environments to the lake at `directory`, with the price books' files."""
    book_dir = Path(pricebooks) if pricebooks else default_pricebook_dir()
    return export_lake(store.connection, directory, sorted(book_dir.glob("*.toml")))


def _books(directory: Path, pricebooks: str | Path | Sequence[PriceBook] | None
           ) -> list[PriceBook]:
    if pricebooks is not None and not isinstance(pricebooks, str | Path):
        return list(pricebooks)
    shipped = directory / "pricebooks"
    chosen = pricebooks or (shipped if shipped.is_dir() else default_pricebook_dir())
    return load_pricebooks(chosen)


def rate_on_spark(directory: str | Path, *, as_of: str | int | None = None,
                  pricebooks: str | Path | Sequence[PriceBook] | None = None,
                  master: str | None = None, span_cache_ttl: str | None = None) -> LakeRating:
    """Rate every event in the lake at `directory` on Spark (`master`, default local[*])
    with the same rules as the store's rating; charges and unrated lines are written back
    to the lake by period."""
    from pricing.rating import RatingOptions
    from pricing.spark import rate_lake
    lake = open_lake(directory)
    options = RatingOptions(as_of_ms=to_epoch_ms(as_of), span_cache_ttl=span_cache_ttl)
    return rate_lake(lake, _books(lake.root, pricebooks), options, master=master)


def _rating(directory: Path) -> dict[str, Any]:
    """What the charges in the lake are (its _rating.json, written by pricing.spark)."""
    path = directory / "_rating.json"
    if not path.exists():
        raise LakeError(f"{directory}: not rated yet (no _rating.json): rate it on Spark first")
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


def _duck_type(column: str, spark_type: str) -> str:
    store_types = {"amount_units": "HUGEINT", "tags": "JSON"}
    return store_types.get(column) or {"string": "VARCHAR"}.get(spark_type, spark_type.upper())


@contextmanager
def open_rated_lake(directory: str | Path) -> Iterator[Store]:
    """The lake's charges, unrated lines and dimensions as a read-only store for the reports
    (invoice, chargeback, FOCUS export): a DuckDB in memory over its Parquet files."""
    lake = open_lake(directory)
    rating = _rating(lake.root)
    as_of_ms = int(rating["as_of_ms"])
    con = connect(":memory:")
    try:
        for name in ("charges", "unrated"):
            files = sorted((lake.root / name).glob("period=*/*.parquet"))
            if not files:  # Spark writes no file for no rows: the same columns, empty
                columns = ", ".join(f"CAST(NULL AS {_duck_type(c, t)}) AS {c}"
                                    for c, t in rating["columns"][name].items())
                con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns} WHERE false")
                continue
            listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            # the store's own types where Parquet has none (HUGEINT, JSON): the reports'
            # money arithmetic is written for them
            typed = (" REPLACE (CAST(amount_units AS HUGEINT) AS amount_units, "
                     "CAST(tags AS JSON) AS tags)" if name == "charges" else "")
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT *{typed} FROM read_parquet("
                        f"[{listed}], hive_partitioning = true, "
                        "hive_types = {'period': VARCHAR})")
        for table in ("sessions", "agents", "environments"):
            for path in lake.table_files(table):
                con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet($f)",
                            {"f": str(path)})
        yield Store(path=lake.root, connection=con, read_only=True, lake_as_of_ms=as_of_ms)
    finally:
        con.close()


def lake_as_of(store: Store, as_of: str | int | None) -> int:
    """The as-of a report on a lake store is priced at: the lake's own (asking another is an
    error: the lake would have to be rated again)."""
    assert store.lake_as_of_ms is not None
    if as_of is not None and to_epoch_ms(as_of) != store.lake_as_of_ms:
        raise UsageError(f"the lake is rated as of {iso_ms(store.lake_as_of_ms)}, not "
                         f"{iso_ms(to_epoch_ms(as_of))}: rate it again at that instant")
    return store.lake_as_of_ms
