"""A profile flattened into arrays: per agent, per project and per roster entry.

The generator never looks at pydantic objects per session: it indexes these arrays with
arrays of agent or project numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from meter.simulator._arrays import offsets
from meter.simulator.profile import Behavior, ModelSwitch, Profile

# Behaviour parameters as arrays, by the name the generator uses.
_BEHAVIOR_FIELDS = {
    "turns_mean": lambda b: b.turns_mean,
    "run_med": lambda b: b.running_s.median,
    "run_sig": lambda b: b.running_s.sigma,
    "idle_med": lambda b: b.idle_s.median,
    "idle_sig": lambda b: b.idle_s.sigma,
    "long_share": lambda b: b.long_share,
    "long_med": lambda b: b.long_running_s.median,
    "long_sig": lambda b: b.long_running_s.sigma,
    "spr": lambda b: b.seconds_per_request,
    "prompt_med": lambda b: b.prompt_tokens.median,
    "prompt_sig": lambda b: b.prompt_tokens.sigma,
    "out_med": lambda b: b.output_tokens.median,
    "out_sig": lambda b: b.output_tokens.sigma,
    "hit": lambda b: b.cache_hit_rate,
    "write_share": lambda b: b.cache_write_share,
    "ttl_1h": lambda b: b.cache_1h_share,
    "searches": lambda b: b.searches_per_request,
    "ra_share": lambda b: b.requires_action_share,
    "err": lambda b: b.error_rate,
    "exh": lambda b: b.exhausted_share,
    "term": lambda b: b.terminal_share,
    "resched_med": lambda b: b.reschedule_s.median,
    "resched_sig": lambda b: b.reschedule_s.sigma,
    "archive": lambda b: b.archive_share,
    "archive_med": lambda b: b.archive_after_s.median,
    "archive_sig": lambda b: b.archive_after_s.sigma,
    "threads": lambda b: b.threads_per_turn,
    "thr_med": lambda b: b.thread_running_s.median,
    "thr_sig": lambda b: b.thread_running_s.sigma,
}


def utc_ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


class Fleet:
    """Agents, projects and rosters of one profile as integer-coded arrays."""

    def __init__(self, profile: Profile, start: datetime):
        p = self.profile = profile
        agents = p.agents
        self.model_ids = p.model_ids()
        model_ix = {m: i for i, m in enumerate(self.model_ids)}
        env_ix = {e.name: i for i, e in enumerate(p.environments)}
        self.agent_model = np.array([model_ix[a.model] for a in agents], dtype=np.int64)
        self.agent_fast = np.array([a.speed == "fast" for a in agents])
        self.agent_us = np.array([a.inference_geo == "us" for a in agents])
        self.agent_env = np.array([env_ix[a.environment] for a in agents], dtype=np.int64)
        self.agent_search = np.array(["web_search" in a.tools for a in agents])
        self.agent_budget_share = np.array([a.budget.share if a.budget else 0.0 for a in agents])
        self.agent_budget_cents = np.array([a.budget.cents if a.budget else 0 for a in agents],
                                           dtype=np.int64)
        # Client tools (all but the server-side web search) as codes into `tool_names`.
        self.tool_names = sorted({t for a in agents for t in a.tools} | {"web_search"})
        tool_ix = {t: i for i, t in enumerate(self.tool_names)}
        client = [[tool_ix[t] for t in a.tools if t != "web_search"] for a in agents]
        self.agent_ntools = np.array([len(c) for c in client], dtype=np.int64)
        self.agent_tools = np.zeros((len(agents), max(1, *map(len, client))), dtype=np.int64)
        for i, c in enumerate(client):
            self.agent_tools[i, : len(c)] = c
        self.search_tool = tool_ix["web_search"]
        # Multi-agent rosters, flattened; thread agent names are codes into `roster_names`.
        self.roster_names = sorted({e.name for a in agents for e in a.multiagent})
        name_ix = {n: i for i, n in enumerate(self.roster_names)}
        self.agent_roster_n = np.array([len(a.multiagent) for a in agents], dtype=np.int64)
        self.agent_roster_off = offsets(self.agent_roster_n)
        self.roster_name = np.array([name_ix[e.name] for a in agents for e in a.multiagent],
                                    dtype=np.int64)
        self.roster_model = np.array([model_ix[e.model] for a in agents for e in a.multiagent],
                                     dtype=np.int64)
        behaviors: list[Behavior] = [p.behaviors[a.behavior] for a in agents]
        self.b = {name: np.array([get(b) for b in behaviors], dtype=np.float64)
                  for name, get in _BEHAVIOR_FIELDS.items()}
        # Teams and projects: cumulative project shares restart for each team.
        self.projects = [(t, pr) for t in p.teams for pr in t.projects]
        self.team_nprojects = np.array([len(t.projects) for t in p.teams], dtype=np.int64)
        self.team_project_off = offsets(self.team_nprojects)
        cum: list[float] = []
        for t in p.teams:
            total = sum(pr.share for pr in t.projects)
            acc = 0.0
            for pr in t.projects:
                acc += pr.share / total
                cum.append(acc)
        self.project_cum = np.array(cum)
        self.project_team = np.array(
            [ti for ti, t in enumerate(p.teams) for _ in t.projects], dtype=np.int64)
        self.project_nagents = np.array([len(pr.agents) for _, pr in self.projects],
                                        dtype=np.int64)
        self.project_agent_off = offsets(self.project_nagents)
        self.project_agents = np.array(
            [p.agent_index(n) for _, pr in self.projects for n in pr.agents], dtype=np.int64)
        # Model switches in time order: (ms, agent, new model code).
        self.switches = sorted(
            (utc_ms(inc.moment(start)), p.agent_index(inc.agent), model_ix[inc.model])
            for inc in p.incidents if isinstance(inc, ModelSwitch)
        )

    def pick_project(self, team: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A project of each session's team, drawn by the projects' shares (u uniform)."""
        out = np.empty(len(team), dtype=np.int64)
        for ti in range(len(self.team_nprojects)):
            rows = np.flatnonzero(team == ti)
            lo = self.team_project_off[ti]
            cum = self.project_cum[lo: lo + self.team_nprojects[ti]]
            out[rows] = lo + np.minimum(np.searchsorted(cum, u[rows], side="right"), len(cum) - 1)
        return out

    def pick_agent(self, project: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One of the project's agents, uniformly (u uniform)."""
        n = self.project_nagents[project]
        return self.project_agents[self.project_agent_off[project]
                                   + np.minimum((u * n).astype(np.int64), n - 1)]

    def agent_versions(self) -> list[list[tuple[int, int, int]]]:
        """Per agent: (version, from_ms, model code), version 1 first."""
        out = [[(1, -(2**62), int(m))] for m in self.agent_model]
        for moment, agent, model in self.switches:
            out[agent].append((len(out[agent]) + 1, moment, model))
        return out

    def model_at(self, agent: np.ndarray, created: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model and agent version in force when each session was created."""
        model = self.agent_model[agent].copy()
        version = np.ones(len(agent), dtype=np.int64)
        for moment, who, new_model in self.switches:
            hit = (agent == who) & (created >= moment)
            model[hit] = new_model
            version[hit] += 1
        return model, version
