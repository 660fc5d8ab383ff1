"""Workload profiles: who runs which agents how often, as a TOML file validated by pydantic.

A profile is data (``data/profiles/*.toml``): teams with projects and a session rate, agents
with their model and behaviour, environments, a calendar (weekly and daily cycles, growth,
noise) and incidents. Every distribution is named by what it shapes (``running_s`` is the
length of one running span in seconds), so a reader can check a profile against the
statistics the tests measure on its output.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from meter.config_files import describe, read_toml, utc_moment
from meter.errors import UsageError

__all__ = [
    "Agent",
    "Behavior",
    "Burst",
    "Calendar",
    "Environment",
    "Holiday",
    "LogNormal",
    "ModelSwitch",
    "Profile",
    "ProfileError",
    "Project",
    "Runaway",
    "Team",
    "load_profile",
    "parse_profile",
]

MAX_ROSTER = 20  # reference §7: a roster holds at most 20 agents
MAX_THREADS_PER_TURN = 25  # reference §7: at most 25 concurrent threads

BUILTIN_TOOLS = ("bash", "read", "write", "edit", "glob", "grep", "web_fetch", "web_search")


class ProfileError(UsageError):
    """A profile that cannot be used; the message names the file, the field and the fix."""


UtcMoment = Annotated[datetime, BeforeValidator(utc_moment)]
Share = Annotated[float, Field(ge=0, le=1)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r'^[^"\\\x00-\x1f]+$')]
ModelId = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogNormal(_Strict):
    """A heavy-tailed length: half the draws fall below ``median``; ``sigma`` is the spread
    of its logarithm (0 = always the median, 1 = a long tail, 2 = a very long one)."""

    median: float = Field(gt=0)
    sigma: float = Field(default=1.0, ge=0, le=4)

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


class Behavior(_Strict):
    """How an agent's sessions unfold: turns, span lengths, tokens, errors, endings.

    A session is a run of turns (a running span, then an idle gap waiting for the user);
    a running span holds model requests alternating with tool work.
    """

    turns_mean: float = Field(default=4.0, ge=1, le=200)  # turns per session (geometric)
    running_s: LogNormal = LogNormal(median=40, sigma=1.0)  # one running span
    idle_s: LogNormal = LogNormal(median=120, sigma=1.5)  # the gap between two turns
    long_share: Share = 0.02  # sessions whose first turn is a long autonomous run...
    long_running_s: LogNormal = LogNormal(median=5400, sigma=0.5)  # ...this long
    seconds_per_request: float = Field(default=12.0, gt=0.5)  # running seconds per request
    prompt_tokens: LogNormal = LogNormal(median=20_000, sigma=0.8)  # all input of a request
    output_tokens: LogNormal = LogNormal(median=600, sigma=1.0)
    cache_hit_rate: Share = 0.75  # share of prompt tokens read from the cache (mean)
    cache_write_share: Share = 0.5  # of the prompt not read from cache, share written to it
    cache_1h_share: Share = 0.1  # requests whose cache writes use the 1 h TTL (else 5 min)
    searches_per_request: float = Field(default=0.0, ge=0, le=20)  # needs tool web_search
    requires_action_share: Share = 0.1  # turns that end waiting for a tool confirmation
    error_rate: Share = 0.005  # requests that fail; a failure is retried (rescheduling)...
    exhausted_share: Share = 0.1  # ...or ends its turn (retries_exhausted)...
    terminal_share: Share = 0.02  # ...or ends the session (terminated)
    reschedule_s: LogNormal = LogNormal(median=6, sigma=0.6)  # rescheduling before a retry
    archive_share: Share = 0.3  # sessions archived (terminated) after their last turn;
    archive_after_s: LogNormal = LogNormal(median=3600, sigma=1.0)  # the rest stay idle
    threads_per_turn: float = Field(default=2.0, ge=0, le=MAX_THREADS_PER_TURN)  # rosters
    thread_running_s: LogNormal = LogNormal(median=60, sigma=0.8)  # one thread's run

    @model_validator(mode="after")
    def _shares_fit(self) -> Behavior:
        if self.exhausted_share + self.terminal_share > 1:
            raise ValueError(
                f"exhausted_share + terminal_share = "
                f"{self.exhausted_share + self.terminal_share:g}: they split the errors, so "
                f"they must add up to at most 1"
            )
        return self


class RosterEntry(_Strict):
    name: Name
    model: ModelId


class Budget(_Strict):
    """A share of the agent's sessions is created with ``max_list_cost`` = ``cents``."""

    share: Share
    cents: int = Field(gt=0, strict=True)


class Agent(_Strict):
    name: Name
    model: ModelId
    speed: Literal["standard", "fast"] = "standard"
    inference_geo: Literal["global", "us"] = "global"
    environment: Name
    tools: tuple[Name, ...] = ("bash", "read", "edit")
    behavior: Name = "default"
    multiagent: tuple[RosterEntry, ...] = ()
    budget: Budget | None = None
    metadata: dict[Name, Name] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Agent:
        if len(self.multiagent) > MAX_ROSTER:
            raise ValueError(
                f"multiagent lists {len(self.multiagent)} agents; a roster holds at most "
                f"{MAX_ROSTER}"
            )
        unknown = [t for t in self.tools if t not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(
                f"tools: unknown tool {unknown[0]!r}; expected some of {', '.join(BUILTIN_TOOLS)}"
            )
        return self


class Environment(_Strict):
    name: Name
    metadata: dict[Name, Name] = Field(default_factory=dict)


class Project(_Strict):
    name: Name
    share: float = Field(default=1.0, gt=0)
    agents: tuple[Name, ...] = Field(min_length=1)
    cost_center: Name | None = None


class Team(_Strict):
    """A team's sessions arrive at ``sessions_per_day`` (before the calendar's cycles).

    A team that joins during the simulated window (onboarding) gives ``starts_at`` (a UTC
    moment) or ``starts_after_days`` (after the simulation start): it has no sessions before
    its first whole UTC hour from then, and reaches its full rate linearly over ``ramp_days``
    (0: at once).
    """

    name: Name
    cost_center: Name
    sessions_per_day: float = Field(gt=0, le=5_000_000)
    utc_offset_hours: int = Field(default=0, ge=-12, le=14)
    projects: tuple[Project, ...] = Field(min_length=1)
    starts_at: UtcMoment | None = None
    starts_after_days: float | None = Field(default=None, ge=0)
    ramp_days: float = Field(default=0, ge=0, le=366)

    @model_validator(mode="after")
    def _one_start(self) -> Team:
        if self.starts_at is not None and self.starts_after_days is not None:
            raise ValueError("give at most one of `starts_at` (a UTC date or datetime) or "
                             "`starts_after_days`")
        if self.ramp_days > 0 and self.starts_at is None and self.starts_after_days is None:
            raise ValueError("ramp_days: the ramp begins when the team starts; give "
                             "`starts_after_days` or `starts_at` too")
        return self

    def start_moment(self, start: datetime) -> datetime | None:
        """When the team's first sessions may arrive (None: from the simulation start)."""
        if self.starts_at is not None:
            return self.starts_at
        if self.starts_after_days is not None:
            return start + timedelta(days=self.starts_after_days)
        return None


class Calendar(_Strict):
    """Arrival shape: ``weekly`` Monday..Sunday and ``hourly`` 0..23 local time are relative
    weights (each normalised to mean 1), ``growth_per_month`` compounds from the simulation's
    start, ``daily_noise`` is the sigma of a mean-one lognormal factor per team and day."""

    weekly: tuple[float, ...] = (1.15, 1.2, 1.2, 1.15, 1.0, 0.35, 0.3)
    hourly: tuple[float, ...] = (
        0.2, 0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 1.2, 1.8, 2.0, 1.9,
        1.5, 1.8, 2.0, 1.9, 1.7, 1.3, 0.9, 0.7, 0.6, 0.5, 0.4, 0.3,
    )
    growth_per_month: float = Field(default=0.0, gt=-1, le=10)
    daily_noise: float = Field(default=0.1, ge=0, le=2)

    @model_validator(mode="after")
    def _check(self) -> Calendar:
        if len(self.weekly) != 7:
            raise ValueError(f"weekly: expected 7 weights (Monday..Sunday), got {len(self.weekly)}")
        if len(self.hourly) != 24:
            raise ValueError(f"hourly: expected 24 weights (hours 0..23), got {len(self.hourly)}")
        if min(self.weekly) <= 0 or min(self.hourly) < 0 or sum(self.hourly) <= 0:
            raise ValueError("weekly weights must be > 0 and hourly weights >= 0 (not all 0)")
        return self


class _Timed(_Strict):
    """An incident happens ``at`` a UTC moment or ``after_days`` after the simulation start
    (the latter keeps a profile's incidents inside any simulated window)."""

    at: UtcMoment | None = None
    after_days: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_time(self) -> _Timed:
        if (self.at is None) == (self.after_days is None):
            raise ValueError("give exactly one of `at` (a UTC date or datetime) or `after_days`")
        return self

    def moment(self, start: datetime) -> datetime:
        if self.at is not None:
            return self.at
        return start + timedelta(days=self.after_days or 0)


class Runaway(_Timed):
    """One session of ``agent`` that keeps running, without a pause, for ``hours``."""

    type: Literal["runaway"]
    agent: Name
    hours: float = Field(default=24, gt=0, le=24 * 14)


class Burst(_Timed):
    """``multiplier`` times the usual arrivals for ``hours`` (one team, or all)."""

    type: Literal["burst"]
    team: Name | None = None
    hours: float = Field(default=2, gt=0, le=24 * 31)
    multiplier: float = Field(default=10, gt=0, le=1000)


class Holiday(_Timed):
    """``multiplier`` (0..1) times the usual arrivals for ``days`` (one team, or all): a
    holiday, a company shutdown week. Sessions already running are not cut short."""

    type: Literal["holiday"]
    team: Name | None = None
    days: float = Field(default=7, gt=0, le=366)
    multiplier: float = Field(default=0.3, ge=0, le=1)


class ModelSwitch(_Timed):
    """From this moment on ``agent`` runs ``model`` (a new agent version)."""

    type: Literal["model_switch"]
    agent: Name
    model: ModelId


Incident = Annotated[Runaway | Burst | Holiday | ModelSwitch, Field(discriminator="type")]
INCIDENT_TYPES = ("runaway", "burst", "holiday", "model_switch")


def _unique(items: tuple[Any, ...], what: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.name in seen:
            raise ValueError(f"{what}[{i}].name: {item.name!r} appears twice; names must be unique")
        seen.add(item.name)


class Profile(_Strict):
    name: Name
    description: str = ""
    calendar: Calendar = Calendar()
    behaviors: dict[Name, Behavior] = Field(default_factory=lambda: {"default": Behavior()})
    environments: tuple[Environment, ...] = Field(min_length=1)
    agents: tuple[Agent, ...] = Field(min_length=1)
    teams: tuple[Team, ...] = Field(min_length=1)
    incidents: tuple[Incident, ...] = ()

    @model_validator(mode="after")
    def _cross_references(self) -> Profile:
        _unique(self.environments, "environments")
        _unique(self.agents, "agents")
        _unique(self.teams, "teams")
        envs = {e.name for e in self.environments}
        agents = {a.name for a in self.agents}
        for i, agent in enumerate(self.agents):
            if agent.environment not in envs:
                raise ValueError(
                    f"agents[{i}].environment: unknown environment {agent.environment!r}; "
                    f"defined: {', '.join(sorted(envs))}"
                )
            if agent.behavior not in self.behaviors:
                raise ValueError(
                    f"agents[{i}].behavior: unknown behavior {agent.behavior!r}; defined: "
                    f"{', '.join(sorted(self.behaviors))} (add a [behaviors.{agent.behavior}] "
                    f"table)"
                )
        for t, team in enumerate(self.teams):
            _unique(team.projects, f"teams[{t}].projects")
            for p, project in enumerate(team.projects):
                for a, name in enumerate(project.agents):
                    if name not in agents:
                        raise ValueError(
                            f"teams[{t}].projects[{p}].agents[{a}]: unknown agent {name!r}; "
                            f"defined: {', '.join(sorted(agents))}"
                        )
        used = {n for team in self.teams for p in team.projects for n in p.agents}
        teams = {t.name for t in self.teams}
        for i, incident in enumerate(self.incidents):
            agent_name = getattr(incident, "agent", None)
            if agent_name is not None and agent_name not in used:
                raise ValueError(
                    f"incidents[{i}].agent: {agent_name!r} is not used by any project; "
                    f"used agents: {', '.join(sorted(used))}"
                )
            team_name = getattr(incident, "team", None)
            if team_name is not None and team_name not in teams:
                raise ValueError(
                    f"incidents[{i}].team: unknown team {team_name!r}; defined: "
                    f"{', '.join(sorted(teams))}"
                )
        return self

    def agent_index(self, name: str) -> int:
        return next(i for i, a in enumerate(self.agents) if a.name == name)

    def model_ids(self) -> list[str]:
        """Every model a session of this profile may run, in first-mention order."""
        found: dict[str, None] = {}
        for agent in self.agents:
            found[agent.model] = None
            for entry in agent.multiagent:
                found[entry.model] = None
        for incident in self.incidents:
            if isinstance(incident, ModelSwitch):
                found[incident.model] = None
        return list(found)


# --- loading -----------------------------------------------------------------------------


def _skip_incident_tag(part: str, text: str) -> bool:
    """pydantic's tagged-union step (`runaway`, ...) adds nothing a reader needs."""
    return part in INCIDENT_TYPES and text.endswith("]")


def _special(error: Any) -> str | None:
    if error["type"] == "union_tag_invalid":
        return (f"unknown incident type {error['input'].get('type')!r}; expected "
                f"{', '.join(INCIDENT_TYPES[:-1])} or {INCIDENT_TYPES[-1]}")
    return None


def _describe(error: Any) -> str:
    return describe(error, special=_special, skip=_skip_incident_tag)


def parse_profile(raw: dict[str, Any], *, source: str = "<profile>") -> Profile:
    """Validate a profile already read from TOML; errors name ``source`` and the field."""
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError("\n".join(f"{source}: {_describe(e)}" for e in exc.errors())) from None


def load_profile(path: str | Path) -> Profile:
    raw = read_toml(path, ProfileError, "profile", "see data/profiles/ for examples")
    return parse_profile(raw, source=str(path))
