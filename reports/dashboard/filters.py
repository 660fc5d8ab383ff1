"""The dashboard's filters (period, team, agent, model) as bound SQL over `charges`.

One rule for every page: a filter keeps the charge lines that match it, and the model filter
keeps the token lines of the chosen models plus the runtime and web-search lines of the
sessions that used them (runtime has no model of its own). An empty choice means "all".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import duckdb

from meter.vocabulary import UNTAGGED, Period

__all__ = ["AGENT_NAMES", "FULL_MONTH_AFTER_DAYS", "Filters", "FilterOptions", "TEAM_SQL",
           "default_period", "filter_options",
           "filtered_charges", "period_bounds", "team_sql"]

def team_sql(metadata: str) -> str:
    """SQL: the team tag of a JSON `metadata` column, UNTAGGED where it has none."""
    return f"coalesce({metadata}->>'$.team', '{UNTAGGED}')"


TEAM_SQL = team_sql("tags")


@dataclass(frozen=True)
class Filters:
    period: str | None = None  # YYYY-MM; None: every period
    teams: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def key(self) -> str:
        """A stable text form, used as (part of) a cache key."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_key(cls, text: str) -> Filters:
        data = json.loads(text)
        return cls(period=data.get("period"),
                   **{k: tuple(data.get(k) or ()) for k in ("teams", "agents", "models")})

    def without_period(self) -> Filters:
        return Filters(None, self.teams, self.agents, self.models)


def period_bounds(period: str) -> tuple[date, date]:
    """First day of `period` (YYYY-MM) and first day of the next month."""
    month = Period.parse(period)
    return month.start, month.end


def filtered_charges(f: Filters, *, source: str = "charges",
                     periods: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """A subquery over `source` keeping the lines that pass `f`, and its bound parameters.

    `periods`, when given, replaces `f.period` by several months. `source` is a table name
    chosen by the caller (never user input).
    """
    conds: list[str] = []
    params: dict[str, Any] = {}
    months = list(periods) or ([f.period] if f.period else [])
    if months:
        names = [f"$period{i}" if i else "$period" for i in range(len(months))]
        period_sql = f"period IN ({', '.join(names)})"
        conds.append(period_sql)
        params.update({n[1:]: m for n, m in zip(names, months, strict=True)})
    if f.teams:
        conds.append(f"list_contains($teams, {TEAM_SQL})")
        params["teams"] = list(f.teams)
    if f.agents:
        conds.append("list_contains($agents, agent_id)")
        params["agents"] = list(f.agents)
    if f.models:
        inner = "list_contains($models, model)" + (f" AND {period_sql}" if months else "")
        conds.append(f"(list_contains($models, model) OR (model IS NULL AND session_id IN ("
                     f"SELECT session_id FROM {source} WHERE {inner})))")
        params["models"] = list(f.models)
    where = " AND ".join(conds) or "true"
    return f"(SELECT * FROM {source} WHERE {where})", params


# An agent's name: its own record's, else the name sessions gave it (agents embedded in
# session records have no record of their own).
AGENT_NAMES = """
SELECT agent_id, coalesce(any_value(a.name), any_value(s.agent_name)) AS name
FROM (SELECT agent_id, any_value(agent_name) AS agent_name FROM sessions
      WHERE agent_id IS NOT NULL GROUP BY agent_id) s
FULL JOIN agents a USING (agent_id)
GROUP BY agent_id
"""


@dataclass(frozen=True)
class FilterOptions:
    """The values each filter can take, from the rated charges."""

    periods: tuple[str, ...]
    teams: tuple[str, ...]
    agents: tuple[tuple[str, str], ...]  # (agent_id, label)
    models: tuple[str, ...]


# While the as-of is in the first this-many days of its month, the dashboard opens on the
# month before.
FULL_MONTH_AFTER_DAYS = 7


def default_period(periods: Sequence[str], as_of_ms: int | None) -> str | None:
    """The period the dashboard opens on, of `periods` (newest first): the newest, unless it is
    the month of `as_of_ms` (the last rating's as-of), the as-of is in its first
    FULL_MONTH_AFTER_DAYS days and an older period exists: then the last full month. A month
    of three days is mostly empty charts; the month before is what a newcomer comes to see."""
    if not periods:
        return None
    if len(periods) > 1 and as_of_ms is not None:
        as_of = datetime.fromtimestamp(as_of_ms / 1000, UTC)
        if periods[0] == as_of.strftime("%Y-%m") and as_of.day <= FULL_MONTH_AFTER_DAYS:
            return periods[1]
    return periods[0]


def filter_options(con: duckdb.DuckDBPyConnection) -> FilterOptions:
    periods = tuple(r[0] for r in con.execute(
        "SELECT DISTINCT period FROM charges ORDER BY period DESC").fetchall())
    # Tags repeat: read each distinct JSON value once.
    teams = tuple(r[0] for r in con.execute(
        f"SELECT DISTINCT {TEAM_SQL} AS team FROM (SELECT DISTINCT tags FROM charges) "
        "ORDER BY team").fetchall())
    agents = tuple((r[0], r[1]) for r in con.execute(f"""
        WITH ids AS (SELECT DISTINCT agent_id FROM charges WHERE agent_id IS NOT NULL),
        names AS ({AGENT_NAMES})
        SELECT ids.agent_id,
               CASE WHEN n.name IS NULL OR n.name = ids.agent_id THEN ids.agent_id
                    ELSE n.name || ' (' || ids.agent_id || ')' END AS label
        FROM ids LEFT JOIN names n USING (agent_id) ORDER BY label
    """).fetchall())
    models = tuple(r[0] for r in con.execute(
        "SELECT DISTINCT model FROM charges WHERE model IS NOT NULL ORDER BY model").fetchall())
    return FilterOptions(periods, teams, agents, models)
