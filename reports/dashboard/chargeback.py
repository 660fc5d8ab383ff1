"""Chargeback page data: reports.chargeback under the dashboard's filters, and the downloads.

The report itself (allocation rules, shared pools, cents apportioned so that groups add up to
the invoice) is `reports.chargeback`; this module only narrows what it reads. Report
functions read the table named `charges`, and on a connection a temp table shadows the
store's table of the same name, so `narrow_charges` puts the filtered lines in a temp
`charges` and every report (chargeback, invoice, FOCUS, exports) sees only them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from meter.settings import setting
from meter.store import current_catalog
from reports.dashboard.filters import Filters, filtered_charges

__all__ = ["RULES_ENV", "chargeback_report", "export_bytes", "group_keys", "narrow_charges",
           "rules_path"]

RULES_ENV = "AGENTTALLY_ALLOCATION"
EXPORTS = ("chargeback", "charges", "focus")


def rules_path() -> Path | None:
    """The allocation rules file in use: $AGENTTALLY_ALLOCATION, else none (the defaults of
    `agenttally chargeback` without --rules: session > agent > environment tags, nothing
    shared)."""
    env = setting(RULES_ENV)
    return Path(env) if env else None


def narrow_charges(con: duckdb.DuckDBPyConnection, f: Filters) -> None:
    """Shadow `charges` by a temp table of the lines passing `f`'s team, agent and model
    filters (every period). Without such filters the store's table is used as is."""
    con.execute("DROP TABLE IF EXISTS temp.main.charges")
    if not (f.teams or f.agents or f.models):
        return
    source = current_catalog(con) + ".main.charges"
    sub, params = filtered_charges(f.without_period(), source=source)
    con.execute(f"CREATE TEMP TABLE charges AS SELECT * FROM {sub}", params)


def group_keys(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tag keys to group by: team and project first, then every other key the tags use."""
    keys = {r[0] for r in con.execute("""
        SELECT DISTINCT unnest(json_keys(tags)) FROM (SELECT DISTINCT tags FROM charges)
        WHERE json_type(tags) = 'OBJECT'
    """).fetchall()}
    first = [k for k in ("team", "project", "cost_center") if k in keys] or ["team"]
    return first + sorted(keys - set(first))


def chargeback_report(con: duckdb.DuckDBPyConnection, f: Filters, by: str,
                      mode: str = "chargeback") -> dict[str, Any]:
    """The chargeback of `f.period` grouped by tag key `by`, as small frames.

    Returns {"table": wide DataFrame (money as float, rounded), "tree": group x meter
    amounts for a treemap, "total", "invoice_total" (Decimal), "warnings", "rules",
    "provisional"}.
    """
    from reports.allocation import load_rules
    from reports.chargeback import build_chargeback

    if not f.period:
        raise ValueError("the chargeback needs a period")
    narrow_charges(con, f)
    path = rules_path()
    rules = load_rules(path) if path else None
    cb = build_chargeback(con, f.period, by=[by], rules=rules, mode=mode)
    columns = cb.columns()
    table = pd.DataFrame(cb.rows(with_total=False), columns=columns)
    for col in columns[1:]:
        table[col] = pd.to_numeric(table[col], errors="coerce")
    tree = []
    for g in cb.groups:
        label = g.group[by]
        if g.runtime:
            tree.append((label, "Runtime", float(g.runtime)))
        for model, amount in sorted(g.tokens.items()):
            if amount:
                tree.append((label, f"Tokens · {model}", float(amount)))
        if g.web_search:
            tree.append((label, "Web search", float(g.web_search)))
    return {
        "table": table, "tree": pd.DataFrame(tree, columns=["group", "series", "amount"]),
        "total": cb.total, "invoice_total": cb.invoice_total, "warnings": list(cb.warnings),
        "rules": str(path) if path else None, "provisional": cb.provisional, "by": by,
        "mode": mode,
    }


def export_bytes(con: duckdb.DuckDBPyConnection, f: Filters, what: str, fmt: str,
                 *, by: str = "team", mode: str = "chargeback") -> bytes:
    """A download: the chargeback table, the period's charge lines, or FOCUS 1.2 rows, as
    CSV or Parquet bytes, written by reports.exports / reports.focus."""
    if what not in EXPORTS:
        raise ValueError(f"export: what must be one of {', '.join(EXPORTS)}, got {what!r}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"export: format must be csv or parquet, got {fmt!r}")
    if not f.period:
        raise ValueError("an export needs a period")
    narrow_charges(con, f)
    with tempfile.TemporaryDirectory(prefix="agenttally-export-") as tmp:
        path = Path(tmp) / f"export.{fmt}"
        if what == "chargeback":
            from reports.allocation import load_rules
            from reports.chargeback import build_chargeback
            from reports.exports import write_rows

            rules_file = rules_path()
            cb = build_chargeback(con, f.period, by=[by], mode=mode,
                                  rules=load_rules(rules_file) if rules_file else None)
            write_rows(cb.columns(), cb.rows(), path, fmt=fmt)
        elif what == "charges":
            from reports.exports import export_charges

            export_charges(con, path, period=f.period, fmt=fmt)
        else:
            from reports.focus import write_focus

            write_focus(con, f.period, path, fmt=fmt)
        return path.read_bytes()
