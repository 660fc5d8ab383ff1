"""Rows to text: a neat table for people, JSON and CSV for machines (stable column order)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from meter.errors import UsageError

FORMATS = ("table", "json", "csv")
EXPORT_FORMATS = ("csv", "parquet")  # files other tools read (reports.exports)


def plain_decimal(value: Decimal) -> str:
    """A decimal as people write it: no exponent, no trailing zeros past the cent."""
    text = format(value.normalize(), "f")
    if "." not in text or len(text.split(".")[1]) < 2:
        text = f"{value:.2f}"
    return text


def _plain(value: Any) -> Any:
    """JSON-safe value: money as a decimal string (never a float), times as ISO 8601."""
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _cell(value: Any, places: int | None = None) -> str:
    if value is None:
        return ""
    if places is not None and isinstance(value, Decimal):
        return f"{value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN):,}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(_plain(value))


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table",
           places: Mapping[str, int] | None = None) -> str:
    """Render rows in one of FORMATS; in a table, the decimal columns named in `places` are
    shown with that many decimals (half-even), aligned (JSON and CSV stay exact)."""
    if fmt == "json":
        return json.dumps([{c: _plain(v) for c, v in zip(columns, r, strict=True)} for r in rows],
                          indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_plain(v) if v is not None else "" for v in r] for r in rows])
        return out.getvalue().rstrip("\n")
    if fmt != "table":
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    fixed = [(places or {}).get(c) for c in columns]
    cells = [[_cell(v, p) for v, p in zip(r, fixed, strict=True)] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r[i], int | float | Decimal) or r[i] is None for r in rows) and rows
               for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])
