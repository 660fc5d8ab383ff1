"""The rating engine on Apache Spark: pricing.rating's own SQL, run by a SparkSession.

`SparkConnection` gives pricing.rating the little of a DuckDB connection it uses (execute,
fetchall, register): each statement is translated by pricing.dialect and run by Spark, temp
tables become checkpointed temp views, macros are inlined. So `pricing.rating.rate` runs
unchanged on either engine, and there is one copy of the rules.

Money on Spark is DECIMAL throughout: ANSI mode on (an overflow fails, never wraps or turns
NULL) and no precision loss in decimal arithmetic (a product keeps every digit, as in DuckDB).
No Python UDF runs on the data.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import pyarrow as pa

from meter.errors import DataError
from meter.lake import EVENT_TABLES, Lake
from meter.settings import setting
from pricing.dialect import Macro, Staged, parse_macro, staged, to_spark
from pricing.pricebook import PriceBook
from pricing.rating import RatingOptions, rate

_CREATE = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+TEMP\s+(TABLE|VIEW)\s+(\w+)\s+AS\s+(.*)$",
                     re.IGNORECASE | re.DOTALL)
_DROP = re.compile(r"^\s*DROP\s+(TABLE|VIEW)\s+(?:temp\.main\.)?(\w+)\s*$", re.IGNORECASE)
_KIND_OF = re.compile(r"duckdb_views\(\).*list_contains\(\$n, view_name\)",
                      re.IGNORECASE | re.DOTALL)

# Spark settings the rating needs: exact decimals, UTC. (No spark.jars.packages: nothing is
# fetched at run time; the engine needs only what PySpark ships.)
SESSION_CONF = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # (constraint propagation fails inside Spark on a union under a window, when checkpointed)
    "spark.sql.constraintPropagation.enabled": "false",
}


def spark_session(master: str | None = None, app: str = "agenttally",
                  conf: Mapping[str, str] | None = None) -> Any:
    """A SparkSession on `master` (default: the one spark-submit gives, else local[*]) with
    SESSION_CONF and `conf` (e.g. spark.driver.memory, which counts only before the JVM
    starts)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise DataError("the Spark engine is not installed: pip install 'agenttally[spark]' "
                        "(PySpark and sqlglot; Spark needs Java 17)") from exc
    builder = SparkSession.builder.appName(app)
    given = {**SESSION_CONF}
    if master is not None or not setting("PYSPARK_GATEWAY_PORT"):  # (spark-submit's master)
        builder = builder.master(master or "local[*]")
        if (master or "local").startswith("local"):  # a few cores: few shuffle partitions
            given["spark.sql.shuffle.partitions"] = "4"
    for key, value in {**given, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # PySpark's error when the JVM cannot start (no Java, bad master)
        raise DataError(f"Spark did not start on master {master or 'local[*]'} ({exc}); it "
                        "needs Java 17: sudo apt-get install -y openjdk-17-jre-headless"
                        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkConnection:
    """Just enough of a DuckDB connection for pricing.rating, on a SparkSession."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.macros: dict[str, Macro] = {}
        self._rows: list[tuple[Any, ...]] = []

    def sql(self, duckdb_sql: str, params: Mapping[str, object] | None = None) -> str:
        """The Spark SQL for DuckDB statement `duckdb_sql`."""
        return to_spark(duckdb_sql, params, self.macros, self._columns_of)

    def _run(self, spark_sql: str) -> Any:
        try:
            return self.spark.sql(spark_sql)
        except Exception as exc:  # the translated statement, for whoever reads the trace
            exc.add_note(f"Spark SQL (from pricing.dialect): {spark_sql}")
            raise

    def _columns_of(self, spark_sql: str) -> list[str]:
        return list(self.spark.sql(spark_sql).columns)

    def execute(self, sql: str, params: Mapping[str, object] | None = None) -> SparkConnection:
        macro = parse_macro(sql)
        if macro is not None:
            self.macros[macro[0]] = macro[1]
            self._rows = []
            return self
        if _KIND_OF.search(sql):  # pricing.rating.drop_relation asks what names are
            names = cast(list[str], (params or {}).get("n") or [])
            self._rows = [("VIEW", n) for n in names if self.spark.catalog.tableExists(n)]
            return self
        dropped = _DROP.match(sql)
        if dropped:
            self.spark.catalog.dropTempView(dropped.group(2))
            self._rows = []
            return self
        created = _CREATE.match(sql)
        if created:
            kind, name, body = created.groups()
            if kind.upper() == "TABLE":  # materialised, its lineage cut: later steps read it
                self._materialise(name, self._staged(body, params, name))
            else:
                self._run(f"CREATE OR REPLACE TEMP VIEW {name} AS {self.sql(body, params)}")
            self._rows = []
            return self
        plan = self._staged(sql, params, "q")
        self._rows = [tuple(r) for r in self._query(plan).collect()]
        return self

    def _staged(self, sql: str, params: Mapping[str, object] | None, name: str) -> Staged:
        return staged(sql, params, self.macros, self._columns_of, prefix=f"__{name}_")

    def _query(self, plan: Staged) -> Any:
        for view, cte_sql in plan.ctes:
            self._materialise(view, Staged((), cte_sql))
        frame = self._run(plan.query)
        for view, _ in plan.ctes:
            self.spark.catalog.dropTempView(view)
        return frame

    def _materialise(self, name: str, plan: Staged) -> None:
        for view, cte_sql in plan.ctes:
            self._materialise(view, Staged((), cte_sql))
        self._run(plan.query).localCheckpoint(eager=True).createOrReplaceTempView(name)
        for view, _ in plan.ctes:
            self.spark.catalog.dropTempView(view)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def register(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)



# Arrow type names (the lake's _lake.json) as Spark SQL types, for empty tables.
_SPARK_TYPES = {"string": "STRING", "int64": "BIGINT", "int32": "INT", "bool": "BOOLEAN",
                "double": "DOUBLE", "date32[day]": "DATE"}


@dataclass(frozen=True)
class LakeRating:
    """What `rate_lake` wrote: charge and unrated lines, the total, the periods."""

    as_of_ms: int
    charge_lines: int
    unrated_lines: int
    total: Decimal
    periods: tuple[str, ...]
    elapsed_s: float
    master: str


def load_lake(con: SparkConnection, lake: Lake) -> None:
    """The lake's tables as the temp views rating reads (an empty table where no file is)."""
    for table in (*EVENT_TABLES, "sessions"):
        paths = [str(p) for p in lake.table_files(table)]
        columns = lake.columns[table]
        if paths:
            frame = con.spark.read.parquet(*paths).select(*columns)
        else:
            frame = con.spark.sql("SELECT " + ", ".join(
                f"CAST(NULL AS {_SPARK_TYPES[t]}) AS {c}" for c, t in columns.items())
                + " WHERE false")
        frame.createOrReplaceTempView(table)


def rate_lake(lake: Lake, books: Sequence[PriceBook], options: RatingOptions,
              master: str | None = None, conf: Mapping[str, str] | None = None) -> LakeRating:
    """Rate the whole lake on Spark with pricing.rating's rules and write `charges` and
    `unrated` back to it, partitioned by period (replacing what an earlier rating wrote)."""
    began = time.perf_counter()
    spark = spark_session(master, conf=conf)
    con = SparkConnection(spark)
    load_lake(con, lake)
    rate(con, books, options)  # type: ignore[arg-type]  # (a connection in all it uses)
    charges = spark.table("charges")
    charges.write.mode("overwrite").partitionBy("period").parquet(str(lake.root / "charges"))
    unrated = spark.table("unrated")
    unrated.write.mode("overwrite").partitionBy("period").parquet(str(lake.root / "unrated"))
    summary = spark.sql("SELECT count(*), coalesce(sum(amount_exact), 0), "
                        "array_sort(collect_set(period)) FROM charges").collect()[0]
    unrated_lines = spark.sql("SELECT count(*) FROM unrated").collect()[0][0]
    result = LakeRating(as_of_ms=options.as_of_ms, charge_lines=summary[0],
                        total=Decimal(summary[1]), periods=tuple(summary[2]),
                        unrated_lines=unrated_lines, elapsed_s=time.perf_counter() - began,
                        master=spark.sparkContext.master)
    columns = {name: {f.name: f.dataType.simpleString() for f in frame.schema.fields}
               for name, frame in (("charges", charges), ("unrated", unrated))}
    write_rating(lake, result, books, columns)
    return result


def write_rating(lake: Lake, result: LakeRating, books: Sequence[PriceBook],
                 columns: dict[str, dict[str, str]]) -> None:
    """DIR/_rating.json: what the charges in the lake are (as-of, books, engine, columns)."""
    record = {"as_of_ms": result.as_of_ms, "engine": "spark", "master": result.master,
              "columns": columns,
              "charge_lines": result.charge_lines, "unrated_lines": result.unrated_lines,
              "total": str(result.total), "periods": list(result.periods),
              "books": [{"name": b.name, "version": b.version} for b in books]}
    path = lake.root / "_rating.json"
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(scratch, path)
