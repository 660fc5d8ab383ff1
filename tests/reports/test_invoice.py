"""Invoice lines that agree with the usage: long-context tokens on lines of their own, and
runtime money rounded from the exact sum of its lines, in the invoice and every report that
must add up to it (chargeback, FOCUS, what-if)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from pricing.pricebook import load_pricebooks
from pricing.rating import RatingOptions
from pricing.scenario import parse_scenario
from pricing.whatif import compare, run_whatif
from reports.chargeback import build_chargeback
from reports.focus import build_focus
from reports.invoice import build_invoice
from tests.conftest import iso, ms, session_record, snapshot, span, status
from tests.pricing.test_rating import rated as rated_as_of

BOOKS = load_pricebooks()
AS_OF = "2026-12-01T00:00:00Z"


def rated(events):
    return rated_as_of(events, as_of=AS_OF)


def focus_sums(con, period):
    build_focus(con, period)
    return con.execute("""
        SELECT x_Tier, x_TokenClass, sum(ConsumedQuantity)::BIGINT, sum(BilledCost)
        FROM focus WHERE x_Meter = 'tokens' GROUP BY ALL ORDER BY ALL""").fetchall()


# --- long context: a line per tier, quantities that add up to the usage -------------------------

HAIKU = [
    session_record("h", model="claude-haiku-5-5", metadata={"team": "search"}),
    # prompt 110,000 > 100,000: all its tokens at the long-context rates
    span("h", "h1", "2026-11-10T09:00:00Z", input=50_000, read=60_000, output=2_000),
    # prompt 90,000: standard
    span("h", "h2", "2026-11-10T09:01:00Z", input=90_000, output=1_000),
]


def test_long_context_usage_is_its_own_invoice_line_with_its_unit_price():
    invoice = build_invoice(rated(HAIKU), "2026-11", as_of=AS_OF)
    assert [(ln.token_class, ln.tier, ln.quantity, ln.unit_price, ln.amount_exact, ln.amount)
            for ln in invoice.lines] == [
        # 90,000 x $0.10 = 0.009; 50,000 x $0.50 = 0.025
        ("input", "standard", 90_000, Decimal("0.1"), Decimal("0.009"), Decimal("0.01")),
        ("input", "long_context", 50_000, Decimal("0.5"), Decimal("0.025"), Decimal("0.02")),
        # 1,000 x $0.50 = 0.0005; 2,000 x $2.50 = 0.005
        ("output", "standard", 1_000, Decimal("0.5"), Decimal("0.0005"), Decimal("0.00")),
        ("output", "long_context", 2_000, Decimal("2.5"), Decimal("0.005"), Decimal("0.00")),
        # 60,000 x $0.05 = 0.003
        ("cache_read", "long_context", 60_000, Decimal("0.05"), Decimal("0.003"),
         Decimal("0.00")),
    ]
    # the tiers add up to the tokens used: 140,000 in, 3,000 out, 60,000 read
    assert sum(ln.quantity for ln in invoice.lines) == 140_000 + 3_000 + 60_000
    lines = json.loads(invoice.to_json())["lines"]
    assert [(ln["tier"], ln["unit_price"]) for ln in lines][:2] == [
        ("standard", "0.10"), ("long_context", "0.50")]


def test_long_context_quantities_add_up_in_focus_chargeback_and_what_if():
    con = rated(HAIKU)
    assert focus_sums(con, "2026-11") == [
        ("long_context", "cache_read", 60_000, Decimal("0.00")),
        ("long_context", "input", 50_000, Decimal("0.02")),
        ("long_context", "output", 2_000, Decimal("0.00")),
        ("standard", "input", 90_000, Decimal("0.01")),
        ("standard", "output", 1_000, Decimal("0.00")),
    ]
    report = build_chargeback(con, "2026-11", by=["team"])
    assert [(g.group["team"], g.token_count) for g in report.groups] == [("search", 203_000)]
    # moving all of Haiku 5.5 to Sonnet 4.6 moves every token once, at Sonnet's standard rates
    w = run_whatif(con, BOOKS, parse_scenario(
        {"usage": {"move": [{"from_model": "claude-haiku-5-5", "to_model": "claude-sonnet-4-6",
                             "percent": "100"}]}}), RatingOptions(as_of_ms=ms(AS_OF)))
    moved = con.execute(f"""
        SELECT model, tier, sum(quantity)::BIGINT FROM {w.scenario_table}
        WHERE meter = 'tokens' GROUP BY ALL""").fetchall()
    assert moved == [("claude-sonnet-4-6", "standard", 203_000)]


def test_long_context_covered_by_a_snapshot_is_not_counted_twice():
    con = rated([
        session_record("h", model="claude-haiku-5-5"),
        span("h", "h1", "2026-11-10T09:00:00Z", input=150_000, output=1_000),
        span("h", "h2", "2026-11-10T09:01:00Z", input=10_000, output=500),
        snapshot("h", "u1", "2026-11-10T09:02:00Z", input=160_000, output=1_500),
    ])
    invoice = build_invoice(con, "2026-11", as_of=AS_OF)
    assert [(ln.token_class, ln.tier, ln.quantity) for ln in invoice.lines] == [
        ("input", "standard", 10_000), ("input", "long_context", 150_000),
        ("output", "standard", 500), ("output", "long_context", 1_000)]
    # 10,000 x 0.10 + 150,000 x 0.50 + 500 x 0.50 + 1,000 x 2.50, each line exact
    assert sum(ln.amount_exact for ln in invoice.lines) == Decimal("0.07875")


# --- runtime: the cent rounding sees the true sum ----------------------------------------------

def running_sessions(run_ms: int, count: int) -> list[dict]:
    """`count` sessions (teams t0, t1, ...), each running `run_ms` on 2026-11-10."""
    start = ms("2026-11-10T09:00:00Z")
    events = []
    for i in range(count):
        sid = f"s{i}"
        events += [session_record(sid, metadata={"team": f"t{i}"}),
                   status(sid, f"{sid}_r", "2026-11-10T09:00:00Z", "running"),
                   status(sid, f"{sid}_i", iso(start + run_ms), "idle")]
    return events


@pytest.mark.parametrize(("run_ms", "count", "amount"), [
    # 3 x 1,725,000 ms x $0.08 / 3,600,000 = 0.115 exactly -> 0.12 (half-even); the sum of
    # three pieces each cut to 1e-18 is 0.114999999999999999 -> 0.11
    (1_725_000, 3, "0.12"),
    (1_275_000, 3, "0.08"),   # 3 x 0.028333... = 0.085 -> 0.08 (half-even)
    (375_000, 3, "0.02"),     # 3 x 0.008333... = 0.025 -> 0.02
    (225_000, 3, "0.02"),     # 3 x 0.005 = 0.015 -> 0.02
    (1_575_000, 6, "0.21"),   # 6 x 0.035 = 0.21
    (1_125_000, 9, "0.22"),   # 9 x 0.025 = 0.225 -> 0.22
])
def test_runtime_lines_round_their_exact_sum(run_ms, count, amount):
    con = rated(running_sessions(run_ms, count))
    invoice = build_invoice(con, "2026-11", as_of=AS_OF)
    [runtime] = invoice.lines
    assert runtime.quantity == run_ms * count
    assert runtime.amount == invoice.total == Decimal(amount)
    assert build_chargeback(con, "2026-11", by=["team"]).invoice_total == Decimal(amount)
    assert sum(g.total for g in build_chargeback(con, "2026-11", by=["team"]).groups) == \
        Decimal(amount)
    build_focus(con, "2026-11")
    assert con.execute("SELECT sum(BilledCost) FROM focus").fetchall()[0][0] == Decimal(amount)
    w = run_whatif(con, BOOKS, parse_scenario({}), RatingOptions(as_of_ms=ms(AS_OF)))
    assert compare(con, period="2026-11", what_if=w).baseline_total == Decimal(amount)
    assert compare(con, by="team", period="2026-11", what_if=w).baseline_total == \
        Decimal(amount)
