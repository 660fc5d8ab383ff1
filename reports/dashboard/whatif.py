"""What-if page data: pricing.whatif on the sessions the filters select, and scenario files.

Re-rating needs the metered usage, not the stored charges, so a what-if run rates events
again. To keep that proportional to what is on screen, the event tables the rating reads are
shadowed (temp tables of the same names, on this connection only) by the rows of the
sessions with spend in the selected period under the filters (or of a sample of them, chosen
by a hash of the id); baseline and scenario are then both rated from that subset and
compared on the period.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from meter.store import current_catalog
from meter.vocabulary import METER_ORDER
from pricing.ledger import first_event_ms
from reports.dashboard.filters import Filters, filtered_charges

__all__ = ["Levers", "SCENARIO_DIR", "build_scenario", "list_scenarios", "levers_of",
           "run_scenario", "sample_percent_for", "scenario_toml"]

SCENARIO_DIR = Path("data") / "scenarios"
# The tables pricing.rating.prepare_usage reads.
_EVENT_TABLES = ("sessions", "status_events", "model_requests", "usage_snapshots", "threads")


@dataclass(frozen=True)
class Levers:
    """The page's sliders; None leaves a lever as the base scenario has it."""

    runtime_usd_per_hour: Decimal | None = None
    move_from: str | None = None
    move_to: str | None = None
    move_percent: Decimal | None = None
    move_multiplier: Decimal = Decimal(1)
    cache_hit_rate_percent: Decimal | None = None
    growth_percent_per_month: Decimal | None = None
    runtime_granularity: str | None = None


EXACT_UP_TO = 20_000  # sessions re-rated without asking (a few seconds)
SAMPLE_TARGET = 10_000  # sessions a sampled estimate re-rates


def sample_percent_for(sessions: int) -> int | None:
    """The sample that re-rates about SAMPLE_TARGET sessions, or None (re-rate them all)."""
    if sessions <= EXACT_UP_TO:
        return None
    return max(1, min(99, -(-SAMPLE_TARGET * 100 // sessions)))


def list_scenarios(folder: Path = SCENARIO_DIR) -> list[Path]:
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def levers_of(scenario: Any) -> Levers:
    """The sliders' starting values from a loaded scenario."""
    move = scenario.usage.move[0] if scenario.usage.move else None
    return Levers(
        runtime_usd_per_hour=scenario.prices.runtime_usd_per_hour,
        move_from=move.from_model if move else None, move_to=move.to_model if move else None,
        move_percent=move.percent if move else None,
        move_multiplier=move.token_multiplier if move else Decimal(1),
        cache_hit_rate_percent=scenario.usage.cache_hit_rate_percent,
        growth_percent_per_month=scenario.usage.session_growth_percent_per_month,
        runtime_granularity=scenario.billing.runtime_granularity,
    )


def build_scenario(base: Any | None, levers: Levers, name: str | None = None) -> Any:
    """`base` (a pricing.scenario.Scenario, or the identity) with the levers applied.

    The result is validated like a scenario file, so a slider cannot produce a scenario that
    `agenttally whatif` would refuse.
    """
    from pricing.scenario import Scenario, parse_scenario

    raw = (base or Scenario()).model_dump(mode="json", exclude_none=True)
    if name:
        raw["name"] = name
    prices = raw.setdefault("prices", {})
    usage = raw.setdefault("usage", {})
    billing = raw.setdefault("billing", {})
    if levers.runtime_usd_per_hour is not None:
        prices["runtime_usd_per_hour"] = str(levers.runtime_usd_per_hour)
    if levers.move_from and levers.move_to and levers.move_percent:
        usage["move"] = [{"from_model": levers.move_from, "to_model": levers.move_to,
                          "percent": str(levers.move_percent),
                          "token_multiplier": str(levers.move_multiplier)}]
    elif levers.move_percent is not None and not levers.move_percent:
        usage["move"] = []
    if levers.cache_hit_rate_percent is not None:
        if levers.cache_hit_rate_percent > 0:
            usage["cache_hit_rate_percent"] = str(levers.cache_hit_rate_percent)
        else:
            usage.pop("cache_hit_rate_percent", None)
    if levers.growth_percent_per_month is not None:
        if levers.growth_percent_per_month:
            usage["session_growth_percent_per_month"] = str(levers.growth_percent_per_month)
        else:
            usage.pop("session_growth_percent_per_month", None)
    if levers.runtime_granularity and "build_vs_buy" not in raw:
        billing["runtime_granularity"] = levers.runtime_granularity
    return parse_scenario(raw, source=f"scenario {raw.get('name', 'scenario')!r}")


def scenario_toml(scenario: Any) -> str:
    """The scenario as a TOML file `agenttally whatif` reads back (decimals as strings)."""
    import tomli_w

    raw = scenario.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    raw.setdefault("name", scenario.name)
    ordered = {k: raw[k] for k in ("name", "description") if k in raw}
    ordered.update({k: v for k, v in raw.items() if k not in ordered and v not in ({}, [])})
    return tomli_w.dumps(_strings(ordered))


def _strings(value: Any) -> Any:
    """TOML floats are refused by our loaders: every number is written as a string."""
    if isinstance(value, dict):
        return {k: _strings(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


def _shadow_events(con: duckdb.DuckDBPyConnection, f: Filters,
                   sample_percent: int | None = None) -> int:
    """Temp copies of the event tables holding only the selected sessions (a deterministic
    `sample_percent` of them, by a hash of the id, when given); returns how many.

    Each copy tests the sample's hash itself before the semi-join on the selected ids: a
    cheap filter on the scan that leaves the join about `sample_percent` % of the rows.
    """
    quoted = current_catalog(con)
    catalog = quoted + ".main."
    sub, params = filtered_charges(f, source=catalog + "charges")
    sampled, pct = "true", {}
    if sample_percent is not None:
        sampled, pct = "hash(session_id) % 100 < $pct", {"pct": sample_percent}
    con.execute(f"CREATE OR REPLACE TEMP TABLE wi_ids AS SELECT DISTINCT session_id "
                f"FROM {sub} WHERE {sampled}", params | pct)

    def copy(table: str, where: str = "") -> None:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT * FROM {catalog}{table}
            WHERE {sampled} AND session_id IN (SELECT session_id FROM wi_ids){where}""", pct)

    copy("sessions")
    # The copies read only from the selected sessions' earliest event on (the tables' zone
    # maps skip older row groups), as the ledger's re-rating does.
    since = first_event_ms(con, quoted, "wi_ids")
    recent = "" if since is None else f" AND at_ms >= {since}"
    for table in _EVENT_TABLES:
        if table != "sessions":
            copy(table, recent)
    return int(con.execute("SELECT count(*) FROM wi_ids").fetchall()[0][0])


# Invoice lines of one side (meter x model x token class x tier, rounded once), per meter and
# model.
_LINES = """
SELECT meter, coalesce(model, '(' || meter || ')') AS model, sum(amount) AS amount
FROM (SELECT meter, model, token_class, tier, units_cents(sum(amount_units)) AS amount
      FROM {table} WHERE period = $period GROUP BY ALL)
GROUP BY ALL
"""


def _side_by_side(con: duckdb.DuckDBPyConnection, baseline: str, scenario: str,
                  period: str) -> pd.DataFrame:
    """meter, model, baseline, scenario (Decimal, cents) for both sides' invoice lines."""
    frames = []
    for side, table in (("baseline", baseline), ("scenario", scenario)):
        rows = con.execute(_LINES.format(table=table), {"period": period}).fetchall()
        frames.append(pd.DataFrame(rows, columns=["meter", "model", side]))
    both = frames[0].merge(frames[1], on=["meter", "model"], how="outer")
    for side in ("baseline", "scenario"):
        both[side] = [Decimal(v) if v == v and v is not None else Decimal("0.00")
                      for v in both[side]]
    return both


def _deltas(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    grouped = frame.groupby(key, as_index=False, sort=False)[["baseline", "scenario"]].sum()
    rank = {m: i for i, m in enumerate(METER_ORDER)}
    if key == "meter":
        grouped = grouped.sort_values(key, key=lambda s: s.map(lambda m: rank.get(m, 99)))
    else:
        grouped = grouped.sort_values(key)
    out = pd.DataFrame({
        key: grouped[key], "baseline": grouped["baseline"].astype(float),
        "scenario": grouped["scenario"].astype(float),
        "delta": (grouped["scenario"] - grouped["baseline"]).astype(float),
    })
    out["delta_pct"] = [None if b == 0 else round(100 * d / b, 1)
                        for b, d in zip(out["baseline"], out["delta"], strict=True)]
    return out.reset_index(drop=True)


def run_scenario(con: duckdb.DuckDBPyConnection, f: Filters, scenario: Any, as_of_ms: int,
                 sample_percent: int | None = None) -> dict[str, Any]:
    """Baseline vs scenario for `f.period`, per meter and per model, with deltas.

    Both sides are invoice lines (meter x model x token class x tier) rounded once half-even to the
    cent, so the baseline total equals the invoice of the same sessions. With
    `sample_percent`, only that share of the sessions (chosen by a hash of their id) is
    re-rated and both sides are scaled by the selection's actual spend over the sample's
    baseline: the baseline total is then exact and the scenario an estimate, as the notes say.

    Returns {"meters", "models" (frames: key, baseline, scenario, delta, delta_pct),
    "baseline_total", "scenario_total" (Decimal), "notes", "sessions", "baseline_daily",
    "scenario_daily" (day, usd), "scenario_name", "estimated"}.
    """
    from pricing.money import round_cents
    from pricing.pricebook import default_pricebook_dir, load_pricebooks
    from pricing.rating import RatingOptions
    from pricing.whatif import run_whatif

    if not f.period:
        raise ValueError("a what-if needs a period")
    if sample_percent is not None and not 1 <= sample_percent < 100:
        raise ValueError(f"sample_percent must be 1-99, got {sample_percent}")
    actual = None
    if sample_percent is not None:
        sub, params = filtered_charges(f)
        actual = Decimal(con.execute(f"""
            SELECT coalesce(sum(amount), 0) FROM (
                SELECT units_cents(sum(amount_units)) AS amount FROM {sub}
                GROUP BY meter, model, token_class, tier)""", params).fetchall()[0][0])
    con.execute("DROP VIEW IF EXISTS temp.main.unrated")  # the rating makes its own table
    sessions = _shadow_events(con, f, sample_percent)
    books = load_pricebooks(default_pricebook_dir())
    result = run_whatif(con, books, scenario, RatingOptions(as_of_ms=as_of_ms))
    lines = _side_by_side(con, result.baseline_table, result.scenario_table, f.period)
    notes = list(result.notes)
    daily = {}
    for side, table in (("baseline", result.baseline_table),
                        ("scenario", result.scenario_table)):
        daily[side] = con.execute(f"""
            SELECT day, units_usd(sum(amount_units))::DOUBLE AS usd FROM {table}
            WHERE period = $p GROUP BY day ORDER BY day""", {"p": f.period}).fetch_df()
    if actual is not None:
        sample_base = sum(lines["baseline"], Decimal(0))
        factor = actual / sample_base if sample_base else Decimal(0)
        for side in ("baseline", "scenario"):
            lines[side] = [round_cents(v * factor) for v in lines[side]]
            daily[side]["usd"] = daily[side]["usd"] * float(factor)
        notes.insert(0, f"estimated from a {sample_percent}% sample of the sessions "
                        f"({sessions:,} re-rated), scaled to the selection's actual spend")
    return {
        "meters": _deltas(lines, "meter"), "models": _deltas(lines, "model"),
        "baseline_total": actual if actual is not None else sum(lines["baseline"],
                                                                Decimal("0.00")),
        "scenario_total": sum(lines["scenario"], Decimal("0.00")),
        "notes": notes, "sessions": sessions, "estimated": actual is not None,
        "baseline_daily": daily["baseline"], "scenario_daily": daily["scenario"],
        "scenario_name": scenario.name,
    }


def context(con: duckdb.DuckDBPyConnection, f: Filters, as_of_ms: int) -> dict[str, Any]:
    """What the sliders start from: the runtime price in force, the models the selection
    uses (by token spend), the models the price books know, and the observed cache hit rate
    (cache reads / all prompt tokens, as the scenario lever defines it)."""
    from pricing.pricebook import default_pricebook_dir, load_pricebooks

    sub, params = filtered_charges(f)
    used = [r[0] for r in con.execute(f"""
        SELECT model FROM {sub} WHERE meter = 'tokens' AND model IS NOT NULL
        GROUP BY model ORDER BY sum(amount_units) DESC
    """, params).fetchall()]
    sessions = con.execute(f"SELECT count(DISTINCT session_id) FROM {sub}",
                           params).fetchall()[0][0]
    prompt, reads = con.execute(f"""
        SELECT coalesce(sum(quantity) FILTER (WHERE token_class <> 'output'), 0),
               coalesce(sum(quantity) FILTER (WHERE token_class = 'cache_read'), 0)
        FROM {sub} WHERE meter = 'tokens'
    """, params).fetchall()[0]
    books = load_pricebooks(default_pricebook_dir())
    book = next((b for b in books if b.covers(as_of_ms)), books[-1] if books else None)
    return {
        "runtime_usd_per_hour": book.runtime.usd_per_session_hour if book else Decimal("0.08"),
        "models_used": used,
        "models_known": sorted({m.id for b in books for m in b.models}),
        "cache_hit_rate": float(reads) / float(prompt) if prompt else None,
        "book": f"{book.name} {book.version}" if book else None,
        "sessions": int(sessions),
    }
