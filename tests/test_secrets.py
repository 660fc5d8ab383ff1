"""The API key never leaks: every byte AgentTally writes is scanned for recognisable secrets.

The CLI runs as real processes (`python -m agenttally.cli`) against the emulator on 127.0.0.1,
with a fake key in ANTHROPIC_API_KEY and two more written into `--base-url` (one as the
URL's userinfo, one as an `api_key` query parameter), in every way a user may run it: a
collection that succeeds, one whose key the API refuses, one with a malformed URL, and a
file ingest with the key in the environment. Afterwards stdout, stderr (the logs, kept as
files), every file in the run's folder (the store, its WAL, anything else) and every row of
every table of the store are searched for each secret and for the marker all three share.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meter.emulator import EmulatorServer, Replay, create_app, sample_day, write_jsonl
from meter.store import open_store

ROOT = Path(__file__).resolve().parents[1]
MARKER = "LEAKCHECK"  # in every secret below, so that even a part of one is found
ENV_KEY = f"sk-ant-api03-{MARKER}-env-key-7Hq2xV9pL0aZ"
URL_USER_KEY = f"sk-ant-api03-{MARKER}-userinfo-key-Qm4w"
URL_QUERY_KEY = f"{MARKER}-query-token-c81f5e0b"  # not shaped like an Anthropic key
WRONG_KEY = f"sk-ant-api03-{MARKER}-refused-key-00x1"
SECRETS = (ENV_KEY, URL_USER_KEY, URL_QUERY_KEY, WRONG_KEY, MARKER)
DAY = sample_day(sessions=6, seed=5)


@pytest.fixture(scope="module")
def api():
    server = EmulatorServer(create_app(Replay.from_lines(DAY, speed=None), api_key=ENV_KEY))
    yield server.start()
    server.stop()


def _run(folder: Path, name: str, args: list[str], *, key: str) -> subprocess.CompletedProcess:
    """One CLI run with `key` in the environment; its stdout and stderr kept as log files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENTTALLY_"))}
    env.update(ANTHROPIC_API_KEY=key, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "agenttally.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    (folder / f"{name}.stdout.log").write_text(done.stdout)
    (folder / f"{name}.stderr.log").write_text(done.stderr)
    return done


def _leaks_in_store(db: Path) -> list[str]:
    found = []
    with open_store(db, read_only=True) as con:
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            text = str(con.execute(f'SELECT * FROM "{table}"').fetchall())
            found += [f"table {table}: {s}" for s in SECRETS if s in text]
    return found


def test_no_secret_reaches_output_logs_files_or_the_store(api, tmp_path):
    """~6 s: four CLI processes (each pays Python's and the CLI's start-up)."""
    db = tmp_path / "store.duckdb"
    host = api.url.removeprefix("http://")
    keyed_url = f"http://ops:{URL_USER_KEY}@{host}/?api_key={URL_QUERY_KEY}"
    collect = ["collect", "--db", str(db), "--once", "--read-rpm", "60000", "-v"]

    ok = _run(tmp_path, "collect", [*collect, "--base-url", keyed_url], key=ENV_KEY)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{sum(1 for x in DAY if x['type'] != 'session'):,} new events")
    assert f"collecting from http://[REDACTED]@{host}/?api_key=[REDACTED]" in ok.stderr

    refused = _run(tmp_path, "refused", [*collect, "--base-url", keyed_url], key=WRONG_KEY)
    assert refused.returncode == 1 and "HTTP 401 authentication_error" in refused.stderr

    malformed = _run(tmp_path, "malformed",
                     [*collect, "--base-url", f"http://ops:{URL_USER_KEY}@{host}:x/"],
                     key=ENV_KEY)
    assert malformed.returncode == 1
    assert "base URL 'http://[REDACTED]@" in malformed.stderr

    day = write_jsonl(DAY, tmp_path / "day.jsonl")
    ingested = _run(tmp_path, "ingest", ["ingest", "--db", str(db), str(day)], key=ENV_KEY)
    assert ingested.returncode == 0 and "0 new" in ingested.stdout  # collected already

    leaks = [f"{path.name}: {s}" for path in sorted(tmp_path.iterdir()) if path.is_file()
             and path != day for s in SECRETS if s.encode() in path.read_bytes()]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".log") == sorted(
        f"{run}.{stream}.log" for run in ("collect", "refused", "malformed", "ingest")
        for stream in ("stdout", "stderr"))
    assert leaks == []
    assert _leaks_in_store(db) == []
