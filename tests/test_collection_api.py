"""agenttally.collect and agenttally.emulator: the collector and the emulator behind the
`collect` and `emulate` verbs, run for real on 127.0.0.1."""

from __future__ import annotations

import pytest

import agenttally
from agenttally.cli import main
from meter.emulator import EmulatorServer, Faults
from meter.emulator.app import BETA
from meter.store import open_store

KEY = "sk-ant-test-collection-api-key"  # a key the global log redactor may hide


@pytest.fixture
def sample_server():
    emulator = agenttally.emulator(speed=None, api_key=KEY, ping_interval_s=0.2)
    with EmulatorServer(emulator.app) as server:
        yield emulator, server


def test_the_sample_emulator_replays_the_day_with_the_books_list_cost():
    emulator = agenttally.emulator(speed=None)
    assert emulator.source == "built-in sample day"
    assert len(emulator.replay.sessions) == 24 and emulator.replay.total_events > 24
    assert emulator.replay.skipped == 0


def test_collect_once_stores_the_day_and_rates_it_unless_told_not_to(sample_server, tmp_path,
                                                                     monkeypatch):
    emulator, server = sample_server
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    rated, unrated = tmp_path / "rated.duckdb", tmp_path / "unrated.duckdb"
    stats = agenttally.collect(rated, base_url=server.url, once=True)
    assert stats.stored == emulator.replay.total_events
    agenttally.collect(unrated, base_url=server.url, once=True, rate=False)
    with open_store(rated, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM rating_runs").fetchall()[0][0] >= 1
        assert con.execute("SELECT count(*) FROM main.charges").fetchall()[0][0] > 0
    with open_store(unrated, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == stats.stored
        assert con.execute("SELECT count(*) FROM rating_runs").fetchall()[0][0] == 0


def test_webhooks_without_a_secret_are_a_usage_error(tmp_path):
    with pytest.raises(agenttally.UsageError, match="webhook_secret"):
        agenttally.collect(tmp_path / "s.duckdb", base_url="http://127.0.0.1:9",
                           webhook_listen=("127.0.0.1", 0))


def test_a_missing_events_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(agenttally.UsageError, match="nope.jsonl: no such file"):
        agenttally.emulator(missing)
    assert main(["emulate", "--events", str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert main(["emulate", "--sample", "--fault", "drop"]) == 2
    assert "--fault 'drop': expected name=value" in capsys.readouterr().err


def test_faults_reach_the_served_api(tmp_path):
    emulator = agenttally.emulator(speed=None, faults=Faults.parse("429=1"), api_key=KEY)
    with EmulatorServer(emulator.app) as server:
        import httpx
        headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "anthropic-beta": BETA}
        first = httpx.get(server.url + "/v1/sessions", headers=headers)
    assert first.status_code == 429 and "retry-after" in first.headers
