"""A period's contract statement from the store, and how its lines reach rows and groups.

`contract_statement` reads the list amounts the invoice has (each invoice line's rounded
cents, apportioned by largest remainder to its days and tag values, so they add up to the
invoice exactly) for every month from the contract's first one to the period, and runs
pricing.contracts over them in order, so credit balances and commitment windows carry.

Reports finer or other than the invoice (FOCUS rows, chargeback groups) receive each
adjustment line's cents by one stated rule (`distribute`): in proportion to the line's
shares over the report's own rows (a discount: the eligible list amount left when it applies;
a true-up: the eligible list spend; a credit: the amount after discounts and true-up), by
largest remainder to the cent. So every report still adds up to the statement to the cent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import duckdb

from meter.vocabulary import LINE_KEYS, Period
from pricing.contracts import (
    AdjustmentLine,
    Contract,
    ContractComparison,
    ContractSet,
    LedgerState,
    ListItem,
    Statement,
    apply_contract,
    largest_remainder,
)
from pricing.money import apportion_cents, install_sql_macros
from reports.allocation import json_path

__all__ = ["ContractRun", "compare_contracts", "contract_run", "contract_statement",
           "distribute", "fine_shares", "month_items", "resolved_tag_sql", "statement_json"]

DEFAULT_TAG = "unallocated"
ITEM_KEYS = ("team", "project")  # the tags every item carries (chargeback's usual groups)


def resolved_tag_sql(key: str, alias: str = "c") -> str:
    """SQL: the value of tag `key` for charge rows `alias` (joined to agents `a` and
    environments `e`): the session's, else the agent's, else the environment's, else
    'unallocated' (reports.allocation's default precedence). `key` is checked as a tag key."""
    path = json_path(key).replace("'", "''")
    return (f"coalesce(nullif(trim(json_extract_string({alias}.tags, '{path}')), ''), "
            f"nullif(trim(json_extract_string(a.metadata, '{path}')), ''), "
            f"nullif(trim(json_extract_string(e.metadata, '{path}')), ''), '{DEFAULT_TAG}')")


def _tag_keys(contracts: ContractSet) -> list[str]:
    keys = list(ITEM_KEYS)
    for version in contracts.versions:
        keys += [k for k in version.tag_keys if k not in keys]
    return keys


def _months(first: Period, last: Period) -> list[Period]:
    out = []
    month = first
    while month <= last:
        out.append(month)
        month = month.next()
    return out


def month_items(con: duckdb.DuckDBPyConnection, months: Sequence[Period],
                keys: Sequence[str], *, table: str = "charges") -> dict[str, list[ListItem]]:
    """The list items of each month: every invoice line's cents (meter x model x token class
    x tier, rounded once, as `agenttally invoice` prints it) apportioned to its (day, tag
    values) parts by their exact amounts."""
    install_sql_macros(con)
    tags = [f"{resolved_tag_sql(k)} AS t{i}" for i, k in enumerate(keys)]
    t_cols = [f"t{i}" for i in range(len(keys))]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE st_parts AS
        SELECT c.period, {', '.join(f'c.{k}' for k in LINE_KEYS)}, c.day, {', '.join(tags)},
               sum(c.amount_units) AS weight
        FROM {table} c
        LEFT JOIN agents a ON a.agent_id = c.agent_id
        LEFT JOIN environments e ON e.environment_id = c.environment_id
        WHERE list_contains($months, c.period)
        GROUP BY ALL
    """, {"months": [str(m) for m in months]})
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE st_lines AS
        SELECT period, {', '.join(LINE_KEYS)},
               CAST(units_cents(sum(weight)) * 100 AS HUGEINT) AS cents
        FROM st_parts GROUP BY ALL
    """)
    apportion_cents(con, parts="st_parts", lines="st_lines", line_keys=["period", *LINE_KEYS],
                    part_keys=["day", *t_cols], out="st_alloc")
    rows = con.execute(f"""
        SELECT period, meter, model, day, {', '.join(t_cols)}, sum(cents)::BIGINT
        FROM st_alloc GROUP BY ALL
        ORDER BY period, day, meter, model NULLS FIRST, {', '.join(t_cols)}
    """).fetchall()
    out: dict[str, list[ListItem]] = {str(m): [] for m in months}
    for period, meter, model, day, *rest in rows:
        values, cents = rest[:-1], rest[-1]
        out[period].append(ListItem(Decimal(int(cents)).scaleb(-2), meter, model, day,
                                    tuple(zip(keys, values, strict=True))))
    return out


@dataclass(frozen=True)
class ContractRun:
    """A period's statement, the version in force and the state carried into the period
    (so a report can apply the same terms to rows of its own)."""

    statement: Statement
    contract: Contract | None
    state_before: LedgerState
    tag_keys: tuple[str, ...]


def contract_run(con: duckdb.DuckDBPyConnection, contracts: ContractSet, period: str, *,
                 table: str = "charges") -> ContractRun:
    """The statement of `period` under `contracts`, run month by month from the contract's
    first month (credit balances and commitment windows carry), from relation `table`."""
    month = Period.parse(period)
    first = min(contracts.first_month, month)
    months = _months(first, month)
    keys = _tag_keys(contracts)
    items = month_items(con, months, keys, table=table)
    state = LedgerState()
    version = None
    statement = None
    for m in months:
        version = contracts.in_force(m) or _ended(contracts, m)
        before = state
        statement, state = apply_contract(version, m, items[str(m)], state)
    assert statement is not None
    return ContractRun(statement, version, before, tuple(keys))


def _ended(contracts: ContractSet, month: Period) -> Contract | None:
    past = [v for v in contracts.versions if v.effective_from <= month.start]
    return past[-1] if past else None


def contract_statement(con: duckdb.DuckDBPyConnection, contracts: ContractSet,
                       period: str) -> Statement:
    return contract_run(con, contracts, period).statement


def compare_contracts(con: duckdb.DuckDBPyConnection, baseline: ContractSet | None,
                      scenario: ContractSet | None, months: Sequence[str], *,
                      baseline_table: str, scenario_table: str) -> ContractComparison:
    """The list amount, each adjustment and the amount due of `months`, the baseline's charges
    under `baseline` and the scenario's under `scenario` (None: no contract), side by side."""
    sums: dict[str, list[Decimal]] = {"list amount": [Decimal("0.00")] * 2}
    due = [Decimal("0.00")] * 2
    labels = []
    for side, (contracts, table) in enumerate(((baseline, baseline_table),
                                               (scenario, scenario_table))):
        for month in months:
            if contracts is None:
                items = month_items(con, [Period.parse(month)], ITEM_KEYS, table=table)[month]
                amount = sum((i.amount for i in items), Decimal("0.00"))
                sums["list amount"][side] += amount
                due[side] += amount
                continue
            statement = contract_run(con, contracts, month, table=table).statement
            sums["list amount"][side] += statement.list_amount
            due[side] += statement.amount_due
            for line in statement.lines:
                label = f"{line.kind.replace('_', ' ')} {line.term_id}"
                if label not in sums:
                    sums[label] = [Decimal("0.00")] * 2
                    labels.append(label)
                sums[label][side] += line.amount
    rows = ([_side_by_side("list amount", sums["list amount"])]
            + [_side_by_side(label, sums[label]) for label in labels]
            + [_side_by_side("amount due", due)])
    return ContractComparison(
        tuple(rows),
        baseline.name if baseline is not None else None,
        scenario.name if scenario is not None else None)


def _side_by_side(label: str, amounts: Sequence[Decimal]) -> tuple[str, Decimal, Decimal]:
    """A comparison row: the label, then the baseline's and the scenario's amount."""
    baseline_amount, scenario_amount = amounts
    return label, baseline_amount, scenario_amount


def _without_tags(contract: Contract, keys: Sequence[str]) -> Contract:
    """The contract with discount tag filters on keys the rows do not carry dropped (such a
    discount is then spread over the rows of its meters and models)."""
    discounts = tuple(d.model_copy(update={"tags": {k: v for k, v in d.tags.items()
                                                    if k in keys}})
                      for d in contract.discounts)
    return contract.model_copy(update={"discounts": discounts})


def fine_shares(run: ContractRun, items: Sequence[ListItem], keys: Sequence[str]
                ) -> tuple[dict[tuple[str, str], tuple[Fraction, ...]], list[str]]:
    """Each statement line's weights over `items` (a report's own rows, carrying tags `keys`):
    the same terms applied to them from the same state. Credits weigh each row's amount after
    discounts and true-ups. Returns the weights by (kind, term id) and notes for the reader."""
    notes: list[str] = []
    weights: dict[tuple[str, str], tuple[Fraction, ...]] = {}
    if run.contract is None or not run.statement.lines:
        return weights, notes
    contract = run.contract
    missing = sorted({k for k in contract.tag_keys if k not in keys})
    if missing:
        contract = _without_tags(contract, keys)
        notes.append(f"discounts on tag {', '.join(missing)} are spread over every group with "
                     f"their meters and models (group by {', '.join(missing)} to follow them)")
    fine, _ = apply_contract(contract, run.statement.period, items, run.state_before)
    net = [Fraction(i.amount) for i in items]
    for line in fine.lines:
        if line.kind != "credit" and line.shares:
            weights[(line.kind, line.term_id)] = line.shares
            sign = 1 if line.kind == "true_up" else -1
            net = [n + sign * s for n, s in zip(net, line.shares, strict=True)]
    for line in run.statement.lines:
        if line.kind == "credit":
            weights[(line.kind, line.term_id)] = tuple(max(n, Fraction(0)) for n in net)
    return weights, notes


def distribute(line: AdjustmentLine, weights: Sequence[Fraction] | None,
               fallback: Sequence[Fraction]) -> list[int] | None:
    """The line's cents over rows: by `weights` (its shares), else by `fallback` (list
    amounts), largest remainder; None when both are all zero."""
    cents = int(line.amount * 100)
    split = largest_remainder(cents, list(weights)) if weights else None
    return split if split is not None else largest_remainder(cents, list(fallback))


def statement_json(statement: Statement) -> dict[str, Any]:
    """The statement as JSON-ready values (money as decimal strings)."""
    return {
        "contract": statement.contract, "list_amount": str(statement.list_amount),
        "adjustments": [{"kind": ln.kind, "term_id": ln.term_id,
                         "description": ln.description, "amount": str(ln.amount),
                         "amount_exact": _plain(ln.exact),
                         "charge_category": ln.charge_category} for ln in statement.lines],
        "amount_due": str(statement.amount_due),
        "credit_balances": [{"grant_id": b.grant_id, "priority": b.priority,
                             "start": b.start.isoformat(), "expires": b.expires.isoformat(),
                             "opening": str(b.opening), "granted": str(b.granted),
                             "drawn": str(b.drawn), "expired": str(b.expired),
                             "closing": str(b.closing)} for b in statement.credits],
        "commitments": [{"commitment_id": u.commitment_id, "window": u.window,
                         "amount": str(u.amount.quantize(Decimal("0.01"))),
                         "counted": str(u.counted),
                         "utilisation_percent": str(u.utilisation_percent),
                         "closes": u.closes, "true_up": str(u.true_up)}
                        for u in statement.commitments],
    }


def _plain(value: Decimal) -> str:
    from reports.render import plain_decimal
    return plain_decimal(value.quantize(Decimal("1e-18")))
