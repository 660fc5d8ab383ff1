"""Readers while `simulate --into` writes: the simulator lets go of the store between batches.

Real processes on one store file: the simulator (`meter.simulator.write_store`, which
`agenttally simulate --into` calls) runs as its own process, since DuckDB lets no other process
open a file while one writes it, and this process reads, or writes, in between.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

from agenttally._simulation import build_simulation, profile_path
from meter.ingest import ingest_lines
from meter.simulator import write_store
from meter.store import StoreError, connect
from tests.conftest import session_record, status

ROOT = Path(__file__).resolve().parents[2]
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENTTALLY_")},
       "PYTHONPATH": str(ROOT)}
# Every event is in `events` and in exactly one typed table: equal counts mean a reader saw
# whole transactions only.
TYPED = ("status_events", "model_requests", "usage_snapshots", "tool_uses", "threads",
         "other_events", "session_updates")
CONSISTENT = (f"SELECT (SELECT count(*) FROM events), "
              f"{' + '.join(f'(SELECT count(*) FROM {t})' for t in TYPED)}")


def _simulate(db: Path, *, days: int, hold_s: float) -> subprocess.Popen[str]:
    """`write_store` of `days` demo days into `db`, in a process of its own, in transactions
    of about `hold_s` / 2 (`agenttally simulate --into` uses AGENTTALLY_WRITE_HOLD_S, 2 s;
    shorter here so that a small run has many pause points on any machine)."""
    script = textwrap.dedent(f"""
        from datetime import date
        from agenttally._simulation import build_simulation, profile_path
        from meter.simulator import write_store
        from meter.store import open_store
        sim = build_simulation(profile_path("demo"), start=date(2026, 10, 1), days={days},
                               seed=7)
        with open_store({str(db)!r}) as con:
            result = write_store(con, sim, hold_s={hold_s})
        print(result.events, result.duplicates)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(writer: subprocess.Popen[str]) -> tuple[int, int]:
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    events, duplicates = out.split()
    return int(events), int(duplicates)


def test_readers_open_the_store_while_the_simulator_writes_it(tmp_path):
    """~7 s: 15 demo days (~450k events) written by another process while this one opens
    the store read-only again and again (waiting in `connect` while the writer holds it);
    then the same run again in this process."""
    db = tmp_path / "sim.duckdb"
    writer = _simulate(db, days=15, hold_s=0.5)
    mid_run: list[tuple[int, int]] = []  # (events, typed rows) seen while the run was open
    try:
        while writer.poll() is None:
            try:
                con = connect(db, read_only=True)
            except StoreError:  # not created yet
                time.sleep(0.05)
                continue
            try:
                if con.execute("SELECT count(*) FROM ingest_log WHERE finished_ms IS NULL"
                               ).fetchall()[0][0]:
                    mid_run.append(con.execute(CONSISTENT).fetchall()[0])
            finally:
                con.close()
            time.sleep(0.05)
        stored, _ = _finish(writer)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert len({n for n, _ in mid_run if n}) >= 2, mid_run  # in, twice, with progress seen
    assert all(events == typed for events, typed in mid_run)  # whole transactions only
    assert [n for n, _ in mid_run] == sorted(n for n, _ in mid_run)
    # again, in this process: nothing added, though the store was let go and taken back on
    # the caller's own connection, which is as it was (its temp table, its database)
    sim = build_simulation(profile_path("demo"), start=date(2026, 10, 1), days=15, seed=7)
    con = connect(db)
    try:
        con.execute("CREATE TEMP TABLE mine AS SELECT 42 AS answer")
        again = write_store(con, sim, hold_s=0.0)  # lets go at every pause point
        assert (again.events, again.duplicates) == (0, stored)
        assert con.execute(CONSISTENT).fetchall()[0] == (stored, stored)
        assert con.execute("SELECT answer FROM mine").fetchall() == [(42,)]
        assert con.execute("SELECT current_database()").fetchall() == [("sim",)]
    finally:
        con.close()


def test_rows_written_after_another_writers_ingest_take_a_newer_ingest_id(tmp_path):
    """~5 s: the simulator (in its own process) and an ingest by this process, which gets in
    at one of its pause points. The simulator's later rows must carry an ingest id
    above that ingest's, or a rating run between the two would never see them (the ledger
    finds changed sessions by ingest id)."""
    db = tmp_path / "sim.duckdb"
    connect(db).close()
    writer = _simulate(db, days=12, hold_s=0.5)
    ours = None
    try:
        while ours is None and writer.poll() is None:
            con = connect(db)  # waits, announced, until the simulator lets go
            try:
                if con.execute("SELECT count(*) FROM events").fetchall()[0][0]:
                    lines = [json.dumps(r) for r in (
                        session_record("sesn_between"),
                        status("sesn_between", "sevt_between_1", "2026-10-02T09:00:00.000Z",
                               "running"))]
                    ingest_lines(con, lines, source="between", max_future_ms=10**12)
                    ours = con.execute("SELECT ingest_id FROM ingest_log "
                                       "WHERE source = 'between'").fetchall()[0][0]
            finally:
                con.close()
            time.sleep(0.05)
        written, _ = _finish(writer)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert ours is not None, "the ingest never found the simulator mid-run"
    con = connect(db, read_only=True)
    try:
        rows = con.execute("SELECT ingest_id, source, new_events, finished_ms IS NOT NULL "
                           "FROM ingest_log ORDER BY ingest_id").fetchall()
        newest = con.execute("SELECT max(ingest_id) FROM events WHERE event_id <> "
                             "'sevt_between_1'").fetchall()[0][0]
        total = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    finally:
        con.close()
    simulated = [r for r in rows if r[1].startswith("simulate:")]
    assert [r[0] for r in simulated][0] < ours < [r[0] for r in simulated][-1], rows
    assert newest > ours and all(done for *_, done in rows)
    assert sum(r[2] for r in simulated) == written == total - 1
