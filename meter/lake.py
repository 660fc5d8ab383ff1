"""The lake: the store's usage as Hive-partitioned Parquet on disk, for engines beyond DuckDB.

Layout (any engine that reads Parquet reads it; Spark and DuckDB do here):

    DIR/_lake.json                          format, version, each table's columns
    DIR/<events table>/day=YYYY-MM-DD/part-<run>-<n>.parquet
                                            status_events, model_requests, usage_snapshots,
                                            threads: by the UTC day of at_ms, append-only
    DIR/<dimension>/<dimension>.parquet     sessions (with their tags), agents, environments:
                                            the latest records, replaced whole
    DIR/pricebooks/*.toml                   the price books the store was rated with
    DIR/_runs/<run>.json                    what each export wrote: every file and its rows
    DIR/charges/period=YYYY-MM/...          written by `rate --engine spark` (pricing.spark)
    DIR/unrated/period=YYYY-MM/...

Why plain Parquet and not Delta Lake or Iceberg: the lake is append-only and written by one
exporter at a time, so the per-run manifests give what a table format would here (a list of
committed files, detection of a missing or foreign file) without a JVM package fetched at run
time (Spark must not download jars) or a second catalog to keep.

Idempotent by event: an export writes only the (session_id, event_id) pairs not yet in the
lake, so exporting twice, or after a crash, adds nothing twice. A crash leaves either nothing
visible (files still in `_staging`) or a manifest whose files are moved into place on the
next open (`finish_pending`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from meter.errors import UsageError
from meter.vocabulary import as_date, day_start

FORMAT = "agenttally-lake"
VERSION = 1
EVENT_TABLES = ("status_events", "model_requests", "usage_snapshots", "threads")
DIMENSIONS = ("sessions", "agents", "environments")
_DAY_DIR = re.compile(r"^day=\d{4}-\d{2}-\d{2}$")


class LakeError(UsageError):
    """A lake that cannot be read as it is: the message names the file or partition."""


@dataclass
class LakeExport:
    """What one export added: rows per table and the files written."""

    run: str
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0

    def summary(self) -> str:
        added = ", ".join(f"{n:,} {t}" for t, n in self.rows.items())
        return f"run {self.run}: {added} ({self.files} files)"


@dataclass(frozen=True)
class Lake:
    """An opened, checked lake: its directory and each table's files."""

    root: Path
    files: dict[str, list[Path]]
    columns: dict[str, dict[str, str]]

    def table_files(self, table: str) -> list[Path]:
        return self.files.get(table, [])


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


def _select(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The table's columns with JSON as text (Parquet readers know no JSON type)."""
    return ", ".join(f"CAST({c} AS VARCHAR) AS {c}" if t == "JSON" else c
                     for c, t in _columns(con, table))


def _write_json(path: Path, value: object) -> None:
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(value, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(scratch, path)


def _meta(root: Path) -> dict[str, object] | None:
    path = root / "_lake.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LakeError(f"{path}: not readable as JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LakeError(f"{path}: not an AgentTally lake (format {FORMAT!r} expected)")
    if meta.get("version") != VERSION:
        raise LakeError(f"{path}: lake version {meta.get('version')}, this AgentTally reads "
                        f"version {VERSION}")
    return meta


def finish_pending(root: Path) -> None:
    """Complete exports that crashed after writing their manifest: move their staged files
    into place. Staged files without a manifest were never visible: removed."""
    staging = root / "_staging"
    if not staging.exists():
        return
    for run_dir in staging.iterdir():
        manifest = root / "_runs" / f"{run_dir.name}.json"
        if manifest.exists():
            for rel in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
                staged, final = run_dir / rel, root / rel
                if staged.exists() and not final.exists():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged, final)
        shutil.rmtree(run_dir, ignore_errors=True)


def open_lake(directory: str | Path) -> Lake:
    """Check and list a lake: every file a manifest names is there, every Parquet file is
    named by a manifest, partitions are `day=YYYY-MM-DD`, and each file has its table's
    columns and types. Any breach is a LakeError naming the file."""
    root = Path(directory)
    if not root.is_dir():
        raise LakeError(f"{root}: no lake here (not a directory)")
    meta = _meta(root)
    if meta is None:
        raise LakeError(f"{root}: no lake here (no _lake.json: a lake is written by an "
                        "export of a store or by the simulator)")
    finish_pending(root)
    columns: dict[str, dict[str, str]] = meta["tables"]  # type: ignore[assignment]
    listed: dict[str, str] = {}
    for manifest in sorted((root / "_runs").glob("*.json")):
        for rel in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
            listed[rel] = manifest.stem
    files: dict[str, list[Path]] = {t: [] for t in EVENT_TABLES}
    for rel, run in sorted(listed.items()):
        path = root / rel
        if not path.exists():
            raise LakeError(f"{path}: missing (partition {path.parent.name} of "
                            f"{path.parent.parent.name}, written by export run {run})")
        files[Path(rel).parts[0]].append(path)
    for table in EVENT_TABLES:
        table_dir = root / table
        if not table_dir.exists():
            continue
        for part in sorted(table_dir.iterdir()):
            if not part.is_dir() or not _DAY_DIR.match(part.name):
                raise LakeError(f"{part}: malformed partition of {table} (day=YYYY-MM-DD "
                                "expected)")
            for path in sorted(part.iterdir()):
                if path.relative_to(root).as_posix() not in listed:
                    raise LakeError(f"{path}: not written by an export of this lake (no run "
                                    "manifest names it); remove it or export again")
    for table, paths in files.items():
        for path in paths:
            _check_schema(path, table, columns[table])
    for table in DIMENSIONS:
        path = root / table / f"{table}.parquet"
        if path.exists():
            _check_schema(path, table, columns[table])
            files[table] = [path]
    return Lake(root, files, columns)


def _check_schema(path: Path, table: str, expected: dict[str, str]) -> None:
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise LakeError(f"{path}: not a readable Parquet file ({exc})") from exc
    found = {f.name: str(f.type) for f in schema}
    for name, kind in expected.items():
        if name not in found:
            raise LakeError(f"{path}: column {name} of {table} is missing (mixed schemas)")
        if found[name] != kind:
            raise LakeError(f"{path}: column {name} is {found[name]}, {kind} expected for "
                            f"{table} (mixed schemas)")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise LakeError(f"{path}: columns {', '.join(extra)} are not in {table} (mixed schemas)")


def _arrow_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    empty = con.sql(f"SELECT {_select(con, table)} FROM {table} LIMIT 0").to_arrow_table()
    return {f.name: str(f.type) for f in empty.schema}


def export_lake(con: duckdb.DuckDBPyConnection, directory: str | Path,
                pricebooks: Sequence[Path] = ()) -> LakeExport:
    """Write the store's events and dimensions to the lake at `directory` (created if new):
    only events not in it yet, partitioned by UTC day, in parallel; dimensions replaced."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    meta = _meta(root)
    tables = {t: _arrow_types(con, t) for t in (*EVENT_TABLES, *DIMENSIONS)}
    if meta is None:
        if any(p.name != "_staging" for p in root.iterdir()):
            raise LakeError(f"{root}: not empty and not a lake (no _lake.json); export into "
                            "an empty or new directory")
        _write_json(root / "_lake.json", {"format": FORMAT, "version": VERSION,
                                          "tables": tables})
    elif meta["tables"] != tables:
        raise LakeError(f"{root}: written with other table columns than this store's "
                        "(mixed schemas); export into a new directory")
    lake = open_lake(root)
    run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    staging = root / "_staging" / run
    result = LakeExport(run)
    written: dict[str, int] = {}
    for table in EVENT_TABLES:
        old = lake.table_files(table)
        seen = ("" if not old else
                " WHERE NOT EXISTS (SELECT 1 FROM read_parquet($old) o WHERE "
                "o.session_id = t.session_id AND o.event_id = t.event_id)")
        day = as_date(day_start("at_ms"))
        new = f"SELECT {_select(con, table)}, {day} AS day FROM {table} t{seen}"
        params = {"old": [str(p) for p in old]} if old else {}
        count = con.execute(f"SELECT count(*) FROM ({new})", params).fetchall()[0][0]
        result.rows[table] = count
        if not count:
            continue
        target = staging / table
        staging.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY ({new} ORDER BY day, session_id, at_ms) TO '{target}' "
                    f"(FORMAT parquet, PARTITION_BY (day), FILENAME_PATTERN "
                    f"'part-{run}-{{i}}', COMPRESSION zstd)", params)
        for path in sorted(target.rglob("*.parquet")):
            written[path.relative_to(staging).as_posix()] = 0
    if written:
        (root / "_runs").mkdir(exist_ok=True)
        _write_json(root / "_runs" / f"{run}.json",
                    {"run": run, "files": sorted(written), "rows": result.rows})
        finish_pending(root)  # the manifest is the commit: now move the files into place
    result.files = len(written)
    for table in DIMENSIONS:
        (root / table).mkdir(exist_ok=True)
        scratch = root / table / f".{table}-{run}.parquet"
        con.execute(f"COPY (SELECT {_select(con, table)} FROM {table}) TO '{scratch}' "
                    "(FORMAT parquet)")
        os.replace(scratch, root / table / f"{table}.parquet")
    if pricebooks:
        (root / "pricebooks").mkdir(exist_ok=True)
        for book in pricebooks:
            shutil.copyfile(book, root / "pricebooks" / book.name)
    shutil.rmtree(root / "_staging" / run, ignore_errors=True)
    if (root / "_staging").exists() and not any((root / "_staging").iterdir()):
        (root / "_staging").rmdir()
    return result
