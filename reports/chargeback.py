"""Chargeback and showback: the period's cost per team (or any tag), to the cent of the invoice.

Each charge line gets its group from the allocation rules (tag precedence, renames); in
chargeback mode the shared pools are then re-assigned to their targets. Money is apportioned
once per invoice line (meter x model x token class) in whole cents by largest remainder, so
the groups add up to the invoice total exactly: every dollar lands in exactly one group.
Showback is the same report without the re-assignment.

The JSON form (`Chargeback.to_json`) is a stable contract:
{"period", "as_of", "mode", "by", "currency", "provisional",
 "groups": [{"group": {<key>: <value>}, "cost": {"runtime", "tokens": {<model>: ...},
             "web_search"}, "shared", "total", "share_pct", "sessions", "running_hours",
             "tokens", "cost_per_session", "cost_per_running_hour"}],
 "total", "invoice_total", "warnings"}
Money is a decimal string; `shared` is the part of `total` received from shared pools.

Under a contract (pricing.contracts; `contract=`), each adjustment line of the period's
statement (discounts, commitment discount, true-up, credits) is distributed to the groups by
one rule: in proportion to the group's share of the line (a discount or the commitment
discount: the group's eligible list spend left when it applies; a true-up: its eligible list
spend; a credit: its amount after discounts and true-up), by largest remainder to the cent
(reports.statement.distribute); a line nothing weighs goes to the internal-rates recipient.
Then the contract's internal rates: in chargeback mode a matched group pays its markup (of its
net, half-even to the cent once per group) and fixed fee, and the recipient group (the
platform) receives the same as a negative amount, so the groups' `net` adds up to the
invoice's amount due to the cent; in showback mode they are shown at cost (`internal_rate`
0). JSON then adds per group "contract_adjustments", "internal_rate", "net", and at the top
"amount_due", "internal_mode" and "contract" (the statement).

Grouping keys are tag keys, written bare (`team`) or explicitly (`tag:team`). A bare key that
no session, agent or environment in the store carries is refused (`DimensionError`): it is
nearly always a typo, and grouping by it would put every cent under the default group. The
explicit form groups by a key even so (e.g. before the first tagged session arrives). Either
way, a key that no charge of the period carries gets a warning in `warnings`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import duckdb

from meter.errors import UsageError
from meter.vocabulary import LINE_KEYS
from pricing.money import CENT, apportion_cents, cents_of_units, install_sql_macros
from reports.allocation import TAG_KEY_PATTERN, AllocationRules, json_path
from reports.invoice import build_invoice

if TYPE_CHECKING:
    from pricing.contracts import ContractSet, InternalRates, Statement

__all__ = ["Chargeback", "ChargebackGroup", "Dimension", "DimensionError", "MODES", "TAG_PREFIX",
           "build_chargeback", "check_dimensions", "known_tag_keys", "parse_dimensions",
           "resolve_groups"]

MODES = ("chargeback", "showback")
TAG_PREFIX = "tag:"
_KEYS_SHOWN = 20  # known keys listed in a refusal
_MS_PER_HOUR = Decimal(3_600_000)

_SOURCE_SQL = {
    "session": "nullif(trim(json_extract_string(c.tags, {p})), '')",
    "agent": "nullif(trim(json_extract_string(a.metadata, {p})), '')",
    "environment": "nullif(trim(json_extract_string(e.metadata, {p})), '')",
}

_SOURCE_TABLE = {"session": "sessions", "agent": "agents", "environment": "environments"}

_DRIVER_SQL = {
    "running_time": "sum(quantity) FILTER (WHERE meter = 'runtime')",
    "tokens": "sum(quantity) FILTER (WHERE meter = 'tokens')",
    "cost": "floordiv(sum(amount_units), 9000000000000)",  # micro-dollars
}


class DimensionError(UsageError):
    """A grouping key that cannot be used: malformed, or carried by no record of the store.

    The message speaks of the value only (`'teem' is not a tag key ...`), never of a CLI flag;
    the CLI puts its own flag in front. `value` is the text as given, `known` the tag keys
    the store's records carry (empty when the value is malformed).
    """

    def __init__(self, value: str, message: str, *, known: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.value = value
        self.known = tuple(known)


@dataclass(frozen=True)
class Dimension:
    """One grouping key: a tag key, and whether it was written `tag:<key>` (group by it even
    when no record of the store carries it)."""

    key: str
    explicit: bool = False

    @classmethod
    def parse(cls, text: str) -> Dimension:
        value = text.strip()
        explicit = value.startswith(TAG_PREFIX)
        key = value[len(TAG_PREFIX):].strip() if explicit else value
        if not re.match(TAG_KEY_PATTERN, key):
            raise DimensionError(
                text, f"{text!r} is not a tag key; expected letters, digits and _ . : / - "
                      f"(e.g. team), or {TAG_PREFIX}<key>")
        return cls(key, explicit)


def parse_dimensions(by: Sequence[str]) -> tuple[Dimension, ...]:
    """The grouping keys of `by` (blank items skipped, repeats once), each checked for form;
    refuses an empty list."""
    dims = tuple(Dimension.parse(text) for text in by if text.strip())
    if not dims:
        raise DimensionError(",".join(by), "no tag key to group by; expected a comma list of "
                                            "tag keys, e.g. team,project")
    unique: dict[str, Dimension] = {}
    for dim in dims:
        seen = unique.get(dim.key)
        unique[dim.key] = dim if seen is None else Dimension(dim.key, seen.explicit
                                                             or dim.explicit)
    return tuple(unique.values())


def _carried_sql(source: str) -> str:
    """SQL (parameter $p, a JSON path) true when some record of `source` carries the key with
    a non-blank value, as `resolve_groups` reads it."""
    return (f"EXISTS (SELECT 1 FROM {_SOURCE_TABLE[source]} "
            "WHERE nullif(trim(json_extract_string(metadata, $p)), '') IS NOT NULL)")


def known_tag_keys(con: duckdb.DuckDBPyConnection,
                   sources: Sequence[str] = ("session", "agent", "environment")) -> list[str]:
    """Every metadata key with a non-blank value on some record of `sources`, sorted."""
    selects = " UNION ALL ".join(
        f"SELECT DISTINCT metadata FROM {_SOURCE_TABLE[s]} WHERE json_type(metadata) = 'OBJECT'"
        for s in sources)
    rows = con.execute(f"""
        SELECT DISTINCT key FROM (
            SELECT metadata, unnest(json_keys(metadata)) AS key FROM ({selects}))
        WHERE nullif(trim(json_extract_string(metadata, key)), '') IS NOT NULL
        ORDER BY key
    """).fetchall()
    return [r[0] for r in rows]


def check_dimensions(con: duckdb.DuckDBPyConnection, by: Sequence[str],
                     rules: AllocationRules | None = None) -> tuple[Dimension, ...]:
    """Refuse a bare grouping key that no session, agent or environment of the store carries
    (among the sources `rules` read): grouping by it would put every cent in the default group
    without a word. `tag:<key>` is taken as is. A store without sessions refuses nothing
    (there is nothing to allocate). Returns the parsed keys."""
    dims = parse_dimensions(by)
    bare = [d for d in dims if not d.explicit]
    if not bare or not con.execute("SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1)"
                                   ).fetchall()[0][0]:
        return dims
    sources = (rules or AllocationRules()).tags.precedence
    carried = " OR ".join(_carried_sql(s) for s in sources)
    for dim in bare:
        if con.execute(f"SELECT {carried}", {"p": json_path(dim.key)}).fetchall()[0][0]:
            continue
        known = known_tag_keys(con, sources)
        where = _sources_text(sources)
        listed = ", ".join(known[:_KEYS_SHOWN]) + (", ..." if len(known) > _KEYS_SHOWN else "")
        expected = (f"; expected one of {listed}, or " if known
                    else " (none carries any tag); expected ")
        raise DimensionError(
            dim.key, f"{dim.key!r} is not a tag key of any {where} in the store{expected}"
                     f"{TAG_PREFIX}{dim.key} to group by it anyway", known=known)
    return dims


def _sources_text(sources: Sequence[str]) -> str:
    """("session", "agent", "environment") -> "session, agent or environment"."""
    names = list(sources)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class ChargebackGroup:
    group: dict[str, str]
    runtime: Decimal
    tokens: dict[str, Decimal]
    web_search: Decimal
    shared: Decimal
    sessions: int
    running_ms: int
    token_count: int
    share_pct: Decimal | None = None
    contract: Decimal | None = None  # its share of the contract's adjustment lines
    internal: Decimal | None = None  # internal rate (negative for the recipient)

    @property
    def total(self) -> Decimal:
        return self.runtime + sum(self.tokens.values(), Decimal("0.00")) + self.web_search

    @property
    def net(self) -> Decimal:
        """What the group pays: its list total, its share of the contract's adjustments and
        its internal rate."""
        return self.total + (self.contract or 0) + (self.internal or 0)

    @property
    def running_hours(self) -> Decimal:
        return (Decimal(self.running_ms) / _MS_PER_HOUR).quantize(CENT, ROUND_HALF_EVEN)

    @property
    def cost_per_session(self) -> Decimal | None:
        if not self.sessions:
            return None
        return (self.total / self.sessions).quantize(CENT, ROUND_HALF_EVEN)

    @property
    def cost_per_running_hour(self) -> Decimal | None:
        if not self.running_ms:
            return None
        return (self.total * _MS_PER_HOUR / self.running_ms).quantize(CENT, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Chargeback:
    period: str
    as_of: str
    mode: str
    by: tuple[str, ...]
    currency: str
    provisional: bool
    groups: list[ChargebackGroup]
    invoice_total: Decimal
    warnings: list[str] = field(default_factory=list)
    statement: Statement | None = None  # the period under a contract
    internal_mode: str | None = None  # "chargeback" or "showback" under a contract

    @property
    def total(self) -> Decimal:
        return sum((g.total for g in self.groups), Decimal("0.00"))

    @property
    def amount_due(self) -> Decimal:
        """The groups' net: the invoice's amount due under the contract (else the total)."""
        return sum((g.net for g in self.groups), Decimal("0.00"))

    @property
    def models(self) -> list[str]:
        return sorted({m for g in self.groups for m in g.tokens})

    def columns(self) -> list[str]:
        return [*self.by, "sessions", "running_hours", "tokens", "cost_runtime",
                *[f"cost_tokens:{m}" for m in self.models], "cost_web_search", "shared",
                "total", "share_pct", "cost_per_session", "cost_per_running_hour",
                *(_CONTRACT_COLUMNS if self.statement is not None else ())]

    def rows(self, *, with_total: bool = True) -> list[list[Any]]:
        """Wide rows for tables, CSV and Parquet; the last row is the TOTAL unless asked not."""
        zero = Decimal("0.00")
        more = self.statement is not None
        out = [[*(g.group[k] for k in self.by), g.sessions, g.running_hours, g.token_count,
                g.runtime, *[g.tokens.get(m, zero) for m in self.models], g.web_search,
                g.shared, g.total, g.share_pct, g.cost_per_session, g.cost_per_running_hour,
                *([g.contract or zero, g.internal or zero, g.net] if more else [])]
               for g in self.groups]
        if with_total:
            whole = ChargebackGroup(
                group={}, runtime=sum((g.runtime for g in self.groups), zero),
                tokens={m: sum((g.tokens.get(m, zero) for g in self.groups), zero)
                        for m in self.models},
                web_search=sum((g.web_search for g in self.groups), zero),
                shared=sum((g.shared for g in self.groups), zero),
                sessions=sum(g.sessions for g in self.groups),
                running_ms=sum(g.running_ms for g in self.groups),
                token_count=sum(g.token_count for g in self.groups))
            out.append(["TOTAL", *[None] * (len(self.by) - 1), whole.sessions,
                        whole.running_hours, whole.token_count, whole.runtime,
                        *whole.tokens.values(), whole.web_search, whole.shared, whole.total,
                        Decimal("100.00") if whole.total else None, whole.cost_per_session,
                        whole.cost_per_running_hour,
                        *([sum((g.contract or zero for g in self.groups), zero),
                           sum((g.internal or zero for g in self.groups), zero),
                           self.amount_due] if more else [])])
        return out

    def to_json(self) -> str:
        def money(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        groups = [{
            "group": g.group,
            "cost": {"runtime": money(g.runtime),
                     "tokens": {m: money(v) for m, v in sorted(g.tokens.items())},
                     "web_search": money(g.web_search)},
            "shared": money(g.shared), "total": money(g.total), "share_pct": money(g.share_pct),
            "sessions": g.sessions, "running_hours": money(g.running_hours),
            "tokens": g.token_count, "cost_per_session": money(g.cost_per_session),
            "cost_per_running_hour": money(g.cost_per_running_hour),
            **({"contract_adjustments": money(g.contract or Decimal("0.00")),
                "internal_rate": money(g.internal or Decimal("0.00")), "net": money(g.net)}
               if self.statement is not None else {}),
        } for g in self.groups]
        extra: dict[str, Any] = {}
        if self.statement is not None:
            from reports.statement import statement_json
            extra = {"amount_due": money(self.amount_due), "internal_mode": self.internal_mode,
                     "contract": statement_json(self.statement)}
        return json.dumps({
            "period": self.period, "as_of": self.as_of, "mode": self.mode, "by": list(self.by),
            "currency": self.currency, "provisional": self.provisional, "groups": groups,
            "total": money(self.total), "invoice_total": money(self.invoice_total),
            "warnings": self.warnings, **extra,
        }, indent=2)


def resolve_groups(
    con: duckdb.DuckDBPyConnection,
    period: str,
    keys: Sequence[str],
    rules: AllocationRules,
    *,
    table: str = "cb_rows",
) -> None:
    """Temp table `table`: the period's charges summed per (tags, agent, environment, meter,
    model, token class, tier), with columns g0..gN, the value of each key; and temp table
    `cb_keys`: one row per distinct (tags, agent_id, environment_id) with its g0..gN.

    Each key is read from the sources in the rules' precedence order (session metadata, the
    agent's, the environment's), falls back to the default, then goes through the renames.
    A group only depends on (tags, agent, environment), so the charges are aggregated first
    (sums are exact: integers, amounts in money units) and the JSON is read once per distinct
    combination, not once per charge line. `cb_keys` also has found0..foundN: whether the
    key's value came from a record rather than the default.
    """
    con.execute("CREATE OR REPLACE TEMP TABLE cb_renames "
                "(key VARCHAR, from_value VARCHAR, to_value VARCHAR)")
    renames = [(k, f, t) for k, mapping in rules.renames.items() for f, t in mapping.items()]
    if renames:
        con.executemany("INSERT INTO cb_renames VALUES (?, ?, ?)", renames)
    params: dict[str, Any] = {"default": rules.tags.default}
    raw, joins, final = [], [], []
    for i, key in enumerate(keys):
        params[f"p{i}"] = json_path(key)
        params[f"k{i}"] = key
        sources = [_SOURCE_SQL[s].format(p=f"$p{i}") for s in rules.tags.precedence]
        raw.append(f"coalesce({', '.join(sources)}, $default) AS raw{i}, "
                   f"coalesce({', '.join(sources)}) IS NOT NULL AS found{i}")
        joins.append(f"LEFT JOIN cb_renames r{i} ON r{i}.key = $k{i} "
                     f"AND r{i}.from_value = b.raw{i}")
        final.append(f"coalesce(r{i}.to_value, b.raw{i}) AS g{i}")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE cb_agg AS
        SELECT tags, agent_id, environment_id, meter, model, token_class, tier,
               sum(quantity) AS quantity, sum(amount_units) AS amount_units
        FROM charges WHERE period = $period
        GROUP BY ALL
    """, {"period": period})
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cb_keys AS
        WITH b AS (
            SELECT c.tags, c.agent_id, c.environment_id,
                   hash(c.tags, c.agent_id, c.environment_id) AS h, {', '.join(raw)}
            FROM (SELECT DISTINCT tags, agent_id, environment_id FROM cb_agg) c
            LEFT JOIN agents a ON a.agent_id = c.agent_id
            LEFT JOIN environments e ON e.environment_id = c.environment_id
        )
        SELECT b.* EXCLUDE ({', '.join(f'raw{i}' for i in range(len(keys)))}),
               {', '.join(final)}
        FROM b {' '.join(joins)}
    """, params)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT c.agent_id, c.environment_id, c.meter, c.model, c.token_class, c.tier,
               c.quantity, c.amount_units, {', '.join(f'k.g{i}' for i in range(len(keys)))}
        FROM cb_agg c JOIN cb_keys k ON {_KEY_MATCH}
    """)


_KEY_MATCH = " AND ".join(f"k.{c} IS NOT DISTINCT FROM c.{c}"
                          for c in ("tags", "agent_id", "environment_id"))


def _assign_pools(con: duckdb.DuckDBPyConnection, keys: list[str], rules: AllocationRules,
                  mode: str) -> dict[str, Any]:
    """Adds column `pool` (index of the first matching shared rule, or NULL) to cb_rows."""
    params: dict[str, Any] = {}
    cases = []
    if mode == "chargeback":
        for j, rule in enumerate(rules.shared):
            preds = []
            if rule.environment:
                params[f"r{j}_env"] = list(rule.environment)
                preds.append(f"list_contains($r{j}_env, environment_id)")
            if rule.agent:
                params[f"r{j}_agent"] = list(rule.agent)
                preds.append(f"list_contains($r{j}_agent, agent_id)")
            for key, values in rule.tags.items():
                params[f"r{j}_t{keys.index(key)}"] = list(values)
                preds.append(f"list_contains($r{j}_t{keys.index(key)}, g{keys.index(key)})")
            cases.append(f"WHEN {' AND '.join(preds)} THEN {j}")
    pool = f"CASE {' '.join(cases)} END" if cases else "NULL"
    con.execute(f"CREATE OR REPLACE TEMP TABLE cb_rows AS "
                f"SELECT *, CAST({pool} AS INTEGER) AS pool FROM cb_rows", params)
    return params


def _weights(con: duckdb.DuckDBPyConnection, keys: list[str], rules: AllocationRules,
             params: dict[str, Any]) -> None:
    """Temp table cb_weights (pool, rule_name, key_idx, target, w): integer driver weights."""
    con.execute("CREATE OR REPLACE TEMP TABLE cb_weights (pool INTEGER, rule_name VARCHAR, "
                "key_idx INTEGER, target VARCHAR, w HUGEINT)")
    for j, rule in enumerate(rules.shared):
        ki = keys.index(rule.key)
        if rule.driver == "fixed":
            con.executemany("INSERT INTO cb_weights VALUES (?, ?, ?, ?, ?)", [
                (j, rule.name, ki, target, int(pct * 10_000))
                for target, pct in rule.percentages.items()])
            continue
        where = ["pool IS NULL"]
        local = {"rule": j, "name": rule.name, "ki": ki}
        if rule.scope == "match":
            for name in ("env", "agent"):
                if f"r{j}_{name}" in params:
                    col = "environment_id" if name == "env" else "agent_id"
                    where.append(f"list_contains($r{j}_{name}, {col})")
                    local[f"r{j}_{name}"] = params[f"r{j}_{name}"]
        if rule.targets:
            where.append(f"list_contains($targets, g{ki})")
            local["targets"] = list(rule.targets)
        if rule.key in rule.tags:  # the pool's own values never receive their own cost
            where.append(f"NOT list_contains($own, g{ki})")
            local["own"] = list(rule.tags[rule.key])
        con.execute(f"""
            INSERT INTO cb_weights
            SELECT $rule, $name, $ki, g{ki}, CAST(coalesce({_DRIVER_SQL[rule.driver]}, 0)
                                                   AS HUGEINT) AS w
            FROM cb_rows WHERE {' AND '.join(where)}
            GROUP BY g{ki} HAVING w > 0
        """, local)


def build_chargeback(
    con: duckdb.DuckDBPyConnection,
    period: str,
    *,
    by: Sequence[str],
    rules: AllocationRules | None = None,
    mode: str = "chargeback",
    as_of: str = "",
    contract: ContractSet | None = None,
) -> Chargeback:
    """The chargeback (or showback) of `period` from the temp table `charges` on `con`;
    under `contract`, with the statement's adjustments and the internal rates (module
    docstring)."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    by = tuple(d.key for d in parse_dimensions(by))
    rules = rules or AllocationRules()
    keys = rules.keys_needed(by)
    install_sql_macros(con)
    resolve_groups(con, period, keys, rules)
    params = _assign_pools(con, keys, rules, mode)
    _weights(con, keys, rules, params)

    gb = [f"g{i}" for i in range(len(by))]
    keyed = ", ".join(
        f"CASE WHEN w.key_idx = {i} THEN w.target ELSE p.g{i} END AS g{i}" for i in range(len(by)))
    all_g = ", ".join(f"g{i}" for i in range(len(keys)))
    lines = ", ".join(LINE_KEYS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cb_parts AS
        SELECT {lines}, {', '.join(gb)}, '' AS origin, sum(amount_units) AS weight
        FROM cb_rows WHERE pool IS NULL OR pool NOT IN (SELECT pool FROM cb_weights)
        GROUP BY ALL
        UNION ALL
        SELECT {', '.join(f'p.{k}' for k in LINE_KEYS)}, {keyed}, w.rule_name AS origin,
               sum(floordiv(p.weight * w.w, t.total_w)) AS weight
        FROM (SELECT {lines}, pool, {all_g}, sum(amount_units) AS weight
              FROM cb_rows WHERE pool IS NOT NULL GROUP BY ALL) p
        JOIN cb_weights w USING (pool)
        JOIN (SELECT pool, sum(w) AS total_w FROM cb_weights GROUP BY pool) t USING (pool)
        GROUP BY ALL
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cb_lines AS
        SELECT {lines}, CAST(units_cents(sum(amount_units)) * 100 AS HUGEINT) AS cents
        FROM cb_rows GROUP BY ALL
    """)
    apportion_cents(con, parts="cb_parts", lines="cb_lines", line_keys=LINE_KEYS,
                    part_keys=[*gb, "origin"], out="cb_alloc")

    money = con.execute(f"""
        SELECT {', '.join(gb)}, meter, model, sum(cents)::BIGINT,
               (sum(cents) FILTER (WHERE origin <> ''))::BIGINT
        FROM cb_alloc GROUP BY ALL
    """).fetchall()
    # sessions: distinct per group, from the session-level (session, tags, agent, env) rows;
    # when the combinations' hashes are distinct (always, but checked) hashing one column
    # instead of three strings halves the cost of that distinct.
    if con.execute("SELECT count(DISTINCT h) = count(*) FROM cb_keys").fetchall()[0][0]:
        sessions = ("(SELECT DISTINCT session_id, hash(tags, agent_id, environment_id) AS h "
                    "FROM charges WHERE period = $period) c JOIN cb_keys k USING (h)")
    else:
        sessions = ("(SELECT DISTINCT session_id, tags, agent_id, environment_id FROM charges "
                    f"WHERE period = $period) c JOIN cb_keys k ON {_KEY_MATCH}")
    usage = con.execute(f"""
        WITH u AS (
            SELECT {', '.join(gb)},
                   coalesce(sum(quantity) FILTER (WHERE meter = 'runtime'), 0)::BIGINT AS rt,
                   coalesce(sum(quantity) FILTER (WHERE meter = 'tokens'), 0)::BIGINT AS tok
            FROM cb_rows GROUP BY ALL
        ), s AS (
            SELECT {', '.join(f'k.{g}' for g in gb)}, count(DISTINCT c.session_id) AS n
            FROM {sessions}
            GROUP BY ALL
        )
        SELECT {', '.join(f'u.{g}' for g in gb)}, coalesce(s.n, 0), u.rt, u.tok
        FROM u LEFT JOIN s ON {' AND '.join(f'u.{g} IS NOT DISTINCT FROM s.{g}' for g in gb)}
    """, {"period": period}).fetchall()
    unsplit = con.execute("""
        SELECT pool, sum(amount_units) FROM cb_rows
        WHERE pool IS NOT NULL AND pool NOT IN (SELECT pool FROM cb_weights) GROUP BY pool
    """).fetchall()

    n = len(by)
    acc: dict[tuple, dict[str, Any]] = {}

    def slot(key: tuple) -> dict[str, Any]:
        return acc.setdefault(key, {"runtime": 0, "tokens": {}, "web_search": 0, "shared": 0,
                                    "usage": (0, 0, 0)})

    for row in money:
        key, (meter, model, cents, shared) = tuple(row[:n]), row[n:]
        s = slot(key)
        if meter == "tokens":
            s["tokens"][model] = s["tokens"].get(model, 0) + cents
        else:
            s[meter] += cents
        s["shared"] += shared or 0
    for row in usage:
        slot(tuple(row[:n]))["usage"] = tuple(row[n:])

    def dollars(cents: int) -> Decimal:
        return Decimal(cents).scaleb(-2)

    groups = [ChargebackGroup(
        group=dict(zip(by, key, strict=True)), runtime=dollars(s["runtime"]),
        tokens={m: dollars(c) for m, c in s["tokens"].items()},
        web_search=dollars(s["web_search"]), shared=dollars(s["shared"]),
        sessions=s["usage"][0], running_ms=s["usage"][1], token_count=s["usage"][2],
    ) for key, s in acc.items()]
    grand = sum((g.total for g in groups), Decimal("0.00"))
    groups = sorted(
        (replace(g, share_pct=(g.total * 100 / grand).quantize(CENT, ROUND_HALF_EVEN)
                 if grand else None) for g in groups),
        key=lambda g: (-g.total, [g.group[k] for k in by]))

    invoice = build_invoice(con, period, as_of=as_of)
    if grand != invoice.total:  # cannot happen by construction; never print a wrong report
        raise AssertionError(f"chargeback {grand} differs from invoice {invoice.total}")
    warnings = [
        f"shared rule {rules.shared[pool].name!r}: no {rules.shared[pool].driver.replace('_', ' ')}"
        f" among its targets; its ${cents_of_units(amount)} stays with its own group"
        for pool, amount in unsplit]
    warnings += _untagged_warnings(con, period, by, keys, rules)
    if invoice.unrated:
        warnings.append(f"{len(invoice.unrated)} unrated usage line(s) are in no total; "
                        "see `agenttally invoice`")
    report = Chargeback(period=period, as_of=as_of, mode=mode, by=by,
                        currency=invoice.currency, provisional=invoice.provisional,
                        groups=groups, invoice_total=invoice.total, warnings=warnings)
    if contract is None:
        return report
    return _with_contract(con, report, contract)


_CONTRACT_COLUMNS = ("contract_adjustments", "internal_rate", "net")


def _with_contract(con: duckdb.DuckDBPyConnection, report: Chargeback,
                   contract: ContractSet) -> Chargeback:
    """The report with each group's share of the statement's lines and its internal rate
    (module docstring); reads `cb_alloc` of build_chargeback."""
    from pricing.contracts import InternalRates, ListItem
    from reports.statement import contract_run, distribute, fine_shares

    by = report.by
    run = contract_run(con, contract, report.period)
    statement = run.statement
    if statement.list_amount != report.total:  # cannot happen: both are the invoice's lines
        raise AssertionError(f"chargeback {report.total} differs from the statement's list "
                             f"amount {statement.list_amount}")
    gb = ", ".join(f"g{i}" for i in range(len(by)))
    rows = con.execute(f"""
        SELECT {gb}, meter, model, sum(cents)::BIGINT FROM cb_alloc
        GROUP BY ALL ORDER BY ALL
    """).fetchall()
    keys = [tuple(r[:len(by)]) for r in rows]
    items = [ListItem(Decimal(int(r[-1])).scaleb(-2), r[len(by)], r[len(by) + 1], None,
                      tuple(zip(by, r[:len(by)], strict=True))) for r in rows]
    weights, notes = fine_shares(run, items, by)
    internal = run.contract.internal if run.contract is not None else InternalRates()
    fallback = [Fraction(i.amount) for i in items]
    share: dict[tuple[str, ...], int] = {}
    leftover = 0
    for line in statement.lines:
        split = distribute(line, weights.get((line.kind, line.term_id)), fallback)
        if split is None:
            leftover += int(line.amount * 100)
            continue
        for key, cents in zip(keys, split, strict=True):
            share[key] = share.get(key, 0) + cents
    groups = {tuple(g.group[k] for k in by): g for g in report.groups}
    zero_group = ChargebackGroup(group={}, runtime=Decimal("0.00"), tokens={},
                                 web_search=Decimal("0.00"), shared=Decimal("0.00"),
                                 sessions=0, running_ms=0, token_count=0,
                                 share_pct=Decimal("0.00"))

    def recipient_key(key: str) -> tuple[str, ...]:
        return tuple(internal.recipient if k == key else "-" for k in by)

    def ensure(key: tuple[str, ...]) -> None:
        if key not in groups:
            groups[key] = replace(zero_group, group=dict(zip(by, key, strict=True)))

    if leftover:
        key = recipient_key(by[0])
        match = [k for k in groups if k[0] == internal.recipient]
        key = match[0] if match else key
        ensure(key)
        share[key] = share.get(key, 0) + leftover
        notes.append(f"${Decimal(leftover).scaleb(-2)} of contract adjustments with no usage "
                     f"to weigh them went to {internal.recipient!r}")
    internal_cents = _internal_rates(groups, share, by, internal, notes, recipient_key, ensure)
    out = [replace(g, contract=Decimal(share.get(k, 0)).scaleb(-2).quantize(CENT),
                   internal=Decimal(internal_cents.get(k, 0)).scaleb(-2).quantize(CENT))
           for k, g in groups.items()]
    report = replace(report, groups=out, statement=statement, internal_mode=internal.mode,
                     warnings=[*report.warnings, *notes])
    if report.amount_due != statement.amount_due:  # cannot happen by construction
        raise AssertionError(f"chargeback net {report.amount_due} differs from the amount due "
                             f"{statement.amount_due}")
    return report


def _internal_rates(groups: dict[tuple[str, ...], ChargebackGroup],
                    share: dict[tuple[str, ...], int], by: tuple[str, ...],
                    internal: InternalRates, notes: list[str], recipient_key: Any,
                    ensure: Any) -> dict[tuple[str, ...], int]:
    """Each group's internal rate in cents (markup of its net rounded half-even once, plus
    the fixed fee); the recipient gets minus their sum. Showback: none."""
    out: dict[tuple[str, ...], int] = {}
    if internal.mode == "showback" or not internal.rates:
        return out
    usable = [r for r in internal.rates if r.key in by]
    for rate in internal.rates:
        if rate.key not in by:
            notes.append(f"internal rate for {rate.key} = {rate.value!r} not applied: the "
                         f"chargeback is not grouped by {rate.key}")
    if not usable:
        return out
    received: dict[str, int] = {}
    for key, group in list(groups.items()):
        for k in by:
            group_rate = internal.rate_for(k, group.group[k])
            if group_rate is None or group_rate not in usable:
                continue
            net = int(group.total * 100) + share.get(key, 0)
            markup = Fraction(max(net, 0)) * Fraction(group_rate.markup_percent) / 100
            cents = round(markup) + int(group_rate.fixed_usd * 100)
            if cents:
                out[key] = out.get(key, 0) + cents
                received[k] = received.get(k, 0) + cents
            break
    for k, cents in received.items():
        match = [key for key in groups if groups[key].group[k] == internal.recipient]
        target = match[0] if match else recipient_key(k)
        ensure(target)
        out[target] = out.get(target, 0) - cents
    return out


def _untagged_warnings(con: duckdb.DuckDBPyConnection, period: str, by: Sequence[str],
                       keys: Sequence[str], rules: AllocationRules) -> list[str]:
    """One warning per grouping key that no charge of the period carries (from any source the
    rules read): its whole cost sits in the default group, which is rarely what was meant."""
    found = con.execute(
        "SELECT count(*), " + ", ".join(f"bool_or(found{keys.index(k)})" for k in by)
        + " FROM cb_keys").fetchall()[0]
    if not found[0]:
        return []  # no usage in the period: nothing was allocated
    where = _sources_text(rules.tags.precedence)
    return [f"no {where} of {period} carries tag {key!r}: all of the period's cost is under "
            f"{rules.tags.default!r}" for key, carried in zip(by, found[1:], strict=True)
            if not carried]
