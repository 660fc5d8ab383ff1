"""Profiles: the shipped ones load and have the promised sizes; bad ones fail clearly.
The `simulate` command and `seed_demo`."""

from __future__ import annotations

import json
import time
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from agenttally import cli
from agenttally._simulation import build_simulation, seed_demo
from agenttally.cli.simulate import main as simulate_main
from meter.simulator import ProfileError, load_profile, parse_profile
from meter.store import connect
from tests.meter.test_simulator import TINY

PROFILES = Path(__file__).resolve().parents[2] / "data" / "profiles"


@pytest.mark.parametrize("name", ["demo", "midsize", "large"])
def test_shipped_profiles_load_and_are_priced_by_the_current_book(name):
    sim = build_simulation(PROFILES / f"{name}.toml", start=date(2026, 10, 1), days=60,
                           seed=7)
    assert sim.n_sessions > 0
    assert sim.profile.incidents, "every shipped profile shows the three kinds of incident"
    assert {i.type for i in sim.profile.incidents} == {"runaway", "burst", "model_switch"}


def test_demo_is_a_small_team_and_large_a_fleet_of_ten_million_events_a_month():
    demo = build_simulation(PROFILES / "demo.toml", start=date(2026, 10, 5), days=7, seed=7)
    assert 100 <= demo.n_sessions / 7 <= 1000
    large = build_simulation(PROFILES / "large.toml", start=date(2026, 10, 5), days=7, seed=7)
    weekday = large.day(2)  # a Wednesday; weekends are quieter, so scale by the week below
    per_week = large.n_sessions / len(large.sessions_per_day)
    events_per_session = weekday.n_events / len(weekday.sessions["sess"])
    assert per_week * events_per_session * 30 >= 10_000_000


def _error(text: str) -> str:
    with pytest.raises(ProfileError) as caught:
        parse_profile(tomllib.loads(text), source="tiny.toml")
    return str(caught.value)


def test_an_unknown_agent_in_a_project_is_named_with_its_place_and_the_choices():
    message = _error(TINY.replace('agents = ["lead", "helper"]', 'agents = ["lead", "nobody"]'))
    assert message.startswith("tiny.toml: teams[1].projects[0].agents[1]: unknown agent "
                              "'nobody'; defined: ")
    assert "coder" in message


def test_unknown_keys_wrong_types_and_bad_incidents_name_the_field():
    assert "tiny.toml: agents[0].modle: unknown key" in _error(
        TINY.replace('model = "claude-sonnet-5-5"\nenvironment = "env-a"\ntools = ["bash", '
                     '"read", "edit", "web_search"]',
                     'modle = "x"\nmodel = "claude-sonnet-5-5"\nenvironment = "env-a"'))
    assert "tiny.toml: teams[0].sessions_per_day: " in _error(
        TINY.replace("sessions_per_day = 40", 'sessions_per_day = "many"'))
    assert "tiny.toml: incidents[0]: give exactly one of `at`" in _error(
        TINY.replace("after_days = 1.25", 'after_days = 1.25\nat = "2026-10-06"'))
    assert "tiny.toml: behaviors.coding: exhausted_share + terminal_share" in _error(
        TINY.replace("exhausted_share = 0.2", "exhausted_share = 0.95"))
    assert "speed: Input should be 'standard' or 'fast'" in _error(
        TINY.replace('speed = "fast"', 'speed = "ludicrous"'))


def test_a_profile_file_that_is_missing_or_not_toml_says_so(tmp_path):
    with pytest.raises(ProfileError, match="no such profile"):
        load_profile(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ProfileError, match="bad.toml: not valid TOML"):
        load_profile(bad)


def test_the_simulate_command_writes_jsonl_or_a_store(tmp_path, capsys):
    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY)
    out = tmp_path / "out.jsonl"
    args = ["simulate", "--profile", str(profile), "--start", "2026-10-05", "--days", "1",
            "--seed", "3"]
    assert simulate_main([*args, "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "environment"
    assert "tiny: " in capsys.readouterr().out
    db = tmp_path / "s.duckdb"
    assert simulate_main([*args, "--into", str(db)]) == 0
    con = connect(db)
    events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    con.close()
    assert events == sum(1 for line in lines if '"session_id"' in line)


def test_the_cli_registers_simulate_and_reports_a_bad_profile_in_one_line(tmp_path, capsys):
    profile = tmp_path / "broken.toml"
    profile.write_text(TINY.replace('agents = ["lead", "helper"]', 'agents = ["ghost"]'))
    code = cli.main(["simulate", "--profile", str(profile), "--days", "1",
                     "--out", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert code == 2  # a malformed profile is malformed input
    assert err.startswith("agenttally simulate: ") and "unknown agent 'ghost'" in err


def test_seed_demo_fills_a_store_up_to_now_and_never_beyond(tmp_path):
    con = connect(tmp_path / "demo.duckdb")
    result = seed_demo(con, days=2)
    now = int(time.time() * 1000)
    assert result.sessions > 100 and result.events > 10_000
    latest = con.execute("SELECT max(at_ms) FROM events").fetchall()[0][0]
    assert latest <= now
    first = con.execute("SELECT min(created_ms) FROM sessions").fetchall()[0][0]
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert datetime.fromtimestamp(first / 1000, UTC).date() == yesterday
    assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 0
    assert con.execute("SELECT source FROM ingest_log").fetchall()[0][0].startswith(
        "simulate:demo:seed=7:")


def test_a_window_before_a_model_existed_is_refused():
    """The demo's 5.5 models are not in the book in force before 2026-08-07."""
    with pytest.raises(ValueError, match=r"model 'claude-\S+-5-5' has no price in price book "
                                         r"anthropic-list 2026-04-08"):
        build_simulation(PROFILES / "demo.toml", start=date(2026, 7, 1), days=10, seed=7)
