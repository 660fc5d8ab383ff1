"""Metered vs invoiced: our rated charges against the provider's cost report, day by day.

Rows are day x cost type x model (x token type with `detail`), cost types named as the
provider names them: `session_usage` (our runtime meter), `tokens`, `web_search`. Our side is
the exact amount; the provider's is its cost report in USD (cents / 100, exact). A row is
flagged when the variance exceeds both tolerances, an absolute one in USD and a relative one
in percent, so that neither a 1-cent difference on a 3-cent day nor a 0.01% one on a big day
raises an alarm. Days the provider's report does not cover are listed, never taken as zero.

The provider reports the whole organisation: usage outside Managed Agents (plain Messages API
calls) shows as provider-only cost unless the report is narrowed to a workspace.

The JSON form (`Reconciliation.to_json`) is a stable contract:
{"period", "through", "tolerance_usd", "tolerance_pct", "sources", "missing_days",
 "rows": [{"day", "cost_type", "model", "token_type", "metered", "provider", "variance",
           "variance_pct", "metered_quantity", "provider_quantity", "status", "flagged"}],
 "totals": {"metered", "provider"}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import duckdb

from meter.vocabulary import Period
from pricing.money import install_sql_macros
from reports.render import plain_decimal

__all__ = ["Reconciliation", "ReconcileRow", "missing_day_ranges", "reconcile"]

_SHOWN = Decimal("0.000001")
_TOKEN_TYPE = ("CASE token_class WHEN 'input' THEN 'uncached_input_tokens' "
               "WHEN 'output' THEN 'output_tokens' WHEN 'cache_read' THEN "
               "'cache_read_input_tokens' WHEN 'cache_write_5m' THEN "
               "'cache_creation.ephemeral_5m_input_tokens' WHEN 'cache_write_1h' THEN "
               "'cache_creation.ephemeral_1h_input_tokens' END")

# Both sides in one long table, then summed per key; provider model ids resolve through the
# price books' aliases (and lose a -YYYYMMDD snapshot suffix) to our canonical ids.
_COMPARE_SQL = """
WITH aliases AS ({aliases}),
canon AS (
    SELECT p.*, coalesce(a.model_id, regexp_replace(p.model, '-[0-9]{{8}}$', '')) AS canon
    FROM (SELECT day, cost_type, model, token_type, workspace_id, amount_usd, NULL AS quantity
          FROM provider_cost
          UNION ALL BY NAME
          SELECT day, cost_type, model, token_type, workspace_id, NULL, quantity
          FROM provider_usage) p
    LEFT JOIN aliases a ON a.alias = p.model
),
metered AS (
    SELECT day, CASE meter WHEN 'runtime' THEN 'session_usage' ELSE meter END AS cost_type,
           model, {token_type} AS token_type, units_usd(sum(amount_units)) AS metered,
           sum(quantity) FILTER (WHERE meter <> 'runtime')
               AS metered_quantity
    FROM charges WHERE period = $period AND day <= $through GROUP BY ALL
),
provider AS (
    SELECT day, coalesce(cost_type, 'unknown') AS cost_type,
           CASE WHEN cost_type = 'tokens' THEN canon END AS model,
           {provider_token_type} AS token_type,
           sum(amount_usd) AS provider, sum(quantity) AS provider_quantity,
           count(amount_usd) AS provider_rows
    FROM canon
    WHERE strftime(day, '%Y-%m') = $period AND day <= $through
      AND ($workspace IS NULL OR workspace_id = $workspace)
    GROUP BY ALL
),
joined AS (
    SELECT day, cost_type, model, token_type, sum(metered) AS metered,
           sum(provider) AS provider, sum(metered_quantity) AS metered_quantity,
           sum(provider_quantity) AS provider_quantity
    FROM (SELECT * FROM metered UNION ALL BY NAME SELECT * FROM provider)
    GROUP BY ALL
)
SELECT j.day, j.cost_type, j.model, j.token_type,
       coalesce(j.metered, 0) AS metered,
       CASE WHEN d.day IS NULL THEN NULL ELSE coalesce(j.provider, 0) END AS provider,
       j.metered_quantity, j.provider_quantity,
       d.day IS NOT NULL AND abs(coalesce(j.metered, 0) - coalesce(j.provider, 0)) > $tol_usd
         AND abs(coalesce(j.metered, 0) - coalesce(j.provider, 0)) * 100
             > $tol_pct * abs(coalesce(j.provider, 0)) AS flagged
FROM joined j
LEFT JOIN (SELECT DISTINCT day FROM provider_days WHERE kind = 'cost') d USING (day)
WHERE j.metered IS NOT NULL OR j.provider IS NOT NULL
ORDER BY j.day, CASE j.cost_type WHEN 'session_usage' THEN 0 WHEN 'tokens' THEN 1
                                 WHEN 'web_search' THEN 2 ELSE 3 END, j.cost_type,
         j.model NULLS FIRST, j.token_type NULLS FIRST
"""


@dataclass(frozen=True)
class ReconcileRow:
    day: date
    cost_type: str
    model: str | None
    token_type: str | None
    metered: Decimal
    provider: Decimal | None
    variance: Decimal | None
    variance_pct: Decimal | None
    metered_quantity: int | None
    provider_quantity: int | None
    status: str
    flagged: bool


@dataclass(frozen=True)
class Reconciliation:
    period: str
    through: date
    tolerance_usd: Decimal
    tolerance_pct: Decimal
    rows: list[ReconcileRow]
    missing_days: list[date]
    sources: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[ReconcileRow]:
        return [r for r in self.rows if r.flagged]

    def totals(self) -> tuple[Decimal, Decimal]:
        """Metered and provider totals over the days the provider's report covers."""
        covered = [r for r in self.rows if r.provider is not None]
        return (sum((r.metered for r in covered), Decimal(0)),
                sum((r.provider or Decimal(0) for r in covered), Decimal(0)))

    COLUMNS = ("day", "cost_type", "model", "token_type", "metered", "provider", "variance",
               "variance_pct", "metered_quantity", "provider_quantity", "status")

    def table_rows(self, *, only_flagged: bool = False) -> list[list[Any]]:
        rows = self.flagged if only_flagged else self.rows
        return [[getattr(r, c) for c in self.COLUMNS] for r in rows]

    def summary(self) -> list[str]:
        metered, provider = self.totals()
        lines = [f"{len(self.rows):,} rows; {len(self.flagged):,} beyond tolerance "
                 f"(±${plain_decimal(self.tolerance_usd)} and "
                 f"±{plain_decimal(self.tolerance_pct)}%); on the days the provider covers, "
                 f"metered ${metered.quantize(Decimal('0.01'), ROUND_HALF_EVEN)} vs provider "
                 f"${provider.quantize(Decimal('0.01'), ROUND_HALF_EVEN)}"]
        if self.missing_days:
            lines.append(f"provider cost report has no data for "
                         f"{missing_day_ranges(self.missing_days)} "
                         f"({len(self.missing_days)} day{'s' if len(self.missing_days) > 1 else ''}"
                         f"): not reconciled; fetch or pass the report for those days")
        return lines

    def to_json(self, *, only_flagged: bool = False) -> str:
        def plain(value: Any) -> Any:
            if isinstance(value, Decimal):
                return plain_decimal(value)
            if isinstance(value, date):
                return value.isoformat()
            return value

        metered, provider = self.totals()
        return json.dumps({
            "period": self.period, "through": self.through.isoformat(),
            "tolerance_usd": plain_decimal(self.tolerance_usd),
            "tolerance_pct": plain_decimal(self.tolerance_pct), "sources": self.sources,
            "missing_days": [d.isoformat() for d in self.missing_days],
            "rows": [{k: plain(v) for k, v in asdict(r).items()}
                     for r in (self.flagged if only_flagged else self.rows)],
            "totals": {"metered": plain_decimal(metered), "provider": plain_decimal(provider)},
        }, indent=2)


def missing_day_ranges(days: list[date]) -> str:
    """[Nov 4, Nov 17, Nov 18, Nov 19] -> '2026-11-04, 2026-11-17..2026-11-19'."""
    ranges: list[list[date]] = []
    for day in sorted(days):
        if ranges and day - ranges[-1][1] == timedelta(days=1):
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return ", ".join(a.isoformat() if a == b else f"{a.isoformat()}..{b.isoformat()}"
                     for a, b in ranges)


def _aliases_sql(con: duckdb.DuckDBPyConnection) -> str:
    has_books = con.execute("SELECT count(*) FROM duckdb_tables() "
                            "WHERE temporary AND table_name = 'pb_aliases'").fetchall()[0][0]
    if has_books:
        return "SELECT alias, any_value(model_id) AS model_id FROM pb_aliases GROUP BY alias"
    return "SELECT NULL::VARCHAR AS alias, NULL::VARCHAR AS model_id WHERE false"


def reconcile(
    con: duckdb.DuckDBPyConnection,
    period: str,
    *,
    through: date,
    tolerance_usd: Decimal = Decimal("0.01"),
    tolerance_pct: Decimal = Decimal("1"),
    detail: bool = False,
    workspace: str | None = None,
    sources: list[str] | None = None,
) -> Reconciliation:
    """Compare temp table `charges` with provider_cost / provider_usage / provider_days
    (`reports.provider.load_into`) for the days of `period` up to `through` inclusive."""
    install_sql_macros(con)
    sql = _COMPARE_SQL.format(
        aliases=_aliases_sql(con),
        token_type=_TOKEN_TYPE if detail else "NULL::VARCHAR",
        provider_token_type="token_type" if detail else "NULL::VARCHAR")
    raw = con.execute(sql, {"period": period, "through": through, "workspace": workspace,
                            "tol_usd": tolerance_usd, "tol_pct": tolerance_pct}).fetchall()
    rows = []
    for day, cost_type, model, token_type, metered, provider, mq, pq, flagged in raw:
        metered = Decimal(metered)
        variance = None if provider is None else metered - Decimal(provider)
        pct = None
        if variance is not None and provider:
            pct = (variance * 100 / Decimal(provider)).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        status = "no provider data" if provider is None else (
            "over tolerance" if flagged else "ok")
        rows.append(ReconcileRow(
            day=day, cost_type=cost_type, model=model, token_type=token_type,
            metered=metered.quantize(_SHOWN, ROUND_HALF_EVEN),
            provider=None if provider is None else Decimal(provider).quantize(_SHOWN,
                                                                              ROUND_HALF_EVEN),
            variance=None if variance is None else variance.quantize(_SHOWN, ROUND_HALF_EVEN),
            variance_pct=pct, metered_quantity=None if mq is None else int(mq),
            provider_quantity=None if pq is None else int(pq), status=status,
            flagged=bool(flagged)))
    start = Period.parse(period).start
    covered = {d for (d,) in con.execute(
        "SELECT DISTINCT day FROM provider_days WHERE kind = 'cost'").fetchall()}
    missing = [start + timedelta(days=i) for i in range((through - start).days + 1)
               if start + timedelta(days=i) not in covered]
    return Reconciliation(period=period, through=through, tolerance_usd=tolerance_usd,
                          tolerance_pct=tolerance_pct, rows=rows, missing_days=missing,
                          sources=sources or [])
