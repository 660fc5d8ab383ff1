"""A simulation run: a profile, rates and a window of days, generated one day at a time.

Arrivals for the whole window are drawn first (a team's rate with weekly and daily cycles,
monthly growth, day-to-day noise, bursts, holidays and a late start, times the run's scale),
so every session gets its number before any day is generated. Each day then draws from its
own seeded stream: a run is reproducible byte for byte, and a day does not depend on how
many days follow it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from meter.simulator._arrays import offsets
from meter.simulator.events import AGENT_TEXTS, SESSION_STATUS_KINDS, TITLES, USER_TEXTS, emit
from meter.simulator.fleet import Fleet, utc_ms
from meter.simulator.ids import MAX_SESSIONS, TAG_LENGTH
from meter.simulator.profile import Burst, Holiday, Profile, Runaway, Team
from meter.simulator.rates import CompiledRates, RateCard, RateSchedule
from meter.simulator.timeline import MS_PER_DAY, MS_PER_HOUR, DayPlan, plan_day

__all__ = ["Batch", "Simulation", "run_tag", "stable_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def _base32(data: bytes, length: int) -> str:
    value = int.from_bytes(data, "big")
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in range(length))


def run_tag(profile_name: str, seed: int, start: date, days: int, scale: float = 1.0) -> str:
    """Five characters naming one run, so that ids of two different runs do not collide;
    the same run gets the same tag, so writing it twice finds only duplicates. A run at
    another ``scale`` is another run (the tag of scale 1 is the one runs always had)."""
    key = f"{profile_name}|{seed}|{start.isoformat()}|{days}"
    if scale != 1.0:
        key += f"|x{scale!r}"
    return _base32(hashlib.sha256(key.encode()).digest()[:8], TAG_LENGTH)


def stable_id(prefix: str, *parts: str) -> str:
    """An id that depends only on `parts` (agents and environments outlive runs)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return f"{prefix}_01{_base32(digest[:16], 22)}"


@dataclass
class Batch:
    """One simulated day: event columns per kind and the day's session records."""

    day: date
    events: dict[str, dict[str, np.ndarray]]
    sessions: dict[str, np.ndarray]
    n_events: int
    plan: DayPlan | None = None  # the day's turns and requests (keep_plan=True), to inspect


class Simulation:
    """Iterate :meth:`batches` for the events of ``days`` days from ``start`` (UTC).

    ``rates`` is a :class:`RateCard` or a :class:`RateSchedule` (cards by the instant they
    take effect). ``as_of_ms`` cuts the run at an instant: later events are not emitted and
    sessions show their status as of then (a store seeded "up to now"). ``scale`` multiplies
    every team's arrival rate (0.05: a twentieth of the fleet, for cheap evaluation runs);
    the sessions themselves, and the runaway incidents, are unchanged.
    """

    def __init__(self, profile: Profile, rates: RateCard | RateSchedule, *, start: date,
                 days: int, seed: int, as_of_ms: int | None = None, keep_plan: bool = False,
                 scale: float = 1.0):
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a number > 0, got {scale}")
        self.profile = profile
        self.schedule = RateSchedule.of(rates)
        self.start, self.days, self.seed, self.scale = start, days, seed, scale
        self.as_of_ms = as_of_ms
        self.keep_plan = keep_plan
        self.start_dt = datetime(start.year, start.month, start.day, tzinfo=UTC)
        self.start_ms = utc_ms(self.start_dt)
        self.end_ms = self.start_ms + days * MS_PER_DAY
        self.tag = run_tag(profile.name, seed, start, days, scale)
        self.fleet = Fleet(profile, self.start_dt)
        self.rates = CompiledRates.compile(self.schedule, self.fleet.model_ids)
        self.rates.require_window_priced(self.fleet.model_ids, self.start_ms, self.end_ms)
        self._arrivals()

    # --- arrivals ------------------------------------------------------------------------

    def _stream(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, *key]))

    def _arrivals(self) -> None:
        """Sessions per (team, UTC hour) over the window, and the runaway sessions.

        Each (team, day) draws from its own stream, so that a day's arrivals do not depend on
        the length of the window.
        """
        p, cal = self.profile, self.profile.calendar
        hours = np.arange(self.days * 24, dtype=np.int64)
        weekly = np.array(cal.weekly) / np.mean(cal.weekly)
        hourly = np.array(cal.hourly) / np.mean(cal.hourly)
        growth = (1.0 + cal.growth_per_month) ** (hours / 24.0 / 30.4375)
        sigma = cal.daily_noise
        self.hour_counts = np.zeros((len(p.teams), len(hours)), dtype=np.int64)
        for ti, team in enumerate(p.teams):
            local = hours + team.utc_offset_hours
            local_day = np.floor_divide(local, 24)
            dow = (self.start.weekday() + local_day) % 7
            # A mean-one factor per local day: busy days and quiet days.
            noise = np.array([self._stream(0, ti, day + 1).lognormal(-(sigma**2) / 2, sigma)
                              for day in range(-1, self.days + 1)])
            rate = (team.sessions_per_day / 24.0) * weekly[dow] * hourly[local % 24] * growth \
                * noise[local_day + 1]
            for inc in p.incidents:
                if isinstance(inc, Burst | Holiday) and inc.team in (None, team.name):
                    b0 = (utc_ms(inc.moment(self.start_dt)) - self.start_ms) / MS_PER_HOUR
                    length = inc.hours if isinstance(inc, Burst) else inc.days * 24
                    overlap = np.clip(np.minimum(hours + 1, b0 + length)
                                      - np.maximum(hours, b0), 0, 1)
                    rate = rate * (1 + (inc.multiplier - 1) * overlap)
            presence = self._presence(team, hours)
            if presence is not None:
                rate = rate * presence
            if self.scale != 1.0:
                rate = rate * self.scale
            for d in range(self.days):
                day = slice(d * 24, (d + 1) * 24)
                self.hour_counts[ti, day] = self._stream(1, ti, d).poisson(rate[day])
        runaways = []
        for inc in p.incidents:
            if isinstance(inc, Runaway):
                moment = utc_ms(inc.moment(self.start_dt))
                if self.start_ms <= moment < self.end_ms:
                    project = next(i for i, (_, pr) in enumerate(self.fleet.projects)
                                   if inc.agent in pr.agents)
                    runaways.append((moment, p.agent_index(inc.agent), project,
                                     int(inc.hours * MS_PER_HOUR)))
        self.runaways = sorted(runaways)
        per_day = self.hour_counts.sum(axis=0).reshape(self.days, 24).sum(axis=1)
        for moment, *_ in self.runaways:
            per_day[(moment - self.start_ms) // MS_PER_DAY] += 1
        self.sessions_per_day = per_day
        self.session_offset = offsets(per_day)
        if self.n_sessions >= MAX_SESSIONS:
            raise ValueError(f"{self.n_sessions:,} sessions exceed the id space of one run "
                             f"({MAX_SESSIONS:,}); simulate fewer days per run")

    def _presence(self, team: Team, hours: np.ndarray) -> np.ndarray | None:
        """Per UTC hour of the window, the share of its full rate a team that joins during
        the run has: 0 before its first whole hour, then a linear ramp to 1 over
        ``ramp_days`` (the hour it starts already has 1/ramp-hours of it). None for a team
        there from the start."""
        moment = team.start_moment(self.start_dt)
        if moment is None:
            return None
        first = math.ceil((utc_ms(moment) - self.start_ms) / MS_PER_HOUR)
        ramp = team.ramp_days * 24
        if ramp <= 0:
            return (hours >= first).astype(np.float64)
        return np.clip((hours - first + 1) / ramp, 0.0, 1.0)

    @property
    def n_sessions(self) -> int:
        return int(self.sessions_per_day.sum())

    # --- days ----------------------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        for d in range(self.days):
            if self.as_of_ms is not None and self.start_ms + d * MS_PER_DAY > self.as_of_ms:
                break
            yield self.day(d)

    def day(self, d: int) -> Batch:
        rng = self._stream(2, d)
        fleet = self.fleet
        counts = self.hour_counts[:, d * 24:(d + 1) * 24]
        n_teams = counts.shape[0]
        team = np.repeat(np.repeat(np.arange(n_teams), 24), counts.ravel())
        hour = np.repeat(np.tile(np.arange(24), n_teams), counts.ravel())
        day_start = self.start_ms + d * MS_PER_DAY
        created = day_start + hour * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, len(team))
        project = fleet.pick_project(team, rng.random(len(team)))
        agent = fleet.pick_agent(project, rng.random(len(team)))
        runaway_ms = np.zeros(len(team), dtype=np.int64)
        extra = [r for r in self.runaways if (r[0] - self.start_ms) // MS_PER_DAY == d]
        if extra:
            created = np.concatenate([created, [r[0] for r in extra]])
            agent = np.concatenate([agent, [r[1] for r in extra]])
            project = np.concatenate([project, [r[2] for r in extra]])
            runaway_ms = np.concatenate([runaway_ms, [r[3] for r in extra]])
        order = np.argsort(created, kind="stable")
        sess_no = self.session_offset[d] + np.arange(len(order), dtype=np.int64)
        plan = plan_day(fleet, self.rates, rng, sess_no=sess_no, created=created[order],
                        agent=agent[order], project=project[order],
                        runaway_ms=runaway_ms[order], n_titles=len(TITLES),
                        n_texts=len(AGENT_TEXTS))
        events = emit(plan, fleet, rng, len(USER_TEXTS))
        sessions = {name: plan.S[name] for name in (
            "sess", "created", "updated", "status", "agent", "version", "model", "project",
            "budget", "archived", "title")}
        batch = Batch(day=self.start + timedelta(days=d), events=events, sessions=sessions,
                      n_events=sum(len(c["seq"]) for c in events.values()),
                      plan=plan if self.keep_plan else None)
        if self.as_of_ms is not None:
            _cut_at(batch, self.as_of_ms)
        return batch

    # --- records -------------------------------------------------------------------------

    def environment_records(self) -> list[dict]:
        created = self.start_ms - 30 * MS_PER_DAY
        return [
            {"id": stable_id("env", self.profile.name, e.name), "name": e.name,
             "metadata": dict(e.metadata), "created_ms": created, "updated_ms": created}
            for e in self.profile.environments
        ]

    def agent_records(self) -> list[dict]:
        """Each agent at its latest version by the end of the run (or ``as_of``)."""
        horizon = self.end_ms if self.as_of_ms is None else min(self.end_ms, self.as_of_ms)
        created = self.start_ms - 30 * MS_PER_DAY
        out = []
        for i, (agent, versions) in enumerate(zip(self.profile.agents,
                                                  self.fleet.agent_versions(), strict=True)):
            version, since, model = max(v for v in versions if v[1] <= horizon)
            out.append({
                "index": i, "id": self.agent_id(i), "name": agent.name, "version": version,
                "model": self.fleet.model_ids[model], "speed": agent.speed,
                "inference_geo": agent.inference_geo, "tools": list(agent.tools),
                "multiagent": [{"name": e.name, "model": e.model} for e in agent.multiagent],
                "metadata": dict(agent.metadata),
                "environment_id": stable_id("env", self.profile.name, agent.environment),
                "created_ms": created, "updated_ms": max(created, since),
            })
        return out

    def agent_id(self, index: int) -> str:
        return stable_id("agent", self.profile.name, self.profile.agents[index].name)


def _cut_at(batch: Batch, cutoff: int) -> None:
    """Keep what had happened by ``cutoff``: later events go, statuses are as of then."""
    s = batch.sessions
    n = len(s["sess"])
    first = int(s["sess"][0]) if n else 0
    updated = s["created"].copy()
    status = np.full(n, 1, dtype=np.int64)  # created with initial events: running at once
    status_rows = []
    for kind, cols in batch.events.items():
        keep = cols["at_ms"] <= cutoff
        cols = batch.events[kind] = {c: v[keep] for c, v in cols.items()}
        local = cols["sess"] - first
        np.maximum.at(updated, local, cols["at_ms"])
        if kind in SESSION_STATUS_KINDS:
            code = SESSION_STATUS_KINDS[kind]
            status_rows.append((local, cols["seq"], np.full(len(local), code)))
    if status_rows:
        local = np.concatenate([r[0] for r in status_rows])
        seq = np.concatenate([r[1] for r in status_rows])
        codes = np.concatenate([r[2] for r in status_rows])
        order = np.lexsort((seq, local))
        local, codes = local[order], codes[order]
        last = np.r_[local[1:] != local[:-1], True] if len(local) else local.astype(bool)
        status[local[last]] = codes[last]
    s["status"], s["updated"] = status, updated
    s["archived"] = np.where(s["archived"] <= cutoff, s["archived"], -1)
    keep = s["created"] <= cutoff
    batch.sessions = {c: v[keep] for c, v in s.items()}
    batch.n_events = sum(len(c["seq"]) for c in batch.events.values())
