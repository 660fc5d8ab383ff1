"""`kill -9` during `agenttally collect`, again and again: nothing lost, nothing doubled.

The emulator (meter/emulator, real HTTP on 127.0.0.1, in this process) replays a simulated day
live, with dropped streams and duplicated events, while the collector CLI runs as a process of
its own: it is killed with SIGKILL at a seeded random moment after it stored a batch (in the
middle of a stream, a back-fill, a flush or the rating that follows one), restarted, killed
again, until the day has been served; a last run then follows it to the end and is stopped
with SIGTERM. The store must hold every event the emulator served exactly once, in every
table exactly as a direct ingest of the same day, and a ledger equal to a full rating.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meter.emulator import EmulatorServer, Faults, Replay, create_app, sample_day, write_jsonl
from meter.ingest import ingest_path
from meter.store import open_store
from meter.vocabulary import parse_api_time
from tests.conftest import stored_tables as _tables

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-ant-api03-reliability-kill-loop-0123456789"
DAY = sample_day(sessions=40, seed=11)
EVENT_IDS = {x["id"] for x in DAY if x["type"] != "session"}
START_MS = min(parse_api_time(x["created_at"]) for x in DAY if x["type"] == "session")
END_MS = max(parse_api_time(x["processed_at"]) for x in DAY if x["type"] != "session")
REPLAY_S = 16.0  # the day is served live over this much wall time
MAX_KILLS = 8
FLUSHED = re.compile(r"flushed \d+ lines: [1-9][\d,]* new")


class _Collector:
    """`python -m agenttally.cli collect` against `url`, its stderr read line by line."""

    def __init__(self, url: str, db: Path):
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agenttally.cli", "collect", "--db", str(db), "--base-url",
             url, "--poll-interval", "0.1", "--sweep-interval", "0.5", "--flush-interval",
             "0.2", "--heartbeat-timeout", "1", "--read-rpm", "60000", "--max-streams", "8",
             "-v"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr),
                                        daemon=True)
        self._reader.start()

    def wait_for_a_stored_batch(self, timeout_s: float) -> bool:
        """Until the run logs a batch with new events (False if none came in time: near the
        end of the day a restarted run may find nothing new)."""
        deadline = time.monotonic() + timeout_s
        while not any(FLUSHED.search(line) for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def wait_for_line(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.02)

    def stop(self, sig: int) -> str:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self._reader.join(5)
        return "".join(self.lines) + (self.proc.stdout.read() if self.proc.stdout else "")


@pytest.mark.slow
def test_kill_9_again_and_again_during_collect_loses_and_doubles_nothing(tmp_path):
    """~25-35 s, the reliability suite's longest test: the day is replayed over 16 s so that
    the kills fall in live collection, and every restart pays a Python and CLI start-up
    (~1.5 s). Up to 8 kills; seeded, so a failure replays the same schedule."""
    rng = random.Random(18)
    faults = Faults.parse("drop=12,dup=9")  # a stream lives ~1 s under load: drop it sooner
    replay = Replay.from_lines(DAY, speed=(END_MS - START_MS) / (REPLAY_S * 1000))
    server = EmulatorServer(create_app(replay, api_key=KEY, faults=faults,
                                       ping_interval_s=0.2)).start()
    db = tmp_path / "killed.duckdb"
    direct = tmp_path / "direct.duckdb"
    with open_store(direct) as con:
        ingest_path(con, write_jsonl(DAY, tmp_path / "day.jsonl"))
    expected = _tables(direct)
    kills, after_a_batch, logs = 0, 0, []
    try:
        while kills < MAX_KILLS and not replay.done:
            run = _Collector(server.url, db)
            try:
                after_a_batch += run.wait_for_a_stored_batch(timeout_s=6)
                time.sleep(rng.uniform(0.0, 1.2))  # within a stream, a flush or a rating
            except BaseException:
                run.proc.kill()
                raise
            logs.append(run.stop(signal.SIGKILL))
            assert run.proc.returncode == -signal.SIGKILL, logs[-1]
            kills += 1
        last = _Collector(server.url, db)
        last.wait_for_line("collecting from", timeout_s=20)
        time.sleep(1.5)  # its first sweep (and its SIGTERM handler) before anything else
        deadline = time.monotonic() + 30  # the rest of the day, then the store as expected
        while not (replay.done and _tables(db) == expected) and time.monotonic() < deadline:
            assert last.proc.poll() is None, "".join(last.lines)
            time.sleep(0.5)  # (the collector keeps a batch while this reads, and retries)
        logs.append(last.stop(signal.SIGTERM))
        assert last.proc.returncode == 0, logs[-1]
    finally:
        server.stop()

    with open_store(db, read_only=True) as con:
        stored = con.execute("SELECT event_id FROM events").fetchall()
    lost = EVENT_IDS - {r[0] for r in stored}
    doubled = len(stored) - len({r[0] for r in stored})
    assert kills >= 4 and after_a_batch >= 3, "the day should last for several kills"
    assert (sorted(lost), doubled) == ([], 0)
    assert _tables(db) == expected  # every table, row for row: none lost or doubled
    assert faults.injected["drop"] > 0 and faults.injected["dup"] > 0
    assert all(KEY not in text for text in logs)
    _assert_ledger_is_a_full_rating(db)
    print(f"\nkill -9 loop: {kills} kills survived ({after_a_batch} after a stored batch), "
          f"{len(EVENT_IDS)} events served, {len(lost)} lost, {doubled} doubled")


def _assert_ledger_is_a_full_rating(db: Path) -> None:
    """Kills in the middle of the rating after a flush leave a ledger that, brought up to
    date, equals rating everything again."""
    from pricing.ledger import bring_up_to_date
    from pricing.pricebook import load_pricebooks
    from pricing.rating import RatingOptions, rate

    books = load_pricebooks()
    with open_store(db) as con:
        as_of = con.execute("SELECT max(as_of_ms) FROM rating_runs").fetchall()[0][0]
        assert as_of is not None, "the collector never rated"
        bring_up_to_date(con, books, RatingOptions(as_of_ms=as_of))
        ledger = con.execute("SELECT * FROM main.charges ORDER BY ALL").fetchall()
        rate(con, books, RatingOptions(as_of_ms=as_of))
        assert ledger and ledger == con.execute(
            "SELECT * FROM temp.main.charges ORDER BY ALL").fetchall()
