"""Closing a period: its invoice issued once and kept; late usage billed as corrections.

The late-usage policy, as a provider runs it:
- A month stays open while usage may still arrive for it: until it is closed, and `close`
  waits `grace_days` (AGENTTALLY_GRACE_DAYS, default 3) after the month ends (`--early`
  overrides). Until then, late usage simply lands in its month.
- `close --period P` issues P's invoice: its lines, total, the as-of, the price-book versions
  and the SHA-256 of the JSON document are stored (`billing_documents`), and every line in
  `billed_lines`. From then on `invoice --period P` returns that document, byte for byte,
  whatever arrives later or whichever price book is edited.
- Usage that reaches a closed period afterwards (late events, or a price-book edit that
  changes it) is billed as a *correction* in the next open period after it: per invoice line,
  what P costs now (rounded once, as any invoice line) minus what has been billed for P so
  far (its invoice, and corrections already issued). A correction line names the period it
  corrects; FOCUS exports it with ChargeClass "Correction".
- `close --reissue --period P` issues a new version of P's invoice from the ledger, with a
  credit or debit note for the difference against everything billed for P; corrections still
  pending for P are then settled by it.
- Chargeback and budgets follow usage, not billing: a late session counts for its team in
  the month it ran (the ledger's numbers); only the invoice moves it to a later month.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb

from meter.errors import UsageError
from meter.settings import SETTINGS, setting
from meter.store import has_stored_table
from meter.vocabulary import DAY_MS, LINE_KEYS, METER_ORDER, TOKEN_CLASSES, Period, iso_ms
from reports.invoice import DEFAULT_GROUP_BY, Invoice, InvoiceLine, build_invoice

__all__ = ["CloseRefused", "Issued", "LatePolicy", "close_period", "closed_periods",
           "corrections_due", "invoice_of"]

Key = tuple[str | None, str | None, str | None, str | None]  # meter, model, class, tier


@dataclass(frozen=True)
class LatePolicy:
    """How long a month waits for late usage before it may be closed."""

    grace_days: int = 3

    @classmethod
    def from_settings(cls) -> LatePolicy:
        text = setting("AGENTTALLY_GRACE_DAYS") or SETTINGS["AGENTTALLY_GRACE_DAYS"].default
        try:
            days = int(str(text))
        except ValueError:
            days = -1
        if days < 0:
            raise UsageError(f"AGENTTALLY_GRACE_DAYS: {text!r} is not a number of days; "
                             "expected a whole number >= 0, e.g. 3")
        return cls(grace_days=days)


class CloseRefused(UsageError):
    """A period that cannot be closed (or reissued) as asked. `about` names the argument at
    fault ("period" or "reissue"); `override`, the option that would close it anyway
    ("early", "allow_running", "reissue"), if any."""

    def __init__(self, message: str, *, about: str = "period", override: str | None = None):
        super().__init__(message)
        self.about, self.override = about, override


@dataclass(frozen=True)
class Issued:
    """What `close` issued: the invoice, and on a reissue the note against the old one."""

    document_id: str
    invoice: Invoice
    sha256: str
    note: dict[str, Any] | None = None


def closed_periods(con: duckdb.DuckDBPyConnection) -> list[Period]:
    """Every period with an issued invoice, oldest first."""
    if not has_stored_table(con, "billing_documents"):
        return []
    return [Period.parse(p) for (p,) in con.execute(
        "SELECT DISTINCT period FROM billing_documents WHERE kind = 'invoice' ORDER BY 1"
    ).fetchall()]


def _issued(con: duckdb.DuckDBPyConnection, period: Period) -> tuple[str, int, str] | None:
    """(document id, version, JSON) of the period's latest issued invoice."""
    if not has_stored_table(con, "billing_documents"):
        return None
    rows = con.execute("""
        SELECT document_id, version, document FROM billing_documents
        WHERE kind = 'invoice' AND period = $p ORDER BY version DESC LIMIT 1
    """, {"p": str(period)}).fetchall()
    return (rows[0][0], int(rows[0][1]), rows[0][2]) if rows else None


def next_open(period: Period, closed: Sequence[Period]) -> Period:
    """The first period after `period` that is not closed: where its corrections are billed."""
    shut = set(closed)
    following = period.next()
    while following in shut:
        following = following.next()
    return following


def _key(line: InvoiceLine) -> Key:
    return (line.meter, line.model, line.token_class, line.tier)


def _billed(con: duckdb.DuckDBPyConnection, usage: Period) -> dict[Key, tuple[int, Decimal]]:
    """Per invoice line of `usage`'s period: quantity and amount billed for it so far."""
    rows = con.execute("""
        SELECT meter, model, token_class, tier, sum(quantity)::BIGINT, sum(amount)
        FROM billed_lines WHERE usage_period = $p GROUP BY ALL
    """, {"p": str(usage)}).fetchall()
    return {(r[0], r[1], r[2], r[3]): (int(r[4]), Decimal(r[5])) for r in rows}


def _differences(con: duckdb.DuckDBPyConnection, usage: Period, as_of: str
                 ) -> list[InvoiceLine]:
    """What `usage`'s period costs now (from `charges`) minus what was billed for it, per
    invoice line: correction lines (amount_exact is the rounded difference: what was billed
    before was rounded)."""
    now = {_key(ln): ln for ln in build_invoice(con, str(usage), as_of=as_of).lines}
    billed = _billed(con, usage)
    lines = []
    for key in sorted(set(now) | set(billed), key=_order):
        quantity, amount = billed.get(key, (0, Decimal("0.00")))
        line = now.get(key)
        d_quantity = (line.quantity if line else 0) - quantity
        d_amount = (line.amount if line else Decimal("0.00")) - amount
        if d_quantity == 0 and d_amount == 0:
            continue
        lines.append(InvoiceLine(
            meter=key[0], model=key[1], token_class=key[2], tier=key[3], quantity=d_quantity,
            unit=line.unit if line else None, unit_price=line.unit_price if line else None,
            amount_exact=d_amount, amount=d_amount, group=dict(zip(LINE_KEYS, key, strict=True)),
            charge_class="correction", corrects_period=str(usage)))
    return lines


def _order(key: Key) -> tuple[Any, ...]:
    """Invoice order: meter, model, token class, standard tier first."""
    meter, model, token_class, tier = key
    return (METER_ORDER.index(meter) if meter in METER_ORDER else len(METER_ORDER),
            model or "",
            TOKEN_CLASSES.index(token_class) if token_class in TOKEN_CLASSES
            else len(TOKEN_CLASSES),
            tier != "standard", tier or "")


def corrections_due(con: duckdb.DuckDBPyConnection, period: Period, as_of: str
                    ) -> list[InvoiceLine]:
    """Correction lines billed in open `period`: for each closed period whose next open one
    it is, what changed since it was billed (reads `charges`)."""
    closed = closed_periods(con)
    lines: list[InvoiceLine] = []
    for earlier in closed:
        if earlier < period and next_open(earlier, closed) == period:
            lines += _differences(con, earlier, as_of)
    return lines


def invoice_of(con: duckdb.DuckDBPyConnection, period: Period, *, as_of: str,
               group_by: tuple[str, ...] = DEFAULT_GROUP_BY) -> Invoice:
    """The invoice of `period`: the issued document if it is closed, else its lines from
    `charges` and the corrections due in it."""
    issued = _issued(con, period)
    if issued is not None:
        if tuple(group_by) != DEFAULT_GROUP_BY:
            raise UsageError(f"{period} is closed: its issued invoice has one line per "
                             f"{', '.join(DEFAULT_GROUP_BY)}; for other groupings of its "
                             "usage ask chargeback")
        return Invoice.from_json(issued[2])
    invoice = build_invoice(con, str(period), as_of=as_of, group_by=group_by)
    corrections = corrections_due(con, period, as_of)
    if not corrections:
        return invoice
    grouped = [InvoiceLine(**{**line.__dict__, "group": {g: line.group.get(g) for g in group_by}})
               for line in corrections]
    return Invoice(period=invoice.period, as_of=invoice.as_of, currency=invoice.currency,
                   provisional=invoice.provisional, lines=[*invoice.lines, *grouped],
                   unrated=invoice.unrated)


def _check_closable(con: duckdb.DuckDBPyConnection, period: Period, now_ms: int,
                    policy: LatePolicy, *, early: bool, allow_running: bool) -> None:
    if period.start_ms > now_ms:
        raise CloseRefused(f"{period} is in the future; only a month that has ended can be "
                           "closed")
    if period.end_ms > now_ms:
        raise CloseRefused(f"{period} has not ended (it ends {iso_ms(period.end_ms)}); only a "
                           "month that has ended can be closed")
    grace_end = period.end_ms + policy.grace_days * DAY_MS
    if grace_end > now_ms and not early:
        raise CloseRefused(f"{period} is in its grace period until {iso_ms(grace_end)} (late "
                           "usage still lands in it); close it then", override="early")
    first = con.execute("SELECT min(at_ms) FROM events").fetchall()[0][0]
    if first is None or first >= period.end_ms:
        raise CloseRefused(f"{period} is unknown to this store: it holds no usage in or "
                           "before it")
    running = [r[0] for r in con.execute("""
        SELECT DISTINCT session_id FROM charges WHERE period = $p AND provisional ORDER BY 1
    """, {"p": str(period)}).fetchall()]
    if running and not allow_running:
        shown = ", ".join(running[:5]) + (", ..." if len(running) > 5 else "")
        raise CloseRefused(f"{period} still has {len(running)} running session"
                           f"{'s' if len(running) != 1 else ''} ({shown}); close it when they "
                           "stop", override="allow_running")


def _store_document(con: duckdb.DuckDBPyConnection, document_id: str, kind: str,
                    period: Period, version: int, issued_ms: int, as_of_ms: int,
                    books: Sequence[str], total: Decimal, document: str,
                    lines: Sequence[InvoiceLine]) -> str:
    digest = hashlib.sha256(document.encode()).hexdigest()
    con.execute("INSERT INTO billing_documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [document_id, kind, str(period), version, issued_ms, as_of_ms,
                 ",".join(books), total, digest, document])
    if lines:
        con.executemany("INSERT INTO billed_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            [document_id, str(period), line.corrects_period or str(period), line.meter,
             line.model, line.token_class, line.tier, line.quantity, line.amount]
            for line in lines])
    return digest


def close_period(con: duckdb.DuckDBPyConnection, period: Period, *, as_of_ms: int,
                 now_ms: int, books: Sequence[str], policy: LatePolicy,
                 early: bool = False, allow_running: bool = False,
                 reissue: bool = False) -> Issued:
    """Issue `period`'s invoice from `charges` (the ledger as of `as_of_ms`) and store it;
    with `reissue`, a new version of a closed period's invoice and a note against what was
    billed for it before. One transaction."""
    issued = _issued(con, period)
    if reissue and issued is None:
        raise CloseRefused(f"{period} is not closed; close it first", about="reissue")
    if not reissue and issued is not None:
        raise CloseRefused(f"{period} is already closed ({issued[0]})", override="reissue")
    if not reissue:
        _check_closable(con, period, now_ms, policy, early=early,
                        allow_running=allow_running)
    as_of = iso_ms(as_of_ms)
    current = build_invoice(con, str(period), as_of=as_of)
    usage = current.lines
    version = 1 if issued is None else issued[1] + 1
    document_id = f"INV-{period}-v{version}"
    if issued is None:
        carried = corrections_due(con, period, as_of)
    else:
        carried = [ln for ln in Invoice.from_json(issued[2]).lines
                   if ln.charge_class == "correction"]
    note_lines = _differences(con, period, as_of) if issued is not None else []
    provisional = bool(con.execute(
        "SELECT coalesce(bool_or(provisional), false) FROM charges WHERE period = $p",
        {"p": str(period)}).fetchall()[0][0])
    unrated = current.unrated
    invoice = Invoice(period=str(period), as_of=as_of, currency="USD", provisional=provisional,
                      lines=[*usage, *carried], unrated=unrated, status="issued",
                      version=version, issued_at=iso_ms(now_ms), books=tuple(books))
    document = invoice.to_json()
    note = None
    con.execute("BEGIN TRANSACTION")
    try:
        if issued is None:
            digest = _store_document(con, document_id, "invoice", period, version, now_ms,
                                     as_of_ms, books, invoice.total, document,
                                     [*usage, *carried])
        else:
            digest = _store_document(con, document_id, "invoice", period, version, now_ms,
                                     as_of_ms, books, invoice.total, document, [])
            note = _note(period, version, issued[0], now_ms, note_lines)
            _store_document(con, f"NOTE-{period}-v{version}", "note", period, version,
                            now_ms, as_of_ms, books, Decimal(note["total"]),
                            json.dumps(note, indent=2), note_lines)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return Issued(document_id=document_id,
                  invoice=Invoice.from_json(document), sha256=digest, note=note)


def _note(period: Period, version: int, against: str, now_ms: int,
          lines: Sequence[InvoiceLine]) -> dict[str, Any]:
    """The credit (negative) or debit note of a reissue: per line, what the period costs now
    minus everything billed for it before."""
    total = sum((ln.amount for ln in lines), Decimal("0.00"))
    return {
        "document": f"NOTE-{period}-v{version}",
        "kind": "credit_note" if total < 0 else "debit_note",
        "period": str(period), "against": against, "issued_at": iso_ms(now_ms),
        "lines": [{"meter": ln.meter, "model": ln.model, "token_class": ln.token_class,
                   "tier": ln.tier, "quantity": ln.quantity, "unit": ln.unit,
                   "amount": str(ln.amount)} for ln in lines],
        "total": str(total),
    }
