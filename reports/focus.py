"""FOCUS 1.2 export: the period's charges as a FinOps Open Cost and Usage Specification dataset.

One row per charge line (day x session x SKU x price), every Mandatory column and the
Conditional ones that apply to Claude Managed Agents, then our own columns prefixed `x_`.

Costs, and why they differ by at most a cent per row:
- ListCost = ContractedCost = the exact amount (DECIMAL(38,18), runtime to the nearest 1e-18
  USD), so ListUnitPrice x PricingQuantity gives ListCost as the spec requires (tokens and
  searches exactly; runtime to 1e-17 USD, its hours being ms / 3,600,000 at 18 decimals). No
  negotiated prices: the contracted unit price is the list price. Long-context tokens are rows
  of their own (tier in x_Tier and the SKU), at the long-context unit price, so
  ConsumedQuantity and PricingQuantity add up to the tokens used.
- Corrections (late usage of a closed period, reports.closing) billed in this period are rows
  of their own: ChargeCategory Usage, ChargeClass Correction, ChargePeriod the month they
  correct, costs the corrected amount. For a closed period, BilledCost is what its issued
  invoice billed per line (spread over the rows the ledger holds now).
- BilledCost = EffectiveCost = whole cents: each invoice line's rounded amount (meter x model
  x token class x tier, half-even from the exact sum, as `agenttally invoice` prints it)
  apportioned over the line's rows
  by largest remainder. So the sum of BilledCost is the invoice total to the cent, and each
  row's BilledCost is within a cent of its ListCost.

Under a contract (pricing.contracts; `contract=`), the FOCUS way:
- usage rows keep ListCost (the exact list amount); ContractedCost is it less the row's share
  of the line discounts, and BilledCost = EffectiveCost is the row's list cents less its
  shares of the line discounts and of the commitment discount (each statement line's cents
  apportioned over the rows by reports.statement.distribute: largest remainder to the cent);
  rows that count toward a commitment carry CommitmentDiscountId/Name, Category `Spend`, Type
  `Committed Spend`, Status `Used` and PricingCategory `Committed`;
- a true-up is a row of its own: ChargeCategory Usage, CommitmentDiscountStatus `Unused`,
  ChargeFrequency Recurring, ListCost = ContractedCost = 0, BilledCost = EffectiveCost = the
  shortfall;
- each credit drawdown is a row of ChargeCategory Credit, One-Time, with negative BilledCost
  and EffectiveCost and zero ListCost and ContractedCost.
So the sum of BilledCost is the statement's amount due (plus corrections), to the cent. The
CommitmentDiscount* columns and x_ContractTerm are present only in an export with a
contract; without one the export is unchanged.

Units follow FOCUS' UnitFormat: runtime is priced in `Hours` and consumed in `Milliseconds`,
tokens in `1000000 Tokens` / `Tokens`, web searches in `1000 Requests` / `Requests`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from meter.vocabulary import LINE_KEYS, Period
from pricing.money import apportion_cents, install_sql_macros
from reports.closing import closed_periods, corrections_due
from reports.exports import copy_query, format_of

if TYPE_CHECKING:
    from pricing.contracts import ContractSet

__all__ = ["COMMITMENT_COLUMNS", "FOCUS_COLUMNS", "FOCUS_VERSION", "FocusOptions", "build_focus",
           "focus_columns", "focus_select", "period_bounds", "write_focus"]

FOCUS_VERSION = "1.2"

# (column, feature level in FOCUS 1.2, FOCUS data type), in output order.
FOCUS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("BilledCost", "Mandatory", "Decimal"),
    ("BillingAccountId", "Mandatory", "String"),
    ("BillingAccountName", "Mandatory", "String"),
    ("BillingCurrency", "Mandatory", "String"),
    ("BillingPeriodEnd", "Mandatory", "Date/Time"),
    ("BillingPeriodStart", "Mandatory", "Date/Time"),
    ("ChargeCategory", "Mandatory", "String"),
    ("ChargeClass", "Mandatory", "String"),
    ("ChargeDescription", "Mandatory", "String"),
    ("ChargeFrequency", "Recommended", "String"),
    ("ChargePeriodEnd", "Mandatory", "Date/Time"),
    ("ChargePeriodStart", "Mandatory", "Date/Time"),
    ("ConsumedQuantity", "Conditional", "Decimal"),
    ("ConsumedUnit", "Conditional", "String"),
    ("ContractedCost", "Mandatory", "Decimal"),
    ("ContractedUnitPrice", "Conditional", "Decimal"),
    ("EffectiveCost", "Mandatory", "Decimal"),
    ("InvoiceIssuerName", "Mandatory", "String"),
    ("ListCost", "Mandatory", "Decimal"),
    ("ListUnitPrice", "Conditional", "Decimal"),
    ("PricingCategory", "Conditional", "String"),
    ("PricingQuantity", "Mandatory", "Decimal"),
    ("PricingUnit", "Mandatory", "String"),
    ("ProviderName", "Mandatory", "String"),
    ("PublisherName", "Mandatory", "String"),
    ("ResourceId", "Conditional", "String"),
    ("ResourceName", "Conditional", "String"),
    ("ResourceType", "Conditional", "String"),
    ("ServiceCategory", "Mandatory", "String"),
    ("ServiceName", "Mandatory", "String"),
    ("ServiceSubcategory", "Recommended", "String"),
    ("SkuId", "Conditional", "String"),
    ("SkuMeter", "Conditional", "String"),
    ("SkuPriceDetails", "Conditional", "JSON"),
    ("SkuPriceId", "Conditional", "String"),
    ("Tags", "Conditional", "JSON"),
)
# Present only in an export under a contract (after ChargePeriodStart; then x_ContractTerm).
COMMITMENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("CommitmentDiscountCategory", "Conditional", "String"),
    ("CommitmentDiscountId", "Conditional", "String"),
    ("CommitmentDiscountName", "Conditional", "String"),
    ("CommitmentDiscountStatus", "Conditional", "String"),
    ("CommitmentDiscountType", "Conditional", "String"),
)
EXTRA_COLUMNS = ("x_Meter", "x_Model", "x_TokenClass", "x_Tier", "x_AgentId",
                 "x_EnvironmentId", "x_PriceBook", "x_PriceBookVersion", "x_Provisional")

_ATTO = "CAST(0.000000000000000001 AS DECIMAL(38, 18))"
_CLASS_NAMES = ("CASE c.token_class WHEN 'input' THEN 'Input' WHEN 'output' THEN 'Output' "
                "WHEN 'cache_write_5m' THEN 'Cache Write 5m' WHEN 'cache_write_1h' "
                "THEN 'Cache Write 1h' WHEN 'cache_read' THEN 'Cache Read' "
                "ELSE c.token_class END")

# Fragments both the usage rows and the correction rows use (over rows `c` with meter, model,
# token_class, tier and quantity).
_DESCRIPTION = f"""CASE c.meter
        WHEN 'runtime' THEN 'Claude Managed Agents session runtime'
        WHEN 'web_search' THEN 'Claude Managed Agents web search'
        ELSE c.model || ' ' || lower({_CLASS_NAMES}) || ' tokens'
             || CASE WHEN c.tier = 'standard' THEN '' ELSE ' (' || replace(c.tier, '_', ' ')
                     || ')' END
    END"""
_CONSUMED_UNIT = """CASE c.meter WHEN 'runtime' THEN 'Milliseconds' WHEN 'tokens' THEN 'Tokens'
                 ELSE 'Requests' END"""
_PRICING_QUANTITY = f"""CAST(CAST(CASE c.meter
        WHEN 'runtime' THEN (CAST(c.quantity AS HUGEINT) * 1000000000000000000 + 1800000)
                            // 3600000
        WHEN 'tokens' THEN CAST(c.quantity AS HUGEINT) * 1000000000000
        ELSE CAST(c.quantity AS HUGEINT) * 1000000000000000 END AS DECIMAL(38, 0)) * {_ATTO}
        AS DECIMAL(38, 18))"""
_PRICING_UNIT = """CASE c.meter WHEN 'runtime' THEN 'Hours' WHEN 'tokens' THEN '1000000 Tokens'
                 ELSE '1000 Requests' END"""
_SKU = """CASE c.meter WHEN 'runtime' THEN 'session-runtime' WHEN 'web_search' THEN 'web-search'
            ELSE c.model || '/' || c.token_class
                 || CASE WHEN c.tier = 'standard' THEN '' ELSE '/' || c.tier END END"""

# Tags are finalized, i.e. inherited: the environment's metadata, overridden by the agent's,
# overridden by the session's (the default precedence of reports.allocation).
_OBJECT = "CASE WHEN json_type({x}) = 'OBJECT' THEN CAST({x} AS JSON) ELSE '{{}}'::JSON END"

# Every row of `focus_rows` (charges + rid) as a FOCUS row; the cents come from focus_alloc.
_FOCUS_SQL = f"""
CREATE OR REPLACE TEMP TABLE focus AS
SELECT
    c.rid,
    CAST(CAST(a.cents AS DECIMAL(36, 0)) * CAST(0.01 AS DECIMAL(2, 2)) AS DECIMAL(38, 2))
        AS BilledCost,
    $account_id AS BillingAccountId,
    $account_name AS BillingAccountName,
    'USD' AS BillingCurrency,
    $period_end AS BillingPeriodEnd,
    $period_start AS BillingPeriodStart,
    'Usage' AS ChargeCategory,
    CAST(NULL AS VARCHAR) AS ChargeClass,
    {_DESCRIPTION} AS ChargeDescription,
    'Usage-Based' AS ChargeFrequency,
    timezone('UTC', CAST(c.day + INTERVAL 1 DAY AS TIMESTAMP)) AS ChargePeriodEnd,
    timezone('UTC', CAST(c.day AS TIMESTAMP)) AS ChargePeriodStart,
    CAST(c.quantity AS DECIMAL(38, 0)) AS ConsumedQuantity,
    {_CONSUMED_UNIT} AS ConsumedUnit,
    CAST(c.amount_exact AS DECIMAL(38, 18)) AS ContractedCost,
    CAST(c.unit_price AS DECIMAL(38, 12)) AS ContractedUnitPrice,
    CAST(CAST(a.cents AS DECIMAL(36, 0)) * CAST(0.01 AS DECIMAL(2, 2)) AS DECIMAL(38, 2))
        AS EffectiveCost,
    'Anthropic' AS InvoiceIssuerName,
    CAST(c.amount_exact AS DECIMAL(38, 18)) AS ListCost,
    CAST(c.unit_price AS DECIMAL(38, 12)) AS ListUnitPrice,
    'Standard' AS PricingCategory,
    {_PRICING_QUANTITY} AS PricingQuantity,
    {_PRICING_UNIT} AS PricingUnit,
    'Anthropic' AS ProviderName,
    'Anthropic' AS PublisherName,
    c.session_id AS ResourceId,
    coalesce(nullif(s.title, ''), c.session_id) AS ResourceName,
    'Session' AS ResourceType,
    'AI and Machine Learning' AS ServiceCategory,
    'Claude Managed Agents' AS ServiceName,
    'Generative AI' AS ServiceSubcategory,
    c.sku AS SkuId,
    CASE c.meter WHEN 'runtime' THEN 'Session Runtime' WHEN 'web_search'
                 THEN 'Web Search Requests'
         ELSE {_CLASS_NAMES} || ' Tokens'
              || CASE WHEN c.tier = 'standard' THEN '' ELSE ' (' || replace(c.tier, '_', ' ')
                      || ')' END
    END AS SkuMeter,
    CAST(CASE WHEN c.meter = 'tokens' THEN json_object(
             'Model', c.model, 'TokenClass', c.token_class, 'Tier', c.tier,
             'PriceBook', c.book, 'PriceBookVersion', c.book_version)
         ELSE json_object('PriceBook', c.book, 'PriceBookVersion', c.book_version) END
         AS VARCHAR) AS SkuPriceDetails,
    c.sku || '@' || c.book || ':' || c.book_version || ':'
        || rtrim(rtrim(CAST(CAST(c.unit_price AS DECIMAL(38, 12)) AS VARCHAR), '0'), '.')
        AS SkuPriceId,
    nullif(CAST(json_merge_patch(
        {_OBJECT.format(x='e.metadata')}, {_OBJECT.format(x='ag.metadata')},
        {_OBJECT.format(x='c.tags')}) AS VARCHAR), '{{}}') AS Tags,
    c.meter AS x_Meter,
    c.model AS x_Model,
    c.token_class AS x_TokenClass,
    c.tier AS x_Tier,
    c.agent_id AS x_AgentId,
    c.environment_id AS x_EnvironmentId,
    c.book AS x_PriceBook,
    c.book_version AS x_PriceBookVersion,
    c.provisional AS x_Provisional
FROM focus_rows c
JOIN focus_alloc a USING (rid)
LEFT JOIN sessions s USING (session_id)
LEFT JOIN agents ag ON ag.agent_id = c.agent_id
LEFT JOIN environments e ON e.environment_id = c.environment_id
"""


@dataclass(frozen=True)
class FocusOptions:
    """Who the bill is for: the FOCUS billing account (Anthropic organization)."""

    billing_account_id: str = "anthropic-organization"
    billing_account_name: str = "Anthropic organization"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """A YYYY-MM billing period as [first instant, first instant of the next month) in UTC."""
    month = Period.parse(period)
    return (datetime.combine(month.start, time.min, UTC),
            datetime.combine(month.end, time.min, UTC))


def build_focus(
    con: duckdb.DuckDBPyConnection, period: str, options: FocusOptions = FocusOptions(),
    contract: ContractSet | None = None,
) -> int:
    """Temp table `focus` (plus an ordering column `rid`) from the temp table `charges`.

    Returns the number of rows. BilledCost is apportioned by `reports.allocation`; under
    `contract`, adjusted and completed with true-up and credit rows (module docstring).
    """
    start, end = period_bounds(period)
    install_sql_macros(con)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE focus_rows AS
        SELECT row_number() OVER (ORDER BY day, session_id, meter, model NULLS FIRST,
                                  token_class NULLS FIRST, tier, book, book_version,
                                  unit_price) AS rid,
               *,
               {_SKU} AS sku
        FROM charges c WHERE period = $period
    """, {"period": period})
    lines = ", ".join(LINE_KEYS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE focus_lines AS
        SELECT {lines}, CAST(units_cents(sum(amount_units)) * 100 AS HUGEINT) AS cents
        FROM focus_rows GROUP BY ALL
    """)
    month = Period.parse(period)
    closed = month in closed_periods(con)
    if closed:
        # BilledCost is what was invoiced: the issued lines (and any reissue's note), spread
        # over the rows the ledger has now
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE focus_lines AS
            SELECT l.{", l.".join(LINE_KEYS)},
                   coalesce(CAST(b.amount * 100 AS HUGEINT), 0) AS cents
            FROM focus_lines l LEFT JOIN (
                SELECT {lines}, sum(amount) AS amount FROM billed_lines
                WHERE billed_period = $p AND usage_period = $p GROUP BY ALL) b
              ON {" AND ".join(f"l.{k} IS NOT DISTINCT FROM b.{k}" for k in LINE_KEYS)}
        """, {"p": period})
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE focus_parts AS
        SELECT {lines}, rid, amount_units AS weight FROM focus_rows
    """)
    apportion_cents(con, parts="focus_parts", lines="focus_lines", line_keys=LINE_KEYS,
                    part_keys=("rid",), out="focus_alloc")
    con.execute(_FOCUS_SQL, {"account_id": options.billing_account_id,
                             "account_name": options.billing_account_name,
                             "period_start": start, "period_end": end})
    _add_corrections(con, month, closed, options)
    if contract is not None:
        _apply_contract(con, period, contract, options)
    return int(con.execute("SELECT count(*) FROM focus").fetchall()[0][0])


def _apply_contract(con: duckdb.DuckDBPyConnection, period: str, contract: ContractSet,
                    options: FocusOptions) -> None:
    """The statement's lines on the usage rows (discounts), and as rows of their own
    (true-ups, credits); adds the CommitmentDiscount* columns and x_ContractTerm."""
    from pricing.contracts import ListItem
    from reports.statement import contract_run, distribute, fine_shares, resolved_tag_sql

    run = contract_run(con, contract, period)
    keys = list(run.tag_keys)
    tags = ", ".join(f"{resolved_tag_sql(k)} AS t{i}" for i, k in enumerate(keys))
    rows = con.execute(f"""
        SELECT f.rid, c.meter, c.model, c.day, CAST(f.BilledCost * 100 AS BIGINT), {tags}
        FROM focus f JOIN focus_rows c USING (rid)
        LEFT JOIN agents a ON a.agent_id = c.agent_id
        LEFT JOIN environments e ON e.environment_id = c.environment_id
        WHERE f.ChargeClass IS NULL ORDER BY f.rid
    """).fetchall()
    rids = [int(r[0]) for r in rows]
    items = [ListItem(Decimal(int(r[4])).scaleb(-2), r[1], r[2], r[3],
                      tuple(zip(keys, r[5:], strict=True))) for r in rows]
    weights, _ = fine_shares(run, items, keys)
    fallback = [Fraction(i.amount) for i in items]
    discount = [0] * len(items)
    committed = [0] * len(items)
    extra: list[tuple[str, str, str, int]] = []  # (kind, term, description, cents)
    for line in run.statement.lines:
        split = None
        if line.kind in ("discount", "commitment_discount"):
            split = distribute(line, weights.get((line.kind, line.term_id)), fallback)
        if split is None:
            extra.append((line.kind, line.term_id, line.description, int(line.amount * 100)))
            continue
        target = discount if line.kind == "discount" else committed
        for i, cents in enumerate(split):
            target[i] -= cents  # the line is negative; the columns hold what comes off
    names = {}
    commitment_of: list[str | None] = [None] * len(items)
    if run.contract is not None and run.contract.covers(Period.parse(period)):
        for term in run.contract.commitments:
            if run.contract.in_window(term, Period.parse(period)):
                names[term.id] = f"{term.id}: ${term.amount} per {term.per}"
                for i, item in enumerate(items):
                    if term.matches(item):
                        commitment_of[i] = term.id
    con.execute("CREATE OR REPLACE TEMP TABLE focus_contract (rid BIGINT, discount HUGEINT, "
                "committed HUGEINT, commitment VARCHAR)")
    if items:
        con.executemany("INSERT INTO focus_contract VALUES (?, ?, ?, ?)",
                        [(rid, d, k, cid) for rid, d, k, cid
                         in zip(rids, discount, committed, commitment_of, strict=True)])
    for name, _, _ in COMMITMENT_COLUMNS:
        con.execute(f"ALTER TABLE focus ADD COLUMN {name} VARCHAR")
    con.execute("ALTER TABLE focus ADD COLUMN x_ContractTerm VARCHAR")
    # {x} cents as a USD amount
    as_usd = "CAST(CAST({x} AS DECIMAL(36, 0)) * CAST(0.01 AS DECIMAL(2, 2)) AS DECIMAL(38, 2))"
    con.execute(f"""
        UPDATE focus SET
            ContractedCost = focus.ListCost - {as_usd.format(x='k.discount')},
            BilledCost = focus.BilledCost - {as_usd.format(x='k.discount + k.committed')},
            EffectiveCost = focus.EffectiveCost - {as_usd.format(x='k.discount + k.committed')},
            PricingCategory = CASE WHEN k.commitment IS NULL THEN focus.PricingCategory
                                   ELSE 'Committed' END,
            CommitmentDiscountCategory = CASE WHEN k.commitment IS NOT NULL THEN 'Spend' END,
            CommitmentDiscountId = k.commitment,
            CommitmentDiscountName = list_extract($names, list_position($ids, k.commitment)),
            CommitmentDiscountStatus = CASE WHEN k.commitment IS NOT NULL THEN 'Used' END,
            CommitmentDiscountType = CASE WHEN k.commitment IS NOT NULL
                                          THEN 'Committed Spend' END
        FROM focus_contract k WHERE k.rid = focus.rid
    """, {"names": list(names.values()) or [""], "ids": list(names) or [""]})
    start, end = period_bounds(period)
    for kind, term_id, description, amount in extra:
        credit = kind == "credit"
        con.execute("""
            INSERT INTO focus BY NAME
            SELECT (SELECT coalesce(max(rid), 0) FROM focus) + 1 AS rid,
                   CAST($amount AS DECIMAL(38, 2)) AS BilledCost,
                   $account_id AS BillingAccountId, $account_name AS BillingAccountName,
                   'USD' AS BillingCurrency, $end AS BillingPeriodEnd,
                   $start AS BillingPeriodStart, $category AS ChargeCategory,
                   $description AS ChargeDescription, $frequency AS ChargeFrequency,
                   $end AS ChargePeriodEnd, $start AS ChargePeriodStart,
                   CAST(0 AS DECIMAL(38, 18)) AS ContractedCost,
                   CAST($amount AS DECIMAL(38, 2)) AS EffectiveCost,
                   'Anthropic' AS InvoiceIssuerName, CAST(0 AS DECIMAL(38, 18)) AS ListCost,
                   $pricing AS PricingCategory, 'Anthropic' AS ProviderName,
                   'Anthropic' AS PublisherName, 'AI and Machine Learning' AS ServiceCategory,
                   'Claude Managed Agents' AS ServiceName,
                   'Generative AI' AS ServiceSubcategory,
                   $c_category AS CommitmentDiscountCategory, $c_id AS CommitmentDiscountId,
                   $c_name AS CommitmentDiscountName, $c_status AS CommitmentDiscountStatus,
                   $c_type AS CommitmentDiscountType, $term AS x_ContractTerm,
                   false AS x_Provisional
        """, {"amount": Decimal(amount).scaleb(-2), "account_id": options.billing_account_id,
              "account_name": options.billing_account_name, "start": start, "end": end,
              "category": "Credit" if credit else "Usage",
              "description": description,
              "frequency": "One-Time" if credit else "Recurring",
              "pricing": None if credit else "Committed",
              "c_category": None if kind != "true_up" else "Spend",
              "c_id": term_id if kind == "true_up" else None,
              "c_name": names.get(term_id) if kind == "true_up" else None,
              "c_status": "Unused" if kind == "true_up" else None,
              "c_type": "Committed Spend" if kind == "true_up" else None,
              "term": f"{kind}:{term_id}"})
    con.execute("""
        UPDATE focus SET x_ContractTerm = 'commitment:' || k.commitment FROM focus_contract k
        WHERE k.rid = focus.rid AND k.commitment IS NOT NULL
    """)


def _add_corrections(con: duckdb.DuckDBPyConnection, month: Period, closed: bool,
                     options: FocusOptions) -> None:
    """Corrections billed in `month` (late usage of closed periods, reports.closing) as rows
    of ChargeCategory Usage and ChargeClass Correction, charged over the period they correct:
    those issued in its invoice if it is closed, else those due in it now."""
    if closed:
        rows = con.execute("""
            SELECT usage_period, meter, model, token_class, tier, sum(quantity)::BIGINT,
                   sum(amount)
            FROM billed_lines WHERE billed_period = $p AND usage_period <> $p
            GROUP BY ALL ORDER BY ALL
        """, {"p": str(month)}).fetchall()
    else:
        rows = [(ln.corrects_period, ln.meter, ln.model, ln.token_class, ln.tier, ln.quantity,
                 ln.amount) for ln in corrections_due(con, month, as_of="")]
    if not rows:
        return
    start, end = period_bounds(str(month))
    con.execute("CREATE OR REPLACE TEMP TABLE focus_corrections (usage_period VARCHAR, "
                "meter VARCHAR, model VARCHAR, token_class VARCHAR, tier VARCHAR, "
                "quantity BIGINT, amount DECIMAL(38, 2), usage_start TIMESTAMPTZ, "
                "usage_end TIMESTAMPTZ)")
    con.executemany("INSERT INTO focus_corrections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [[*row, *period_bounds(str(row[0]))] for row in rows])
    con.execute(_CORRECTIONS_SQL, {"account_id": options.billing_account_id,
                                   "account_name": options.billing_account_name,
                                   "period_start": start, "period_end": end})


_CORRECTIONS_SQL = f"""
INSERT INTO focus BY NAME
SELECT (SELECT coalesce(max(rid), 0) FROM focus) + row_number() OVER (
           ORDER BY c.usage_period, c.meter, c.model, c.token_class, c.tier) AS rid,
       c.amount AS BilledCost, $account_id AS BillingAccountId,
       $account_name AS BillingAccountName, 'USD' AS BillingCurrency,
       $period_end AS BillingPeriodEnd, $period_start AS BillingPeriodStart,
       'Usage' AS ChargeCategory, 'Correction' AS ChargeClass,
       'Correction of ' || c.usage_period || ': ' || {_DESCRIPTION} AS ChargeDescription,
       'Usage-Based' AS ChargeFrequency,
       c.usage_end AS ChargePeriodEnd,
       c.usage_start AS ChargePeriodStart,
       CAST(c.quantity AS DECIMAL(38, 0)) AS ConsumedQuantity,
       {_CONSUMED_UNIT} AS ConsumedUnit,
       CAST(c.amount AS DECIMAL(38, 18)) AS ContractedCost,
       CAST(c.amount AS DECIMAL(38, 2)) AS EffectiveCost,
       'Anthropic' AS InvoiceIssuerName,
       CAST(c.amount AS DECIMAL(38, 18)) AS ListCost,
       'Standard' AS PricingCategory,
       {_PRICING_QUANTITY} AS PricingQuantity,
       {_PRICING_UNIT} AS PricingUnit,
       'Anthropic' AS ProviderName, 'Anthropic' AS PublisherName,
       'AI and Machine Learning' AS ServiceCategory, 'Claude Managed Agents' AS ServiceName,
       'Generative AI' AS ServiceSubcategory,
       {_SKU} AS SkuId,
       c.meter AS x_Meter, c.model AS x_Model, c.token_class AS x_TokenClass,
       c.tier AS x_Tier, false AS x_Provisional
FROM focus_corrections c
"""


def focus_columns(contract: bool = False) -> tuple[tuple[str, str, str], ...]:
    """The FOCUS columns of an export, in order (with the CommitmentDiscount* ones under a
    contract)."""
    if not contract:
        return FOCUS_COLUMNS
    return tuple(sorted((*FOCUS_COLUMNS, *COMMITMENT_COLUMNS), key=lambda c: c[0]))


def focus_select(fmt: str, contract: bool = False) -> str:
    """The export query: FOCUS columns, then x_ columns; CSV gets ISO 8601 'Z' date/times."""
    cols = []
    for name, _, kind in focus_columns(contract):
        if kind == "Date/Time" and fmt == "csv":
            cols.append(f"strftime(timezone('UTC', {name}), '%Y-%m-%dT%H:%M:%SZ') AS {name}")
        else:
            cols.append(name)
    extra = [*EXTRA_COLUMNS, *(["x_ContractTerm"] if contract else [])]
    return f"SELECT {', '.join([*cols, *extra])} FROM focus ORDER BY rid"


def write_focus(
    con: duckdb.DuckDBPyConnection,
    period: str,
    path: str | Path,
    *,
    fmt: str | None = None,
    options: FocusOptions = FocusOptions(),
    contract: ContractSet | None = None,
) -> int:
    """Build the FOCUS rows of `period` (under `contract` if given) and write them to `path`
    (CSV or Parquet)."""
    fmt = format_of(path, fmt)
    build_focus(con, period, options, contract)
    return copy_query(con, focus_select(fmt, contract is not None), path, fmt=fmt)
