"""The lake: partitioned by UTC day, idempotent by event, and refused when damaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meter.ingest import ingest_lines
from meter.lake import EVENT_TABLES, LakeError, export_lake, open_lake
from meter.store import connect
from tests.conftest import session_record, snapshot, span, status

EVENTS = [
    session_record("a", created_at="2026-10-31T20:00:00Z"),
    status("a", "a1", "2026-10-31T23:00:00.000Z", "running"),
    span("a", "a2", "2026-10-31T23:30:00.000Z", input=1_000, output=200),
    snapshot("a", "a3", "2026-11-01T00:10:00.000Z", input=1_500, output=300),
    status("a", "a4", "2026-11-01T00:45:00.250Z", "idle"),
]
LATER = [status("a", "a5", "2026-11-02T09:00:00.000Z", "running"),
         status("a", "a6", "2026-11-02T10:00:00.000Z", "terminated")]


def _store(tmp_path: Path, events: list[dict]):
    con = connect(tmp_path / "store.duckdb")
    ingest_lines(con, (json.dumps(e) for e in events), source="test")
    return con


def _rows(lake_dir: Path, table: str) -> int:
    return sum(pq.read_metadata(p).num_rows for p in open_lake(lake_dir).table_files(table))


def test_events_land_in_their_utc_day_and_dimensions_whole(tmp_path):
    con = _store(tmp_path, EVENTS)
    result = export_lake(con, tmp_path / "lake")
    assert result.rows == {"status_events": 2, "model_requests": 1, "usage_snapshots": 1,
                           "threads": 0}
    days = sorted(p.name for p in (tmp_path / "lake" / "status_events").iterdir())
    assert days == ["day=2026-10-31", "day=2026-11-01"]
    lake = open_lake(tmp_path / "lake")
    assert len(lake.table_files("sessions")) == 1
    assert lake.columns["usage_snapshots"]["input_tokens"] == "int64"


def test_exporting_again_adds_nothing_and_later_events_only_once(tmp_path):
    con = _store(tmp_path, EVENTS)
    export_lake(con, tmp_path / "lake")
    again = export_lake(con, tmp_path / "lake")
    assert sum(again.rows.values()) == 0 and again.files == 0
    ingest_lines(con, (json.dumps(e) for e in LATER), source="later")
    more = export_lake(con, tmp_path / "lake")
    assert more.rows["status_events"] == 2
    assert _rows(tmp_path / "lake", "status_events") == 4


def test_a_missing_partition_is_named(tmp_path):
    con = _store(tmp_path, EVENTS)
    export_lake(con, tmp_path / "lake")
    shutil.rmtree(tmp_path / "lake" / "status_events" / "day=2026-10-31")
    with pytest.raises(LakeError, match=r"day=2026-10-31.*missing|missing.*day=2026-10-31"):
        open_lake(tmp_path / "lake")


def test_a_malformed_partition_is_refused(tmp_path):
    con = _store(tmp_path, EVENTS)
    export_lake(con, tmp_path / "lake")
    (tmp_path / "lake" / "status_events" / "day=last-week").mkdir()
    with pytest.raises(LakeError, match="malformed partition"):
        open_lake(tmp_path / "lake")


def test_a_file_of_another_schema_is_refused(tmp_path):
    con = _store(tmp_path, EVENTS)
    export_lake(con, tmp_path / "lake")
    part = next((tmp_path / "lake" / "usage_snapshots").rglob("*.parquet"))
    table = pq.read_table(part)
    # input_tokens written as text: a reader would sum strings or fail far from the cause
    mixed = table.set_column(table.schema.get_field_index("input_tokens"), "input_tokens",
                             pa.array([str(v) for v in table["input_tokens"].to_pylist()]))
    pq.write_table(mixed, part)
    with pytest.raises(LakeError, match="input_tokens is string, int64 expected"):
        open_lake(tmp_path / "lake")


def test_a_file_no_export_wrote_is_refused(tmp_path):
    con = _store(tmp_path, EVENTS)
    export_lake(con, tmp_path / "lake")
    day = tmp_path / "lake" / "status_events" / "day=2026-11-01"
    shutil.copy(next(day.glob("*.parquet")), day / "copied-by-hand.parquet")
    with pytest.raises(LakeError, match="copied-by-hand.parquet: not written by an export"):
        open_lake(tmp_path / "lake")


def test_a_crash_after_the_manifest_is_completed_on_open(tmp_path):
    """An export that died between committing its manifest and moving its files: the next
    open moves them into place (nothing lost, nothing twice)."""
    con = _store(tmp_path, EVENTS)
    lake_dir = tmp_path / "lake"
    export_lake(con, lake_dir)
    manifest = next((lake_dir / "_runs").glob("*.json"))
    run = manifest.stem
    for rel in json.loads(manifest.read_text())["files"]:  # put the files back in staging
        staged = lake_dir / "_staging" / run / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        (lake_dir / rel).rename(staged)
    assert _rows(lake_dir, "status_events") == 2
    assert not (lake_dir / "_staging").exists() or not any((lake_dir / "_staging").iterdir())


def test_not_a_lake(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(LakeError, match="no _lake.json"):
        open_lake(tmp_path / "other")
    con = _store(tmp_path, EVENTS)
    with pytest.raises(LakeError, match="not empty and not a lake"):
        export_lake(con, tmp_path / "other")
    assert set(EVENT_TABLES) >= {"status_events"}
