"""Invoices: the period's charges grouped into lines, rounded once, half-even to the cent.

The JSON form (`Invoice.to_json`) is a stable contract for other tools:
{"period", "as_of", "currency", "provisional", "status",
 "lines": [{"meter", "model", "token_class", "tier", "quantity", "unit", "unit_price",
            "amount_exact", "amount", "charge_class", "corrects_period"}],
 "unrated": [{"model", "token_class", "quantity", "unit", "reason"}],
 "total"}
plus, once the period is closed (reports.closing), "version", "issued_at" and "books"; and,
under a contract (pricing.contracts, reports.statement), "contract", "list_amount",
"adjustments": [{"kind", "term_id", "description", "amount", "amount_exact",
"charge_category"}], "amount_due", "credit_balances" and "commitments" after "total" (an
invoice without a contract is unchanged). `total` stays the list total of the lines; the
amount due is the list amount plus each adjustment (each rounded once), never below zero,
plus any correction lines (billed at list).
`status` is "open" (the numbers may still change) or "issued" (the document is stored and
never changes); a line's `charge_class` is "usage", or "correction" for late usage of the
closed period `corrects_period` billed in this one.
Money is a decimal string; unit_price is null when a line mixes prices (two books, or
data-residency and global usage under one model). A line's amount is its exact amount (the
sum of its charges in pricing.money's units, so runtime sums are exact) rounded once,
half-even to the cent; `tier` is "standard" or "long_context", and the tiers' quantities add
up to the usage.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

import duckdb

from meter.errors import UsageError
from meter.vocabulary import LINE_KEYS, PRICE_UNITS
from pricing.money import cents_of_units, usd_of_units
from reports.render import plain_decimal

if TYPE_CHECKING:
    from pricing.contracts import Statement

GROUPABLE = ("meter", "model", "token_class", "tier", "team", "project", "session_id", "day",
             "book_version")
DEFAULT_GROUP_BY = LINE_KEYS
_ORDER = (("meter", "CASE meter WHEN 'runtime' THEN 0 WHEN 'tokens' THEN 1 ELSE 2 END"),
          ("token_class", "CASE token_class WHEN 'input' THEN 0 WHEN 'output' THEN 1 "
           "WHEN 'cache_write_5m' THEN 2 WHEN 'cache_write_1h' THEN 3 WHEN 'cache_read' THEN 4 "
           "ELSE 5 END"),
          ("tier", "CASE tier WHEN 'standard' THEN 0 ELSE 1 END, tier"))
_COLUMN_SQL = {"team": "tags->>'$.team'", "project": "tags->>'$.project'"}


@dataclass(frozen=True)
class InvoiceLine:
    meter: str | None
    model: str | None
    token_class: str | None
    tier: str | None
    quantity: int
    unit: str | None
    unit_price: Decimal | None
    amount_exact: Decimal
    amount: Decimal
    group: dict[str, Any] = field(default_factory=dict)
    charge_class: str = "usage"  # or "correction": late usage of a closed period
    corrects_period: str | None = None


@dataclass(frozen=True)
class UnratedLine:
    model: str | None
    token_class: str | None
    quantity: int
    unit: str
    reason: str


@dataclass(frozen=True)
class Invoice:
    period: str
    as_of: str
    currency: str
    provisional: bool
    lines: list[InvoiceLine]
    unrated: list[UnratedLine]
    status: str = "open"  # or "issued": closed, stored, never changes
    version: int | None = None
    issued_at: str | None = None
    books: tuple[str, ...] = ()  # name@version of the books the issued lines were rated with
    document: str | None = field(default=None, repr=False)  # the issued JSON, as stored
    contract: Statement | None = None  # the period under a contract (reports.statement)

    @property
    def total(self) -> Decimal:
        """The sum of the rounded lines, as printed: never a re-rounded exact sum."""
        return sum((line.amount for line in self.lines), Decimal("0.00"))

    @property
    def amount_due(self) -> Decimal:
        """What is owed: the total without a contract; under one, the statement's amount due
        plus the correction lines (late usage of closed periods, billed at list)."""
        if self.contract is None:
            return self.total
        return self.contract.amount_due + self._corrections

    @property
    def list_amount(self) -> Decimal:
        """The list amount the contract applies to, plus the correction lines; without a
        contract, the total. (Equal to the total unless the lines are grouped finer than
        meter x model x token class x tier, each line then being rounded on its own.)"""
        if self.contract is None:
            return self.total
        return self.contract.list_amount + self._corrections

    @property
    def _corrections(self) -> Decimal:
        return sum((ln.amount for ln in self.lines if ln.charge_class == "correction"),
                   Decimal("0.00"))

    def to_json(self) -> str:
        """The JSON document; for an issued invoice, exactly the stored one (under a contract,
        with the contract's keys added after it)."""
        if self.contract is not None:
            return self._with_contract(self.document or self._document())
        if self.document is not None:
            return self.document
        return self._document()

    def _with_contract(self, document: str) -> str:
        from reports.statement import statement_json

        assert self.contract is not None
        data = json.loads(document)
        data.update(statement_json(self.contract))
        data.update(list_amount=str(self.list_amount), amount_due=str(self.amount_due))
        return json.dumps(data, indent=2)

    def _document(self) -> str:
        def money(value: Decimal | None) -> str | None:
            return None if value is None else plain_decimal(value)

        lines = []
        for line in self.lines:
            row = {k: v for k, v in asdict(line).items()
                   if k not in ("group", "charge_class", "corrects_period")}
            row.update(unit_price=money(line.unit_price), amount=str(line.amount),
                       amount_exact=money(line.amount_exact))
            row.update({k: v for k, v in line.group.items() if k not in row})
            row.update(charge_class=line.charge_class, corrects_period=line.corrects_period)
            lines.append(row)
        issued = ({"version": self.version, "issued_at": self.issued_at,
                   "books": list(self.books)} if self.status == "issued" else {})
        return json.dumps({
            "period": self.period, "as_of": self.as_of, "currency": self.currency,
            "provisional": self.provisional, "status": self.status, **issued, "lines": lines,
            "unrated": [asdict(u) for u in self.unrated], "total": str(self.total),
        }, indent=2)

    @classmethod
    def from_json(cls, document: str) -> Invoice:
        """An invoice read back from its JSON (an issued one keeps the text as stored)."""
        data = json.loads(document)
        known = {f for f in InvoiceLine.__dataclass_fields__ if f != "group"}

        def decimal(value: str | None) -> Decimal | None:
            return None if value is None else Decimal(value)

        lines = [InvoiceLine(
            meter=ln["meter"], model=ln["model"], token_class=ln["token_class"],
            tier=ln["tier"], quantity=ln["quantity"], unit=ln["unit"],
            unit_price=decimal(ln["unit_price"]),
            amount_exact=Decimal(ln["amount_exact"]), amount=Decimal(ln["amount"]),
            group={k: v for k, v in ln.items() if k not in known},
            charge_class=ln.get("charge_class", "usage"),
            corrects_period=ln.get("corrects_period")) for ln in data["lines"]]
        return cls(period=data["period"], as_of=data["as_of"], currency=data["currency"],
                   provisional=data["provisional"], lines=lines,
                   unrated=[UnratedLine(**u) for u in data["unrated"]],
                   status=data.get("status", "open"), version=data.get("version"),
                   issued_at=data.get("issued_at"), books=tuple(data.get("books", ())),
                   document=document if data.get("status") == "issued" else None)


def build_invoice(
    con: duckdb.DuckDBPyConnection,
    period: str,
    *,
    as_of: str,
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY,
) -> Invoice:
    """The invoice of `period` (YYYY-MM) from relation `charges` and `unrated` on `con`."""
    unknown = [g for g in group_by if g not in GROUPABLE]
    if unknown:
        raise UsageError(f"unknown invoice column {unknown[0]!r} to group by; "
                         f"choose from {', '.join(GROUPABLE)}")
    keys = [f"{_COLUMN_SQL.get(g, g)} AS {g}" for g in group_by]
    for needed in LINE_KEYS:
        if needed not in group_by:
            keys.append(f"NULL AS {needed}")
    order = [dict(_ORDER).get(g, f"{g} NULLS FIRST") for g in group_by]
    rows = con.execute(f"""
        SELECT * FROM (
            SELECT {', '.join(keys)}, sum(quantity)::BIGINT AS quantity,
                   CASE WHEN count(DISTINCT unit) = 1 THEN any_value(unit) END AS unit,
                   CASE WHEN count(DISTINCT unit_price) = 1 THEN any_value(unit_price) END
                       AS unit_price,
                   sum(amount_units) AS amount_units, bool_or(provisional) AS provisional
            FROM charges WHERE period = $period GROUP BY ALL)
        ORDER BY {', '.join(order)}
    """, {"period": period}).fetchall()
    lines = []
    for row in rows:
        named = dict(zip([k.split(" AS ")[-1] for k in keys], row, strict=False))
        quantity, unit, unit_price, units, _ = row[len(keys):]
        lines.append(InvoiceLine(
            meter=named.get("meter"), model=named.get("model"),
            token_class=named.get("token_class"), tier=named.get("tier"),
            quantity=int(quantity), unit=unit,
            unit_price=None if unit_price is None else Decimal(unit_price).normalize(),
            amount_exact=usd_of_units(units or 0), amount=cents_of_units(units or 0),
            group={g: named[g] for g in group_by},
        ))
    provisional = bool(con.execute(
        "SELECT coalesce(bool_or(provisional), false) FROM charges WHERE period = $period",
        {"period": period}).fetchall()[0][0])
    unrated = [UnratedLine(*r) for r in con.execute("""
        SELECT model, token_class, sum(quantity)::BIGINT, unit, reason FROM unrated
        WHERE period = $period GROUP BY ALL ORDER BY model NULLS FIRST, token_class
    """, {"period": period}).fetchall()]
    return Invoice(period=period, as_of=as_of, currency="USD", provisional=provisional,
                   lines=lines, unrated=unrated)


def invoice_table(invoice: Invoice) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows for the human table, with the total as the last row."""
    group_cols = [g for g in (invoice.lines[0].group if invoice.lines else {})
                  if g not in LINE_KEYS]
    corrections = any(ln.charge_class == "correction" for ln in invoice.lines)
    extra = ["corrects"] if corrections else []
    columns = [*LINE_KEYS, *group_cols, *extra, "quantity", "unit", "hours", "unit_price",
               "price_unit", "amount"]
    # (only token lines have tiers worth reading; the JSON says "standard" for the others)
    rows = [[ln.meter, ln.model, ln.token_class, ln.tier if ln.meter == "tokens" else None,
             *[ln.group.get(g) for g in group_cols],
             *([ln.corrects_period] if corrections else []),
             ln.quantity, ln.unit, _hours(ln), ln.unit_price,
             PRICE_UNITS.get(ln.meter or "") if ln.unit_price is not None else None,
             ln.amount] for ln in invoice.lines]
    blank = [None for _ in group_cols] + [None for _ in extra]
    statement = invoice.contract
    if statement is None:
        rows.append(["TOTAL", None, None, None, *blank, None, None, None, None, None,
                     invoice.total])
        return columns, rows
    # under a contract: the list amount, each adjustment on its own row, the amount due
    rows.append(["LIST AMOUNT", None, None, None, *blank, None, None, None, None, None,
                 invoice.list_amount])
    for line in statement.lines:
        rows.append([line.kind.replace("_", " "), line.term_id, None, None, *blank, None,
                     None, None, None, None, line.amount])
    rows.append(["AMOUNT DUE", None, None, None, *blank, None, None, None, None, None,
                 invoice.amount_due])
    return columns, rows


def _hours(line: InvoiceLine) -> Decimal | None:
    """A runtime line's milliseconds as session-hours (to the hundredth), for people."""
    if line.unit != "ms":
        return None
    return (Decimal(line.quantity) / Decimal(3_600_000)).quantize(Decimal("0.01"),
                                                                   ROUND_HALF_EVEN)


# Said under the table when a line has no unit price.
MIXED_PRICE_NOTE = ("(a blank unit_price: the line sums usage at more than one price: price-book "
                    "versions, fast mode or US residency; --group-by ...,book_version or the "
                    "charges export shows each)")
