"""Regime changes in a profile: a team that joins mid-run, a holiday dip, a scaled-down fleet,
and the shipped profiles that use them (issue 19's evaluation fleets)."""

from __future__ import annotations

import hashlib
import tomllib
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from agenttally._simulation import build_simulation
from agenttally.cli.simulate import EXAMPLES
from agenttally.cli.simulate import main as simulate_main
from meter.errors import UsageError
from meter.simulator import ProfileError, parse_profile, run_tag
from meter.simulator.writers import write_jsonl
from tests.meter.test_simulator import START, TINY, simulation

PROFILES = Path(__file__).resolve().parents[2] / "data" / "profiles"
BETA = 'utc_offset_hours = 9\n'  # a line of team beta (the second team) in TINY
HOLIDAY = '\n[[incidents]]\ntype = "holiday"\n'


def _error(text: str) -> str:
    with pytest.raises(ProfileError) as caught:
        parse_profile(tomllib.loads(text), source="tiny.toml")
    return str(caught.value)


def _busy(text: str) -> str:
    """TINY with far more sessions, so that arrival counts are close to their means."""
    return text.replace("sessions_per_day = 40", "sessions_per_day = 40000") \
        .replace("sessions_per_day = 25", "sessions_per_day = 25000")


# --- a team that starts mid-run ------------------------------------------------------


def test_a_team_that_starts_after_some_days_has_no_sessions_before_then():
    sim = simulation(days=6, text=TINY.replace(BETA, BETA + "starts_after_days = 2.5\n"))
    beta, alpha = sim.hour_counts[1], sim.hour_counts[0]
    assert beta[:60].sum() == 0  # hours 0..59: before day 2.5
    assert beta[60:].sum() > 0 and alpha[:60].sum() > 0
    first = int(sim.start_ms + 60 * 3_600_000)
    days = [sim.day(d).sessions for d in range(3)]
    beta_agents = {sim.profile.agent_index(n) for n in ("lead", "helper")}
    for s in days:
        early = s["created"] < first
        assert not np.isin(s["agent"][early], list(beta_agents)).any()


def test_a_start_inside_an_hour_waits_for_the_next_whole_hour_and_starts_at_is_a_moment():
    sim = simulation(days=3, text=_busy(TINY.replace(
        BETA, BETA + 'starts_at = "2026-10-06T10:30:00Z"\n')))
    beta = sim.hour_counts[1]
    assert beta[:35].sum() == 0 and beta[35] > 0  # 10:30 on day 1: from hour 24 + 11


def test_a_ramp_reaches_the_full_rate_linearly_over_ramp_days():
    text = _busy(TINY.replace(BETA, BETA + "starts_after_days = 1\nramp_days = 2\n"))
    ramped = simulation(days=5, text=text).hour_counts[1]
    steady = simulation(days=5, text=_busy(TINY)).hour_counts[1]
    assert ramped[:24].sum() == 0
    # hour 24 has 1/48 of the full rate, hour 25 2/48, ..., hour 71 and later all of it
    share = np.clip((np.arange(5 * 24) - 23) / 48, 0, 1)
    for day in range(1, 5):
        part = slice(24 * day, 24 * (day + 1))
        expected = (steady[part] * share[part]).sum()
        assert ramped[part].sum() == pytest.approx(expected, rel=0.05)
    assert (ramped[72:] == steady[72:]).all()  # at full rate the draws are the same


def test_a_bad_team_start_names_the_field_and_the_fix():
    assert "tiny.toml: teams[1]: give at most one of `starts_at`" in _error(
        TINY.replace(BETA, BETA + 'starts_after_days = 1\nstarts_at = "2026-10-06"\n'))
    assert "tiny.toml: teams[1]: ramp_days: the ramp begins when the team starts; give " \
           "`starts_after_days` or `starts_at` too" in _error(
               TINY.replace(BETA, BETA + "ramp_days = 3\n"))
    assert "tiny.toml: teams[1].starts_after_days: Input should be greater than or equal " \
           "to 0" in _error(TINY.replace(BETA, BETA + "starts_after_days = -1\n"))


# --- holidays ------------------------------------------------------------------------


def test_a_holiday_scales_arrivals_in_its_window_and_nowhere_else():
    text = _busy(TINY) + HOLIDAY + "after_days = 1\ndays = 2\nmultiplier = 0.2\n"
    dipped = simulation(days=5, text=text).hour_counts.sum(axis=0)
    usual = simulation(days=5, text=_busy(TINY)).hour_counts.sum(axis=0)
    assert (dipped[:24] == usual[:24]).all() and (dipped[72:] == usual[72:]).all()
    assert dipped[24:72].sum() / usual[24:72].sum() == pytest.approx(0.2, rel=0.05)


def test_a_holiday_of_one_team_at_multiplier_zero_stops_only_that_teams_sessions():
    text = TINY + HOLIDAY + 'team = "alpha"\nat = "2026-10-06"\ndays = 1.5\nmultiplier = 0\n'
    sim = simulation(days=4, text=text)
    alpha, beta = sim.hour_counts
    assert alpha[24:60].sum() == 0 and alpha[:24].sum() > 0 and alpha[60:].sum() > 0
    assert beta[24:60].sum() > 0


def test_a_bad_holiday_names_the_field():
    assert "tiny.toml: incidents[3].multiplier: Input should be less than or equal to 1" \
        in _error(TINY + HOLIDAY + "after_days = 1\nmultiplier = 1.5\n")
    assert "tiny.toml: incidents[3].team: unknown team 'gamma'; defined: alpha, beta" in _error(
        TINY + HOLIDAY + 'after_days = 1\nteam = "gamma"\n')
    assert "tiny.toml: incidents[3]: give exactly one of `at`" in _error(TINY + HOLIDAY)
    assert "unknown incident type 'vacation'; expected runaway, burst, holiday or " \
           "model_switch" in _error(TINY + '\n[[incidents]]\ntype = "vacation"\n')


# --- scale ---------------------------------------------------------------------------


def test_a_scaled_run_draws_that_share_of_the_sessions_and_is_another_run():
    full = simulation(days=4, text=_busy(TINY))
    tenth = simulation(days=4, text=_busy(TINY), scale=0.1)
    assert tenth.n_sessions / full.n_sessions == pytest.approx(0.1, rel=0.03)
    assert full.tag == run_tag("tiny", 7, START, 4)  # scale 1: the tag runs always had
    assert tenth.tag != full.tag
    with pytest.raises(ValueError, match="scale must be a number > 0, got 0"):
        simulation(scale=0)


def test_a_scaled_run_is_reproducible_byte_for_byte(tmp_path):
    a, b, c = (tmp_path / f"{n}.jsonl" for n in "abc")
    write_jsonl(a, simulation(days=2, scale=0.5))
    write_jsonl(b, simulation(days=2, scale=0.5))
    write_jsonl(c, simulation(days=2, scale=0.6))
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b, c)]
    assert digest[0] == digest[1] != digest[2]


def test_the_simulate_command_takes_a_scale(tmp_path, capsys):
    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY)
    args = ["simulate", "--profile", str(profile), "--start", "2026-10-05", "--days", "1"]
    assert simulate_main([*args, "--scale", "0.5", "--out", str(tmp_path / "x.jsonl")]) == 0
    assert "seed 7, scale 0.5) -> " in capsys.readouterr().out
    with pytest.raises(UsageError, match="--scale must be a number > 0"):
        simulate_main([*args, "--scale", "-1", "--out", str(tmp_path / "y.jsonl")])
    assert "--scale 0.05" in EXAMPLES


# --- the shipped regime profiles -----------------------------------------------------

REGIMES = {
    "onboarding": lambda p: any(t.starts_after_days or t.starts_at for t in p.teams),
    "migration": lambda p: any(i.type == "model_switch" and i.model.startswith("claude-sonnet")
                               and p.agents[p.agent_index(i.agent)].model.startswith(
                                   "claude-opus") for i in p.incidents),
    "holiday": lambda p: any(i.type == "holiday" for i in p.incidents),
    "runaway": lambda p: {"runaway", "burst"} <= {i.type for i in p.incidents},
}


@pytest.mark.parametrize("name", sorted(REGIMES))
def test_the_regime_profiles_load_are_priced_and_show_their_regime(name):
    sim = build_simulation(PROFILES / f"{name}.toml", start=date(2026, 8, 10), days=150,
                           seed=7, scale=0.1)
    assert sim.n_sessions > 0
    assert REGIMES[name](sim.profile)
