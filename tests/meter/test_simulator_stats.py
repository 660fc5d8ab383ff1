"""A seeded run matches its profile: session length, running share, weekly and daily cycles,
growth, cache hit rate and searches per session, within tolerance.

Eight weeks of 400 sessions a day (about 22,000 sessions, 1.8M events) are generated in
memory (no writing), so the sampling error of each statistic is well under the 5% tolerance.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from agenttally._simulation import schedule_for
from meter.simulator import Simulation, parse_profile

START = date(2026, 9, 7)  # a Monday
DAYS = 56
STATS = """
name = "stats"
[calendar]
weekly = [1.15, 1.2, 1.2, 1.15, 1.0, 0.35, 0.3]
growth_per_month = 0.0
daily_noise = 0.05

[behaviors.steady]
turns_mean = 3
running_s = { median = 40, sigma = 0.8 }
idle_s = { median = 120, sigma = 1.0 }
long_share = 0.0
seconds_per_request = 10
cache_hit_rate = 0.7
searches_per_request = 0.2
requires_action_share = 0.1
error_rate = 0.0

[[environments]]
name = "env"

[[agents]]
name = "worker"
model = "claude-sonnet-5-5"
environment = "env"
tools = ["bash", "web_search"]
behavior = "steady"

[[teams]]
name = "team"
cost_center = "CC"
sessions_per_day = 400
  [[teams.projects]]
  name = "p"
  agents = ["worker"]
"""


def lognormal_mean(median: float, sigma: float) -> float:
    return median * math.exp(sigma**2 / 2)


def run(text: str = STATS, days: int = DAYS) -> tuple[Simulation, list]:
    profile = parse_profile(tomllib.loads(text), source="stats.toml")
    begin = int(datetime(START.year, START.month, START.day, tzinfo=UTC).timestamp() * 1000)
    sim = Simulation(profile, schedule_for(begin, begin + (days + 7) * 86_400_000),
                     start=START, days=days, seed=11)
    return sim, list(sim.batches())


@pytest.fixture(scope="module")
def observed() -> dict[str, float]:
    sim, batches = run()
    running = {"n": 0, "turns": 0}
    active, searches, length, sessions = [], [], [], []
    read = prompt = 0
    for b in batches:
        ev = b.events
        n = len(b.sessions["sess"])
        first = int(b.sessions["sess"][0])
        turns = np.bincount(ev["running"]["sess"] - first, minlength=n)
        running["n"] += n
        running["turns"] += int(turns.sum())
        # The last snapshot of each session: cumulative running time and searches.
        usage = ev["usage"]
        last = np.r_[usage["sess"][1:] != usage["sess"][:-1], True]
        active.append(usage["active_ms"][last])
        searches.append(usage["searches"][last])
        start = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(start, ev["running"]["sess"] - first, ev["running"]["at_ms"])
        end = np.zeros(n, dtype=np.int64)
        np.maximum.at(end, ev["idle"]["sess"] - first, ev["idle"]["at_ms"])
        length.append(end - start)
        req = ev["request_end"]
        read += int(req["cache_read"].sum())
        prompt += int((req["input"] + req["cache_read"] + req["cache_write"]).sum())
        sessions.append(b.sessions["created"])
    created = np.concatenate(sessions)
    weekday = (created // 86_400_000 + 3) % 7  # 1970-01-01 was a Thursday
    hour = (created // 3_600_000) % 24
    days = np.bincount(created // 86_400_000 - created.min() // 86_400_000)
    day_weekday = (np.arange(len(days)) + START.weekday()) % 7
    active_ms = np.concatenate(active)
    length_ms = np.concatenate(length)
    return {
        "turns": running["turns"] / running["n"],
        "running_s": active_ms.mean() / 1000,
        "length_s": length_ms.mean() / 1000,
        "running_share": active_ms.sum() / length_ms.sum(),
        "searches": np.concatenate(searches).mean(),
        "cache_hit": read / prompt,
        "weekday_per_weekend": days[day_weekday < 5].mean() / days[day_weekday >= 5].mean(),
        "office_hours": ((hour >= 9) & (hour < 17)).mean(),
        "weekdays_seen": float(len(np.unique(weekday))),
    }


# What the profile implies.
TURNS = 3.0
RUN_S = lognormal_mean(40, 0.8)
IDLE_S = lognormal_mean(120, 1.0)
REQUESTS_PER_TURN = 1 + RUN_S / 10


def close(value: float, expected: float, rel: float = 0.05) -> bool:
    return abs(value - expected) <= rel * abs(expected)


def test_mean_turns_and_running_time_per_session_match_the_profile(observed):
    assert close(observed["turns"], TURNS), observed["turns"]
    assert close(observed["running_s"], TURNS * RUN_S), observed["running_s"]


def test_mean_session_length_and_running_share_match_the_profile(observed):
    length = TURNS * RUN_S + (TURNS - 1) * IDLE_S
    assert close(observed["length_s"], length), (observed["length_s"], length)
    assert close(observed["running_share"], TURNS * RUN_S / length), observed["running_share"]


def test_weekday_to_weekend_ratio_matches_the_weekly_cycle(observed):
    weekly = [1.15, 1.2, 1.2, 1.15, 1.0, 0.35, 0.3]
    expected = np.mean(weekly[:5]) / np.mean(weekly[5:])
    assert close(observed["weekday_per_weekend"], expected), observed["weekday_per_weekend"]
    assert observed["weekdays_seen"] == 7


def test_the_daily_cycle_puts_office_hours_where_the_profile_does(observed):
    from meter.simulator.profile import Calendar

    hourly = np.array(Calendar().hourly)
    expected = hourly[9:17].sum() / hourly.sum()
    assert close(observed["office_hours"], expected), observed["office_hours"]


def test_cache_hit_rate_matches_the_profile(observed):
    assert abs(observed["cache_hit"] - 0.7) < 0.01, observed["cache_hit"]


def test_searches_per_session_match_the_profile(observed):
    expected = TURNS * REQUESTS_PER_TURN * 0.2
    assert close(observed["searches"], expected), (observed["searches"], expected)


def test_monthly_growth_compounds():
    sim, batches = run(STATS.replace("growth_per_month = 0.0", "growth_per_month = 0.5")
                       .replace("daily_noise = 0.05", "daily_noise = 0.0"), days=56)
    per_day = np.array([len(b.sessions["sess"]) for b in batches], dtype=float)
    first, last = per_day[:14].sum(), per_day[-14:].sum()  # same weekdays in both
    expected = 1.5 ** (42 / 30.4375)
    assert close(last / first, expected, rel=0.08), (last / first, expected)
    assert sim.start + timedelta(days=55) == batches[-1].day
