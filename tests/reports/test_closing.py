"""Closing periods: issued invoices never change; late usage is billed as corrections.

Every amount by hand, at Opus 5 list prices ($5/M input, $25/M output, $0.08/session-hour):
- October, on time: 1 h running (0.08), 50,000 input (0.25), 15,000 output (0.375 -> 0.38):
  the issued invoice is $0.71.
- October, late (a session of 20 Oct arriving after the close): 30 min (0.04), 100,000
  input (0.50). October now costs 1.5 h = 0.12 and 150,000 input = 0.75: the corrections are
  +0.04 and +0.50, billed in November.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

import agenttally
from agenttally.cli import main
from meter.vocabulary import Period, parse_instant
from pricing.pricebook import default_pricebook_dir
from reports.closing import LatePolicy, close_period
from tests.conftest import session_record, snapshot, status

ON_TIME = [
    session_record("s1", created_at="2026-10-10T08:00:00Z"),
    status("s1", "s1a", "2026-10-10T09:00:00.000Z", "running"),
    snapshot("s1", "s1b", "2026-10-10T09:59:59.000Z", input=50_000, output=15_000),
    status("s1", "s1c", "2026-10-10T10:00:00.000Z", "idle"),
]
LATE = [
    session_record("s2", created_at="2026-10-20T08:00:00Z"),
    status("s2", "s2a", "2026-10-20T09:00:00.000Z", "running"),
    snapshot("s2", "s2b", "2026-10-20T09:10:00.000Z", input=100_000),
    status("s2", "s2c", "2026-10-20T09:30:00.000Z", "idle"),
]
NOVEMBER = [
    session_record("s3", created_at="2026-11-05T08:00:00Z"),
    status("s3", "s3a", "2026-11-05T09:00:00.000Z", "running"),
    status("s3", "s3b", "2026-11-05T10:00:00.000Z", "idle"),
]
LATER_STILL = [
    session_record("s4", created_at="2026-10-25T08:00:00Z"),
    status("s4", "s4a", "2026-10-25T09:00:00.000Z", "running"),
    status("s4", "s4b", "2026-10-25T10:00:00.000Z", "idle"),
]


def _ingest(db: str, tmp_path: Path, events: list[dict], name: str, capsys) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert main(["ingest", str(path), "--db", db]) == 0
    capsys.readouterr()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def db(tmp_path, capsys) -> str:
    path = str(tmp_path / "s.duckdb")
    _ingest(path, tmp_path, ON_TIME + NOVEMBER, "on-time", capsys)
    return path


def _invoice_json(db: str, period: str, capsys) -> str:
    code, out, _ = _run(capsys, "invoice", "--db", db, "--period", period, "--format", "json")
    assert code == 0
    return out


def _lines(document: str) -> list[tuple]:
    return [(ln["meter"], ln["token_class"], ln["quantity"], ln["amount"], ln["charge_class"],
             ln["corrects_period"]) for ln in json.loads(document)["lines"]]


def _edited_books(tmp_path: Path) -> str:
    """The shipped books plus a version from 15 Oct with runtime at $0.10."""
    folder = tmp_path / "books"
    shutil.copytree(default_pricebook_dir(), folder)
    latest = (folder / "anthropic-list-2026-08-07.toml").read_text()
    (folder / "anthropic-list-2026-10-15.toml").write_text(
        latest.replace('version = "2026-08-07"', 'version = "2026-10-15"')
        .replace("effective_from = 2026-08-07", "effective_from = 2026-10-15")
        .replace('usd_per_session_hour = "0.08"', 'usd_per_session_hour = "0.10"'))
    (folder / "anthropic-list-2026-08-07.toml").write_text(
        latest.replace("effective_from = 2026-08-07",
                       "effective_from = 2026-08-07\neffective_to = 2026-10-15"))
    return str(folder)


def test_an_issued_invoice_is_byte_identical_after_late_usage_and_a_book_change(
        db, tmp_path, capsys):
    code, out, _ = _run(capsys, "close", "--db", db, "--period", "2026-10", "--format", "json")
    assert code == 0
    issued = json.loads(out)
    assert (issued["status"], issued["version"], issued["total"]) == ("issued", 1, "0.71")
    assert issued["books"] == ["anthropic-list@2026-04-08", "anthropic-list@2026-08-07"]
    before = _invoice_json(db, "2026-10", capsys)
    assert before == out
    _ingest(db, tmp_path, LATE, "late", capsys)
    books = _edited_books(tmp_path)
    code, _, err = _run(capsys, "rate", "--db", db, "--pricebooks", books)
    assert code == 0
    assert "affects closed period 2026-10: will be billed as corrections" in err
    after = _invoice_json(db, "2026-10", capsys)
    assert after == before
    with agenttally.open_store(db, read_only=True) as store:
        row = store.connection.execute(
            "SELECT document_id, sha256, total FROM billing_documents").fetchall()
    digest = hashlib.sha256(before.removesuffix("\n").encode()).hexdigest()
    assert row == [("INV-2026-10-v1", digest, Decimal("0.71"))]


def test_late_usage_is_a_correction_in_the_next_open_period(db, tmp_path, capsys):
    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    _ingest(db, tmp_path, LATE, "late", capsys)
    november = _invoice_json(db, "2026-11", capsys)
    assert _lines(november) == [
        ("runtime", None, 3_600_000, "0.08", "usage", None),
        ("runtime", None, 1_800_000, "0.04", "correction", "2026-10"),
        ("tokens", "input", 100_000, "0.50", "correction", "2026-10"),
    ]
    assert json.loads(november)["total"] == "0.62"
    # the table says which period a line corrects
    code, table, _ = _run(capsys, "invoice", "--db", db, "--period", "2026-11")
    assert "corrects" in table and "2026-10" in table


def test_closing_the_next_period_bills_its_corrections_once(db, tmp_path, capsys):
    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    _ingest(db, tmp_path, LATE, "late", capsys)
    code, out, _ = _run(capsys, "close", "--db", db, "--period", "2026-11", "--early",
                        "--format", "json")
    assert code == 0 and json.loads(out)["total"] == "0.62"
    # more October usage arrives: November is closed too, so it is billed in December, and
    # only what was not billed yet (1 h = 0.08)
    _ingest(db, tmp_path, LATER_STILL, "later", capsys)
    december = _invoice_json(db, "2026-12", capsys)
    assert [ln for ln in _lines(december) if ln[4] == "correction"] == [
        ("runtime", None, 3_600_000, "0.08", "correction", "2026-10")]


def test_reissue_issues_a_new_version_and_a_note_that_settles_the_corrections(
        db, tmp_path, capsys):
    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    _ingest(db, tmp_path, LATE, "late", capsys)
    code, out, err = _run(capsys, "close", "--db", db, "--period", "2026-10", "--reissue",
                          "--format", "json")
    assert code == 0
    reissued = json.loads(out)
    assert (reissued["version"], reissued["total"]) == (2, "1.25")  # 0.12 + 0.75 + 0.38
    assert "NOTE-2026-10-v2: debit note of 0.54 against INV-2026-10-v1" in err
    assert _invoice_json(db, "2026-10", capsys) == out
    november = _invoice_json(db, "2026-11", capsys)
    assert [ln[4] for ln in _lines(november)] == ["usage"]


@pytest.mark.parametrize(("period", "flags", "message"), [
    ("2099-01", [], "--period: 2099-01 is in the future"),
    ("2020-01", [], "--period: 2020-01 is unknown to this store"),
])
def test_closing_a_period_that_cannot_be_closed_is_exit_2(db, capsys, period, flags, message):
    code, out, err = _run(capsys, "close", "--db", db, "--period", period, *flags)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_closing_twice_is_refused_and_names_the_document(db, capsys):
    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    code, _, err = _run(capsys, "close", "--db", db, "--period", "2026-10")
    assert code == 2
    assert "2026-10 is already closed (INV-2026-10-v1); pass --reissue" in err


def test_reissuing_an_open_period_is_refused(db, capsys):
    code, _, err = _run(capsys, "close", "--db", db, "--period", "2026-10", "--reissue")
    assert code == 2 and "2026-10 is not closed; close it first" in err


def _close(db: str, period: str, now: str, **flags: bool):
    with agenttally.open_store(db) as store:
        agenttally.rate(store, as_of=now)
        return close_period(store.connection, Period.parse(period), as_of_ms=parse_instant(now),
                            now_ms=parse_instant(now), books=(), policy=LatePolicy(3), **flags)


def test_the_current_month_and_the_grace_period_wait(db):
    with pytest.raises(agenttally.UsageError, match="2026-11 has not ended"):
        _close(db, "2026-11", "2026-11-20T00:00:00Z")
    with pytest.raises(agenttally.UsageError,
                       match="in its grace period until 2026-12-04T00:00:00.000Z"):
        _close(db, "2026-11", "2026-12-02T00:00:00Z")
    assert _close(db, "2026-11", "2026-12-02T00:00:00Z", early=True).invoice.total == \
        Decimal("0.08")


def test_running_sessions_hold_the_close_unless_allowed(tmp_path, capsys):
    db = str(tmp_path / "r.duckdb")
    _ingest(db, tmp_path, ON_TIME + [session_record("s9", created_at="2026-10-31T20:00:00Z"),
                                     status("s9", "s9a", "2026-10-31T23:00:00.000Z",
                                            "running")], "running", capsys)
    with pytest.raises(agenttally.UsageError,
                       match=r"2026-10 still has 1 running session \(s9\)"):
        _close(db, "2026-10", "2026-11-10T00:00:00Z")
    issued = _close(db, "2026-10", "2026-11-10T00:00:00Z", allow_running=True)
    # s9's first hour, to midnight, is October's: 0.08 more
    assert issued.invoice.total == Decimal("0.79") and issued.invoice.provisional


def test_focus_exports_corrections_as_charge_class_correction(db, tmp_path, capsys):
    import csv

    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    _ingest(db, tmp_path, LATE, "late", capsys)
    for period, billed in (("2026-10", "0.71"), ("2026-11", "0.62")):
        out = tmp_path / f"focus-{period}.csv"
        assert _run(capsys, "export", "focus", "--db", db, "--period", period,
                    "-o", str(out))[0] == 0
        rows = list(csv.DictReader(out.open()))
        assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal(billed)
        corrections = [r for r in rows if r["ChargeClass"] == "Correction"]
        if period == "2026-10":
            assert corrections == []  # the late rows are in the ledger, billed as issued
            continue
        assert [(r["ChargeCategory"], r["x_Meter"], r["ConsumedQuantity"], r["BilledCost"],
                 r["ChargePeriodStart"], r["BillingPeriodStart"]) for r in corrections] == [
            ("Usage", "runtime", "1800000", "0.04", "2026-10-01T00:00:00Z",
             "2026-11-01T00:00:00Z"),
            ("Usage", "tokens", "100000", "0.50", "2026-10-01T00:00:00Z",
             "2026-11-01T00:00:00Z")]


def test_the_data_page_shows_what_the_policy_changed(db, tmp_path, capsys):
    from reports.dashboard.source import read_store
    from reports.dashboard.status import billing_status

    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    _ingest(db, tmp_path, LATE, "late", capsys)
    assert _run(capsys, "rate", "--db", db)[0] == 0
    with read_store(db) as con:
        billing = billing_status(con)
    month = billing["closed"].to_dict("records")[0]
    assert (month["month"], month["document"], month["first issued $"], month["billed later $"],
            month["pending corrections $"], month["costs now $"]) == (
        "2026-10", "INV-2026-10-v1", 0.71, 0.0, 0.54, 1.25)
    assert billing["corrections"][["billed in", "corrects", "meter", "amount $"]].values.tolist() \
        == [["2026-11", "2026-10", "runtime", 0.04], ["2026-11", "2026-10", "tokens", 0.5]]


def test_the_cli_names_the_flag_that_would_close_it(tmp_path, capsys):
    db = str(tmp_path / "r.duckdb")
    _ingest(db, tmp_path, ON_TIME + [session_record("s9", created_at="2026-10-31T20:00:00Z"),
                                     status("s9", "s9a", "2026-10-31T23:00:00.000Z",
                                            "running")], "running", capsys)
    code, out, err = _run(capsys, "close", "--db", db, "--period", "2026-10")
    assert (code, out) == (2, "")
    assert err == ("agenttally close: --period: 2026-10 still has 1 running session (s9); "
                   "close it when they stop, or pass --allow-running to bill their time so "
                   "far\n")
    assert _run(capsys, "close", "--db", db, "--period", "2026-10", "--allow-running")[0] == 0


def test_status_says_how_the_ledger_was_rated_and_which_months_are_closed(db, capsys):
    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    code, out, _ = _run(capsys, "status", "--db", db)
    assert code == 0
    assert "ledger: rated as of " in out and "(full, 2 sessions in " in out
    assert "closed months: 2026-10\n" in out


def test_export_invoice_is_the_invoice_closed_or_open(db, tmp_path, capsys):
    """`export invoice` writes what `invoice` shows: the issued lines of a closed month after
    late usage, and an open month's lines with the corrections billed in it."""
    assert _run(capsys, "close", "--db", db, "--period", "2026-10")[0] == 0
    _ingest(db, tmp_path, LATE, "late", capsys)
    for period, expected in (("2026-10", [("runtime", "0.08"), ("tokens", "0.25"),
                                          ("tokens", "0.38"), ("TOTAL", "0.71")]),
                             ("2026-11", [("runtime", "0.08"), ("runtime", "0.04"),
                                          ("tokens", "0.50"), ("TOTAL", "0.62")])):
        out = tmp_path / f"invoice-{period}.csv"
        assert _run(capsys, "export", "invoice", "--db", db, "--period", period, "-o",
                    str(out))[0] == 0
        with out.open() as f:
            rows = list(csv.DictReader(f))
        assert [(r["meter"], r["amount"]) for r in rows] == expected
