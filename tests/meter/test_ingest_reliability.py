"""Ingest reliability (issue 18): no single line poisons the store, nothing is lost silently,
readers are never locked out, and a killed ingest says so.

Real store files and real processes: the CLI as the writer, this process (or the CLI) as the
reader, `kill -9` for the crash.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meter.errors import UsageError
from meter.events import Bounds, parse_line
from meter.ingest import ingest_lines, ingest_path, ingest_runs
from meter.store import SCHEMA_VERSION, StoreError, connect
from tests.conftest import iso, ms, session_record, snapshot, status
from tests.meter.test_ingest import span

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = ROOT / "data" / "samples" / "demo-day.jsonl.gz"
SAMPLE_LINES, SAMPLE_EVENTS, SAMPLE_RECORDS = 36_994, 36_600, 394
T0 = ms("2026-11-03T09:00:00.000Z")
AGENTTALLY = [sys.executable, "-m", "agenttally.cli"]


def _cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*AGENTTALLY, *args], input=stdin, capture_output=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=300)


def _count(con, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def _quarantined(con) -> list[tuple[int, str]]:
    return con.execute("SELECT line_no, error FROM quarantine ORDER BY line_no").fetchall()


# 1. Plausibility bounds ------------------------------------------------------------------

def test_a_token_count_beyond_the_request_bound_is_quarantined_naming_field_value_and_bound(
        store, feed):
    result = feed([span("s", "e1", "2026-11-03T09:00:00Z", input_tokens=10**9),
                   span("s", "e2", "2026-11-03T09:00:01Z", output_tokens=10**9 + 1),
                   span("s", "e3", "2026-11-03T09:00:02Z", cache_read=2**63 - 1),
                   span("s", "e4", "2026-11-03T09:00:03Z", cache_write=10**30)])
    assert (result.new_events, result.quarantined) == (1, 3)
    assert _quarantined(store) == [
        (2, "event e2: model_usage.output_tokens: 1000000001 exceeds the plausible bound "
            "1000000000 (AGENTTALLY_MAX_REQUEST_TOKENS)"),
        (3, "event e3: model_usage.cache_read_input_tokens: 9223372036854775807 exceeds the "
            "plausible bound 1000000000 (AGENTTALLY_MAX_REQUEST_TOKENS)"),
        (4, "event e4: model_usage.cache_creation_input_tokens: "
            "1000000000000000000000000000000 exceeds the plausible bound 1000000000 "
            "(AGENTTALLY_MAX_REQUEST_TOKENS)")]
    assert store.sql("SELECT input_tokens FROM model_requests").fetchall() == [(10**9,)]


def test_snapshot_counters_and_web_requests_have_their_own_bounds(store, feed):
    result = feed([snapshot("s", "e1", "2026-11-03T09:00:00Z", input=10**11, searches=10**7),
                   snapshot("s", "e2", "2026-11-03T09:00:01Z", input=10**11 + 1),
                   snapshot("s", "e3", "2026-11-03T09:00:02Z", input=10**11,
                            searches=10**7 + 1)])
    assert (result.new_events, result.quarantined) == (1, 2)
    assert _quarantined(store) == [
        (2, "event e2: usage.input_tokens: 100000000001 exceeds the plausible bound "
            "100000000000 (AGENTTALLY_MAX_SESSION_TOKENS)"),
        (3, "event e3: usage.server_tool_use.web_search_requests: 10000001 exceeds the "
            "plausible bound 10000000 (AGENTTALLY_MAX_WEB_REQUESTS)")]


def test_a_time_before_the_earliest_plausible_one_is_quarantined(store, feed):
    feed([status("s", "e1", "1899-12-31T23:59:59Z", "running"),
          status("s", "e2", "1900-01-01T00:00:00Z", "idle")])
    assert _quarantined(store) == [
        (1, "event e1: processed_at: 1899-12-31T23:59:59Z is before the earliest plausible "
            "time 1900-01-01T00:00:00.000Z (AGENTTALLY_EARLIEST_TIME)")]


def test_bounds_are_configured_by_settings_and_a_malformed_one_is_refused(store, feed,
                                                                         monkeypatch):
    monkeypatch.setenv("AGENTTALLY_MAX_REQUEST_TOKENS", "1000")
    monkeypatch.setenv("AGENTTALLY_EARLIEST_TIME", "2026-01-01T00:00:00Z")
    assert Bounds.from_settings() == Bounds(request_tokens=1000,
                                            earliest_ms=ms("2026-01-01T00:00:00.000Z"))
    result = feed([span("s", "e1", "2026-11-03T09:00:00Z", input_tokens=1001),
                   status("s", "e2", "2025-12-31T00:00:00Z", "idle")])
    assert result.errors == [
        "test.jsonl:1: event e1: model_usage.input_tokens: 1001 exceeds the plausible bound "
        "1000 (AGENTTALLY_MAX_REQUEST_TOKENS)",
        "test.jsonl:2: event e2: processed_at: 2025-12-31T00:00:00Z is before the earliest "
        "plausible time 2026-01-01T00:00:00.000Z (AGENTTALLY_EARLIEST_TIME)"]
    monkeypatch.setenv("AGENTTALLY_MAX_SESSION_TOKENS", "lots")
    with pytest.raises(UsageError, match=r"AGENTTALLY_MAX_SESSION_TOKENS='lots': expected a "
                                         r"whole number from 1 to 10\^15, e.g. 100000000000"):
        Bounds.from_settings()


def test_the_pydantic_spec_applies_the_same_bounds():
    line = json.dumps(span("s", "e1", "2026-11-03T09:00:00Z", input_tokens=10**9 + 1))
    with pytest.raises(ValueError, match=r"^model_usage.input_tokens: 1000000001 exceeds the "
                                         r"plausible bound 1000000000"):
        parse_line(line)
    assert parse_line(line, bounds=Bounds(request_tokens=10**10)).id == "e1"


def test_the_largest_plausible_values_sum_without_overflow(store, feed):
    """The issue's poison: 2^63-1 tokens made every report fail. At the bounds, sums over
    many requests and sessions stay exact (see meter.events.Bounds for the arithmetic)."""
    feed([span(f"s{i}", f"e{i}", "2026-11-03T09:00:00Z", input_tokens=10**9,
               output_tokens=10**9) for i in range(1000)]
         + [snapshot(f"s{i}", f"u{i}", "2026-11-03T09:00:01Z", input=10**11)
            for i in range(1000)])
    assert store.sql("SELECT sum(input_tokens + output_tokens)::BIGINT FROM model_requests"
                     ).fetchall() == [(2 * 10**12,)]
    assert store.sql("SELECT sum(input_tokens)::BIGINT FROM usage_snapshots").fetchall() == [
        (10**14,)]


# 2. Corrupt gzip, gzip on stdin ----------------------------------------------------------

def _flipped(tmp_path: Path, name: str = "flipped.jsonl.gz") -> Path:
    """The 36,994-line sample with two bytes flipped in the middle of its deflate stream."""
    data = bytearray(SAMPLE.read_bytes())
    for offset in (len(data) // 2, len(data) // 2 + 1000):
        data[offset] ^= 0xFF
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_gzip_file_fails_whole_and_stores_nothing(store, tmp_path):
    path = _flipped(tmp_path)
    with pytest.raises(UsageError) as caught:
        ingest_path(store, path)
    assert str(caught.value) == (f"{path}: corrupt gzip data: CRC check failed 0xa593c546 != "
                                 "0xba1a03b9; nothing from this file was stored")
    assert {t: _count(store, t) for t in ("events", "sessions", "quarantine", "ingest_log")
            } == {"events": 0, "sessions": 0, "quarantine": 0, "ingest_log": 0}


def test_a_truncated_gzip_file_fails_whole_and_stores_nothing(store, tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(SAMPLE.read_bytes()[:400_000])
    with pytest.raises(UsageError, match=r"cut.jsonl.gz: corrupt gzip data: the compressed "
                                         r"stream ends early \(truncated file\); nothing"):
        ingest_path(store, path)
    assert _count(store, "events") == 0


def test_the_cli_names_the_corrupt_file_in_one_line_and_exits_2(tmp_path):
    db = tmp_path / "s.duckdb"
    done = _cli("ingest", "--db", str(db), str(_flipped(tmp_path)))
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"agenttally ingest: {tmp_path}/flipped.jsonl.gz: corrupt gzip data: CRC check "
        "failed 0xa593c546 != 0xba1a03b9; nothing from this file was stored"]


def test_gzip_data_on_stdin_is_decoded_and_stored_like_the_file(tmp_path):
    db = tmp_path / "s.duckdb"
    done = _cli("ingest", "--db", str(db), "-", stdin=SAMPLE.read_bytes())
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        f"-: {SAMPLE_LINES:,} lines: {SAMPLE_EVENTS:,} new, 0 duplicate, "
        f"{SAMPLE_RECORDS:,} records, 0 quarantined"]
    con = connect(db, read_only=True)
    assert (_count(con, "events"), _count(con, "quarantine")) == (SAMPLE_EVENTS, 0)
    assert con.sql("SELECT source FROM ingest_log").fetchall() == [("<stdin>",)]
    con.close()


def test_corrupt_gzip_on_stdin_is_refused_not_quarantined_as_binary_lines(tmp_path):
    db = tmp_path / "s.duckdb"
    done = _cli("ingest", "--db", str(db), "-", stdin=_flipped(tmp_path).read_bytes())
    assert done.returncode == 2
    assert done.stderr.decode().startswith("agenttally ingest: <stdin>: corrupt gzip data: ")
    con = connect(db, read_only=True)
    assert (_count(con, "events"), _count(con, "quarantine")) == (0, 0)
    con.close()


def test_gzip_data_is_known_by_its_magic_bytes_whatever_the_name(store, tmp_path):
    path = tmp_path / "events.jsonl"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(status("s", "e1", "2026-11-03T09:00:00Z", "running")) + "\n")
    result = ingest_path(store, path)
    assert (result.new_events, result.quarantined) == (1, 0)


# 3. Cumulative snapshots that go down ----------------------------------------------------

def test_a_snapshot_below_a_stored_one_is_quarantined_and_billed_usage_kept(store, feed):
    feed([snapshot("s", "u1", "2026-11-03T09:00:00.000Z", input=5000, output=300)])
    result = feed([snapshot("s", "u2", "2026-11-03T09:05:00.000Z", input=4000, output=400),
                   snapshot("s", "u3", "2026-11-03T09:10:00.000Z", input=6000, output=500)],
                  source="later.jsonl")
    assert (result.new_events, result.quarantined) == (1, 1)
    assert result.errors == [
        "later.jsonl:1: event u2: usage.input_tokens: went down from 5000 (event u1 at "
        "2026-11-03T09:00:00.000Z) to 4000; a cumulative counter never decreases"]
    assert store.sql("SELECT event_id, input_tokens FROM usage_snapshots ORDER BY at_ms"
                     ).fetchall() == [("u1", 5000), ("u3", 6000)]


def test_a_snapshot_that_goes_down_within_one_batch_is_quarantined(store, feed):
    result = feed([snapshot("s", "u1", "2026-11-03T09:00:00.000Z", read=100, searches=3),
                   snapshot("s", "u2", "2026-11-03T09:01:00.000Z", read=200, searches=2),
                   snapshot("s", "u3", "2026-11-03T09:02:00.000Z", read=300, searches=3),
                   snapshot("other", "u4", "2026-11-03T09:01:30.000Z", read=1)])
    assert (result.new_events, result.quarantined) == (3, 1)
    assert _quarantined(store) == [
        (2, "event u2: usage.server_tool_use.web_search_requests: went down from 3 (event u1 "
            "at 2026-11-03T09:00:00.000Z) to 2; a cumulative counter never decreases")]


def test_a_late_snapshot_above_a_later_stored_one_is_quarantined(store, feed):
    feed([snapshot("s", "u5", "2026-11-03T10:00:00.000Z", output=100)])
    result = feed([snapshot("s", "u4", "2026-11-03T09:00:00.000Z", output=150),
                   snapshot("s", "u3", "2026-11-03T08:00:00.000Z", output=50)])
    assert (result.new_events, result.quarantined) == (1, 1)
    assert _quarantined(store) == [
        (1, "event u4: usage.output_tokens: 150 exceeds 100 of the later snapshot (event u5 "
            "at 2026-11-03T10:00:00.000Z); a cumulative counter never decreases")]


def test_re_ingesting_accepted_snapshots_finds_duplicates_only(store, feed):
    lines = [snapshot("s", f"u{i}", iso(T0 + i * 1000), input=i * 10) for i in range(5)]
    feed(lines)
    again = feed(lines[::-1])
    assert (again.new_events, again.duplicates, again.quarantined) == (0, 5, 0)


def test_the_collector_stores_snapshots_through_the_same_check(tmp_path):
    """The live collector writes a flush through meter.ingest.ingest_lines (write_batch)."""
    from meter.collector.writer import write_batch

    db = tmp_path / "c.duckdb"
    write_batch(db, [json.dumps(snapshot("s", "u1", "2026-11-03T09:00:00.000Z", input=10))],
                {}, source="collector")
    second = write_batch(db, [json.dumps(snapshot("s", "u2", "2026-11-03T09:01:00.000Z",
                                                  input=9))], {}, source="collector")
    assert (second.new_events, second.quarantined) == (0, 1)


# 5. Silent guesses ----------------------------------------------------------------------

def test_an_unknown_speed_is_quarantined_not_billed_at_standard(store, feed):
    result = feed([span("s", "e1", "2026-11-03T09:00:00Z") | {
                       "model_usage": {"input_tokens": 1, "output_tokens": 1,
                                       "cache_creation_input_tokens": 0,
                                       "cache_read_input_tokens": 0, "speed": "turbo"}},
                   session_record("s", agent={"id": "a", "model": {"id": "claude-opus-5",
                                                                   "speed": "ludicrous"}}),
                   {"type": "agent", "id": "a", "model": {"id": "claude-opus-5",
                                                          "speed": "Fast"}}])
    assert (result.new_events, result.records, result.quarantined) == (0, 0, 3)
    assert [e for _, e in _quarantined(store)] == [
        "event e1: model_usage.speed: unknown speed turbo (expected standard or fast; it would "
        "be billed at a guess)",
        "session s: agent.model.speed: unknown speed ludicrous (expected standard or fast; it "
        "would be billed at a guess)",
        "agent a: model.speed: unknown speed Fast (expected standard or fast; it would be "
        "billed at a guess)"]


def test_one_event_id_in_two_sessions_is_two_events_and_reported(store, feed):
    first = feed([status("s1", "sevt_1", "2026-11-03T09:00:00Z", "running")])
    second = feed([status("s2", "sevt_1", "2026-11-03T09:00:00Z", "running"),
                   status("s3", "sevt_1", "2026-11-03T09:00:01Z", "idle"),
                   status("s1", "sevt_1", "2026-11-03T09:00:00Z", "running")],
                  source="more.jsonl")
    assert first.id_collisions == 0
    assert (second.new_events, second.duplicates, second.id_collisions) == (2, 1, 2)
    assert second.warnings[0] == (
        "more.jsonl:1: event sevt_1 of session s2: the id is also used by session s1, s3; "
        "kept as a separate event (events are identified by session and id)")
    assert second.summary().endswith(", 2 ids also used by another session")
    assert store.sql("SELECT session_id FROM status_events ORDER BY session_id").fetchall() == [
        ("s1",), ("s2",), ("s3",)]
    assert store.sql("SELECT id_collisions FROM ingest_log ORDER BY ingest_id").fetchall() == [
        (0,), (2,)]


@pytest.mark.parametrize("at", ["2026-11-03T09:00:00", "2026-11-03 09:00:00.250"])
def test_a_time_without_a_zone_is_refused_never_taken_as_utc(store, feed, at):
    feed([status("s", "e1", at, "running"),
          status("s", "e2", "2026-11-03T09:00:00+02:00", "idle"),
          status("s", "e3", "2026-11-03T09:00:00.5-0530", "idle")])
    assert _quarantined(store) == [
        (1, f"event e1: processed_at: no time zone (expected e.g. 2026-11-03T09:00:00Z, a zone "
            f"is never guessed): {at}")]


def test_a_directory_is_refused_as_a_directory(store, tmp_path):
    with pytest.raises(UsageError, match=r"is a directory; expected a JSONL file"):
        ingest_path(store, tmp_path)
    done = _cli("ingest", "--db", str(tmp_path / "s.duckdb"), str(tmp_path))
    assert (done.returncode, done.stderr.decode()) == (
        2, f"agenttally ingest: {tmp_path}: is a directory; expected a JSONL file (.jsonl, "
           ".jsonl.gz) or - for stdin\n")


# 4. Readers and writers share a store ----------------------------------------------------

def _write_status_file(path: Path, n: int, *, sessions: int = 500) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps(status(f"sesn_{i % sessions:04d}", f"sevt_{i:07d}",
                                      iso(T0 + i), "running" if i % 2 else "idle")) + "\n")


def test_connect_waits_with_a_message_then_raises_a_store_error(tmp_path, capfd):
    db = tmp_path / "held.duckdb"
    connect(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(30)", str(db)],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        began = time.monotonic()
        with pytest.raises(StoreError) as caught:
            connect(db, read_only=True, lock_timeout_s=0.5)
        assert 0.5 <= time.monotonic() - began < 5
    finally:
        holder.kill()
        holder.wait()
    assert str(caught.value) == (f"{db}: another process (PID {holder.pid}) still holds the "
                                 "store after 0.5 s; try again when it has finished")
    assert capfd.readouterr().err == (f"waiting for {db}: another process (PID {holder.pid}) "
                                      "is writing it (up to 0.5 s) ...\n")
    assert not list(tmp_path.glob("held.duckdb.waiting-*"))  # the marker is gone


def test_readers_get_in_while_a_long_ingest_writes(tmp_path):
    """A CLI ingest writes a 300,000-line file while this process and `agenttally sessions`
    read the store: every read succeeds, sees whole batches only, and the ingest completes."""
    source, db = tmp_path / "big.jsonl", tmp_path / "shared.duckdb"
    n = 300_000
    _write_status_file(source, n)
    connect(db).close()
    # a short hold: batches of a fraction of a second however fast the machine ingests
    writer = subprocess.Popen([*AGENTTALLY, "ingest", "--db", str(db), str(source)], cwd=ROOT,
                              env={**os.environ, "AGENTTALLY_WRITE_HOLD_S": "0.15"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[tuple[int, int]] = []
    cli_reads = []
    while writer.poll() is None:
        con = connect(db, read_only=True, lock_timeout_s=60)
        try:
            seen.append(con.execute(
                "SELECT (SELECT count(*) FROM events), "
                "(SELECT coalesce(sum(lines), 0) FROM ingest_log)").fetchall()[0])
        finally:
            con.close()
        if len(seen) == 2:
            cli_reads.append(_cli("sessions", "--db", str(db), "--format", "csv"))
        time.sleep(0.05)
    out, err = writer.communicate()
    assert writer.returncode == 0, err
    assert out.decode().startswith(f"{source}: {n:,} lines: {n:,} new")
    during = [s for s in seen if 0 < s[0] < n]
    assert len(during) >= 2, seen  # readers got in between batches, mid-file
    assert all(events == lines for events, lines in seen)  # whole batches only
    assert [c[0] for c in seen] == sorted(c[0] for c in seen)
    assert all(r.returncode == 0 for r in cli_reads), [r.stderr for r in cli_reads]
    con = connect(db, read_only=True)
    assert _count(con, "events") == n
    con.close()


def test_a_writer_releases_the_store_between_batches_without_changing_the_result(tmp_path):
    """Same file, tiny hold (a release after every batch) or none: identical stores."""
    source = tmp_path / "f.jsonl"
    _write_status_file(source, 30_000, sessions=7)
    counts = []
    for hold in ("0.001", "86400"):
        db = tmp_path / f"s{hold}.duckdb"
        os.environ["AGENTTALLY_WRITE_HOLD_S"] = hold
        try:
            con = connect(db)
            result = ingest_path(con, source, batch_lines=10_000)
            con.execute("CREATE TEMP TABLE still_here AS SELECT 1")  # same connection
        finally:
            del os.environ["AGENTTALLY_WRITE_HOLD_S"]
        counts.append((result.new_events, _count(con, "events"),
                       con.sql("SELECT sum(hash(event_id, session_id, at_ms)) FROM events"
                               ).fetchall()[0][0]))
        con.close()
    assert counts[0] == counts[1] and counts[0][0] == 30_000


# 6. A killed ingest ----------------------------------------------------------------------

def test_an_ingest_killed_mid_file_shows_interrupted_and_a_rerun_loses_nothing(tmp_path):
    source, db = tmp_path / "big.jsonl", tmp_path / "killed.duckdb"
    n = 300_000
    _write_status_file(source, n)
    connect(db).close()
    writer = subprocess.Popen([*AGENTTALLY, "ingest", "--db", str(db), str(source)], cwd=ROOT,
                              env={**os.environ, "AGENTTALLY_WRITE_HOLD_S": "0.3"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    while committed == 0 and writer.poll() is None:
        time.sleep(0.05)
        con = connect(db, read_only=True, lock_timeout_s=60)
        committed = con.execute("SELECT coalesce(max(lines), 0) FROM ingest_log").fetchall()[0][0]
        con.close()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert committed > 0, "the ingest finished before it could be killed"

    con = connect(db, read_only=True)
    [run] = ingest_runs(con)
    stored = _count(con, "events")
    assert (run.state, run.finished_ms) == ("interrupted", None)
    assert 0 < stored < n and run.lines == run.new_events == stored  # whole batches only
    from reports.dashboard.status import data_status

    ingests = data_status(con, db)["ingests"]
    assert ingests[["ingest_id", "state", "lines"]].values.tolist() == [[1, "interrupted", stored]]
    con.close()

    con = connect(db)  # the next writer marks it so in the log
    rerun = ingest_path(con, source)
    assert (rerun.new_events, rerun.duplicates) == (n - stored, stored)
    assert con.sql("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == [
        (n, n)]
    assert con.sql("SELECT ingest_id, status FROM ingest_log ORDER BY ingest_id").fetchall() == [
        (1, "interrupted"), (2, "finished")]
    con.close()


def test_an_ingest_stopped_by_an_error_is_logged_as_failed(store):
    store.execute("DROP TABLE usage_snapshots")  # the batch's usage insert will fail
    with pytest.raises(Exception, match="usage_snapshots"):
        ingest_lines(store, [json.dumps(status("s", "e1", "2026-11-03T09:00:00Z", "idle"))],
                     source="broken.jsonl")
    [run] = ingest_runs(store)
    assert (run.state, run.lines, run.source) == ("failed", 0, "broken.jsonl")
    assert "usage_snapshots" in (run.error or "")


def test_a_failure_after_another_writer_logged_is_still_logged_as_failed(store, monkeypatch):
    """Another writer logs an ingest between two of this run's transactions: the next
    transaction opens a continuation row, and when it fails and rolls back (row included),
    the failure lands on the run's committed row, not on the row that was undone."""
    import meter.ingest as ingest_module

    lines = [json.dumps(status("s", f"e{i}", f"2026-11-03T09:00:0{i}Z",
                               "running" if i % 2 else "idle")) for i in range(6)]
    monkeypatch.setattr(ingest_module, "TRANSACTION_LINES", 2)  # each 2-line batch commits
    real, calls = ingest_module._apply_records, []

    def failing_third(con, ingest_id):
        calls.append(ingest_id)
        if len(calls) == 3:
            raise RuntimeError("disk full (simulated)")
        return real(con, ingest_id)

    def another_writer_logs(_lines):
        if len(calls) == 2:
            store.execute("INSERT INTO ingest_log (ingest_id, source, started_ms, finished_ms, "
                          "status, lines, new_events, duplicates, records, quarantined, "
                          "id_collisions) SELECT max(ingest_id) + 1, 'other', 0, 1, "
                          "'finished', 0, 0, 0, 0, 0, 0 FROM ingest_log")

    monkeypatch.setattr(ingest_module, "_apply_records", failing_third)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_lines(store, lines, source="mine", batch_lines=2, progress=another_writer_logs)
    runs = {run.source: run for run in ingest_runs(store)}
    assert (runs["mine"].state, runs["mine"].lines) == ("failed", 4)
    assert runs["mine"].error == "disk full (simulated)"
    assert store.execute("SELECT count(*) FROM events").fetchall() == [(4,)]


def test_runs_left_unfinished_by_an_older_version_read_as_interrupted(tmp_path):
    """A v4 store's ingest_log row without a finish is migrated to 'interrupted'."""
    db = tmp_path / "old.duckdb"
    con = connect(db)
    con.execute("INSERT INTO ingest_log (ingest_id, source, started_ms) VALUES (7, 'x', 1)")
    con.execute("DELETE FROM schema_version WHERE version >= 5")
    for column in ("status", "pid", "host", "heartbeat_ms", "id_collisions", "error"):
        con.execute(f"ALTER TABLE ingest_log DROP COLUMN {column}")
    assert [r.state for r in ingest_runs(con)] == ["interrupted"]  # read as an old store
    con.close()
    con = connect(db)
    assert con.sql("SELECT max(version) FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert con.sql("SELECT status FROM ingest_log").fetchall() == [("interrupted",)]
    con.close()
