"""The shipped provider cost report: the demo's November as the provider would bill it.

    python -m bench.make_provider_report   # -> data/samples/provider_cost_report_2026-11.json

The demo is seeded as the README's examples see it (`seed_demo`, the 60 days ending
2026-11-30, seed 7: `tests/test_readme_cli.py`; `make run` seeds the same November) and rated
with the shipped price books. Each day of November becomes one bucket of an Admin API
`GET /v1/organizations/cost_report` response (grouped by workspace and description, amounts
as decimal strings in cents: shared/reference/managed-agents.md section 11.2), one result per
cost type x model x token type x price tier, each the exact metered amount.

Then the report departs from the metered cost in exactly three ways (BILLED_MORE,
MISSING_DAY and RUNTIME_ROUNDED_DAY), so that `agenttally reconcile` has something to find
(`tests/test_readme_cli.py` checks it finds these and nothing else):

- 2026-11-10: the provider bills claude-haiku-5-5's output tokens $3.50 more (flagged);
- 2026-11-17: no bucket at all, as when an export is cut short (a missing day, not a zero);
- 2026-11-24: the provider rounds the day's session runtime to the cent (a fraction of a
  cent off: inside the tolerance, status ok).

The Sonnet 5 rows name the dated snapshot `claude-sonnet-5-20260630`, as the API reports the
model a caller asked for; reconcile maps it to `claude-sonnet-5`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import duckdb

from pricing.money import usd_of_units

__all__ = ["BILLED_MORE", "MISSING_DAY", "OUT", "PERIOD", "RUNTIME_ROUNDED_DAY", "WORKSPACE",
           "dump", "provider_report", "seed_rated_demo"]

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "samples" / "provider_cost_report_2026-11.json"
PERIOD = "2026-11"
WORKSPACE = "wrkspc_agents"
# The deliberate differences (the module's docstring says what each stands for).
BILLED_MORE = (date(2026, 11, 10), "claude-haiku-5-5", Decimal("3.50"))  # output tokens
MISSING_DAY = date(2026, 11, 17)
RUNTIME_ROUNDED_DAY = date(2026, 11, 24)
DATED_IDS = {"claude-sonnet-5": "claude-sonnet-5-20260630"}

_TOKEN_TYPES = {"input": "uncached_input_tokens", "output": "output_tokens",
                "cache_read": "cache_read_input_tokens",
                "cache_write_5m": "cache_creation.ephemeral_5m_input_tokens",
                "cache_write_1h": "cache_creation.ephemeral_1h_input_tokens"}
_TOKEN_WORDS = {"input": "Input Tokens", "output": "Output Tokens",
                "cache_read": "Cache Read Tokens", "cache_write_5m": "Cache Write Tokens (5m)",
                "cache_write_1h": "Cache Write Tokens (1h)"}

# One row per day x meter x model x token class x tier, summed exactly in units.
_DAILY_SQL = """
SELECT day, meter, model, token_class, tier, sum(amount_units) AS units
FROM charges WHERE period = $period
GROUP BY day, meter, model, token_class, tier
ORDER BY day, CASE meter WHEN 'runtime' THEN 0 WHEN 'tokens' THEN 1 ELSE 2 END,
         model NULLS FIRST, token_class NULLS FIRST, tier
"""


def _model_name(model: str) -> str:
    """'claude-opus-5-5' -> 'Claude Opus 5.5'."""
    _, family, *version = model.split("-")
    return f"Claude {family.capitalize()} {'.'.join(version)}"


def _cents(units: int) -> Decimal:
    """Money units (pricing.money) as cents, exact to the atto-dollar as metered amounts are."""
    return usd_of_units(units).scaleb(2).normalize()


def _result(meter: str, model: str | None, token_class: str | None, tier: str,
            cents: Decimal) -> dict[str, Any]:
    none = {"model": None, "token_type": None, "service_tier": None, "context_window": None,
            "inference_geo": None}
    if meter == "runtime":
        row = {"cost_type": "session_usage",
               "description": "Claude Managed Agents Session Usage", **none}
    elif meter == "web_search":
        row = {"cost_type": "web_search", "description": "Web Search Usage", **none}
    else:
        assert model is not None and token_class is not None
        long = tier == "long_context"
        row = {"cost_type": "tokens",
               "description": f"{_model_name(model)} Usage - "
                              f"{'Long Context ' if long else ''}{_TOKEN_WORDS[token_class]}",
               "model": DATED_IDS.get(model, model), "token_type": _TOKEN_TYPES[token_class],
               "service_tier": "standard", "context_window": None if long else "0-200k",
               "inference_geo": "global"}
    return {"amount": format(cents, "f"), "currency": "USD", **row, "workspace_id": WORKSPACE}


def provider_report(con: duckdb.DuckDBPyConnection, period: str = PERIOD) -> dict[str, Any]:
    """The cost report page for `period` from the rated charges of `con`, with the three
    deliberate differences."""
    rows = con.execute(_DAILY_SQL, {"period": period}).fetchall()
    days: dict[date, list[dict[str, Any]]] = {}
    for day, meter, model, token_class, tier, units in rows:
        cents = _cents(int(units))
        if (day, model, token_class, tier) == (*BILLED_MORE[:2], "output", "standard"):
            cents += BILLED_MORE[2] * 100
        if day == RUNTIME_ROUNDED_DAY and meter == "runtime":
            cents = cents.quantize(Decimal(1), ROUND_HALF_EVEN)
        days.setdefault(day, []).append(_result(meter, model, token_class, tier, cents))
    first = min(days)
    last = max(days)
    buckets = []
    for i in range((last - first).days + 1):
        day = first + timedelta(days=i)
        if day == MISSING_DAY:
            continue
        buckets.append({"starting_at": f"{day.isoformat()}T00:00:00Z",
                        "ending_at": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
                        "results": days.get(day, [])})
    return {"data": buckets, "has_more": False, "next_page": None}


def seed_rated_demo(path: Path) -> None:
    """The README's demo (60 days ending 2026-11-30, seed 7) into a new store, rated."""
    import agenttally
    from agenttally._simulation import seed_demo
    from meter.store import connect

    con = connect(path)
    try:
        seed_demo(con, days=60, end=date(2026, 11, 30))
    finally:
        con.close()
    with agenttally.open_store(path) as store:
        agenttally.rate(store)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.make_provider_report",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=OUT, help=f"(default {OUT})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.duckdb"
        seed_rated_demo(db)
        con = duckdb.connect(str(db), read_only=True)
        try:
            report = provider_report(con)
        finally:
            con.close()
    args.out.write_text(dump(report), encoding="utf-8")
    print(f"{args.out}: {len(report['data'])} daily buckets, "
          f"{sum(len(b['results']) for b in report['data'])} results", file=sys.stderr)
    return 0


def dump(report: dict[str, Any]) -> str:
    """The file's text: one bucket per line group, one result per line (diffs stay small)."""
    lines = ["{", ' "data": [']
    for i, bucket in enumerate(report["data"]):
        head = json.dumps({k: bucket[k] for k in ("starting_at", "ending_at")})[:-1]
        results = ",\n".join(f"   {json.dumps(r)}" for r in bucket["results"])
        tail = "," if i < len(report["data"]) - 1 else ""
        lines.append(f'  {head}, "results": [\n{results}\n  ]}}{tail}' if results
                     else f'  {head}, "results": []}}{tail}')
    lines += [" ],", ' "has_more": false,', ' "next_page": null', "}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
