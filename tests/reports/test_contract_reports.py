"""Contracts through the reports: invoice, chargeback, FOCUS and the CLI, to the cent.

The store of tests/reports/test_cli.py: one session on 2026-11-03 running one hour ($0.08)
with 50,000 Opus 5 input tokens ($0.25) and 15,000 output tokens ($0.375 -> $0.38); list
amount $0.71. The contract: 20% off Opus 5, a $1/month commitment on tokens with 10% off, a
$0.10 credit. Tokens 0.63 -> 20% = 0.126 -> -0.13; commitment 10% of 0.504 = 0.0504 -> -0.05;
counted 0.4536, true-up 0.5464 -> 0.55; credit -0.10; due 0.71 - 0.13 - 0.05 + 0.55 - 0.10
= 0.98.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest

from agenttally.cli import main
from pricing.contracts import ContractSet, parse_contract
from reports.chargeback import build_chargeback
from reports.focus import build_focus
from reports.invoice import build_invoice
from reports.statement import contract_statement
from tests.reports.test_chargeback import rated, session
from tests.reports.test_cli import _store

D = Decimal

CONTRACT = """\
name = "acme"
version = "1"
effective_from = 2026-11-01
owner = "finance@acme.test"

[[credits]]
id = "promo"
amount = "0.10"
start = 2026-11-01
expires = 2026-11-30

[[commitments]]
id = "commit"
amount = "1"
meters = ["tokens"]
discount_percent = "10"

[[discounts]]
id = "opus"
percent = "20"
models = ["claude-opus-5"]
"""
AS_OF = ["--period", "2026-11", "--as-of", "2026-12-01"]


@pytest.fixture
def store(tmp_path, capsys):
    db = _store(tmp_path, capsys)
    path = tmp_path / "acme.toml"
    path.write_text(CONTRACT, encoding="utf-8")
    return db, str(path)


def test_invoice_shows_list_amount_each_adjustment_and_amount_due(store, capsys):
    db, contract = store
    assert main(["invoice", "--db", db, *AS_OF, "--contract", contract,
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["total"], doc["list_amount"], doc["amount_due"]) == ("0.71", "0.71", "0.98")
    assert [(a["kind"], a["term_id"], a["amount"], a["charge_category"])
            for a in doc["adjustments"]] == [
        ("discount", "opus", "-0.13", "Usage"),
        ("commitment_discount", "commit", "-0.05", "Usage"),
        ("true_up", "commit", "0.55", "Usage"),
        ("credit", "promo", "-0.10", "Credit")]
    assert doc["adjustments"][0]["amount_exact"] == "-0.126"
    assert doc["credit_balances"][0]["closing"] == "0.00"
    assert doc["commitments"][0] == {
        "commitment_id": "commit", "window": "2026-11..2026-11", "amount": "1.00",
        "counted": "0.45", "utilisation_percent": "45.0", "closes": True, "true_up": "0.55"}
    assert main(["invoice", "--db", db, *AS_OF, "--contract", contract]) == 0
    table = capsys.readouterr().out
    for row in ("LIST AMOUNT", "discount             opus", "true up              commit",
                "AMOUNT DUE"):
        assert row in table
    [due] = [line for line in table.splitlines() if line.startswith("AMOUNT DUE")]
    assert due.endswith(" 0.98")


def test_invoice_without_a_contract_is_unchanged(store, capsys):
    db, contract = store
    main(["invoice", "--db", db, *AS_OF, "--format", "json"])
    plain = capsys.readouterr().out
    main(["invoice", "--db", db, *AS_OF, "--format", "json", "--contract", contract])
    with_contract = json.loads(capsys.readouterr().out)
    for key in ("contract", "list_amount", "adjustments", "amount_due", "credit_balances",
                "commitments"):
        assert key not in json.loads(plain)
        with_contract.pop(key)
    assert json.dumps(with_contract, indent=2) + "\n" == plain


def test_focus_carries_list_effective_and_billed_cost_and_credit_rows(store, capsys, tmp_path):
    db, contract = store
    out = tmp_path / "focus.csv"
    assert main(["export", "focus", "--db", db, *AS_OF, "--contract", contract,
                 "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert sum(D(r["BilledCost"]) for r in rows) == D("0.98")
    assert sum(D(r["EffectiveCost"]) for r in rows) == D("0.98")
    assert sum(D(r["ListCost"]) for r in rows) == D("0.705")  # exact, as FOCUS has it
    usage = {r["x_TokenClass"] or r["x_Meter"]: r for r in rows if r["ChargeCategory"] == "Usage"
             and r["x_Meter"]}
    # input 0.25: 20% off -> 0.05 (ContractedCost 0.20), commitment 10% -> 0.02 -> 0.18
    assert (usage["input"]["ContractedCost"][:4], usage["input"]["BilledCost"]) == ("0.20",
                                                                                    "0.18")
    assert usage["input"]["CommitmentDiscountId"] == "commit"
    assert usage["input"]["CommitmentDiscountStatus"] == "Used"
    assert usage["input"]["PricingCategory"] == "Committed"
    assert usage["runtime"]["CommitmentDiscountId"] == ""
    [true_up] = [r for r in rows if r["CommitmentDiscountStatus"] == "Unused"]
    assert (true_up["ChargeCategory"], true_up["BilledCost"]) == ("Usage", "0.55")
    [credit] = [r for r in rows if r["ChargeCategory"] == "Credit"]
    assert (credit["BilledCost"], credit["EffectiveCost"], credit["ChargeFrequency"]) == (
        "-0.10", "-0.10", "One-Time")


def test_focus_without_a_contract_has_no_commitment_columns(store, tmp_path, capsys):
    db, _ = store
    out = tmp_path / "focus.csv"
    assert main(["export", "focus", "--db", db, *AS_OF, "-o", str(out)]) == 0
    header = out.read_text().splitlines()[0]
    assert "CommitmentDiscountId" not in header and "x_ContractTerm" not in header


def test_a_bad_contract_file_exits_2_with_one_line(store, capsys, tmp_path):
    db, _ = store
    bad = tmp_path / "bad.toml"
    bad.write_text(CONTRACT.replace('percent = "20"', 'percent = "120"'), encoding="utf-8")
    for verb in (["invoice"], ["chargeback"], ["export", "focus", "-o", str(tmp_path / "x.csv")]):
        assert main([*verb, "--db", db, *AS_OF, "--contract", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"--contract: {bad}:20: discounts[0].percent: a discount above 100% would " \
               "pay the customer; expected 0 to 100, got 120" in err
    assert not (tmp_path / "x.csv").exists()


# --- chargeback --------------------------------------------------------------------------

# alpha: 1 h ($0.08) + 1M Opus input ($5.00); beta: 10 h ($0.80) + 200k ($1.00); platform:
# 1 h ($0.08) on Nov 20. List 6.96.
def three_teams():
    return rated(session("s1", team="alpha", tokens=1_000_000)
                 + session("s2", team="beta", run_ms=36_000_000, tokens=200_000)
                 + session("s3", team="platform", day="2026-11-20"))


def a_contract(**terms) -> ContractSet:
    base = {"name": "x", "version": "1", "effective_from": "2026-11-01", "owner": "me"}
    return ContractSet((parse_contract({**base, **terms}),))


def test_chargeback_distributes_by_eligible_spend_and_adds_internal_rates():
    con = three_teams()
    contract = a_contract(
        discounts=[{"id": "d", "percent": "10", "meters": ["tokens"]}],
        commitments=[{"id": "c", "amount": "10", "meters": ["tokens"]}],
        internal={"rates": [{"value": "*", "markup_percent": "10"}]})
    report = build_chargeback(con, "2026-11", by=["team"], contract=contract)
    by = {g.group["team"]: g for g in report.groups}
    # discount 0.60 on tokens: alpha 5/6 = 0.50, beta 0.10; true-up 10 - 5.40 = 4.60 by
    # eligible list spend: alpha 5/6 = 3.833.. -> 3.83, beta 0.766.. -> 0.77
    assert (by["alpha"].contract, by["beta"].contract, by["platform"].contract) == (
        D("3.33"), D("0.67"), D("0.00"))
    # markup 10% of the net: alpha 8.41 -> 0.84, beta 2.47 -> 0.25; platform receives 1.09
    assert (by["alpha"].internal, by["beta"].internal, by["platform"].internal) == (
        D("0.84"), D("0.25"), D("-1.09"))
    statement = contract_statement(con, contract, "2026-11")
    assert statement.amount_due == D("10.96")  # 6.96 - 0.60 + 4.60
    assert report.amount_due == statement.amount_due
    assert sum(g.net for g in report.groups) == D("10.96")
    doc = json.loads(report.to_json())
    assert doc["amount_due"] == "10.96" and doc["internal_mode"] == "chargeback"


def test_showback_mode_charges_no_internal_rate():
    con = three_teams()
    contract = a_contract(internal={"mode": "showback",
                                    "rates": [{"value": "*", "fixed_usd": "100"}]})
    report = build_chargeback(con, "2026-11", by=["team"], contract=contract)
    assert all(g.internal == 0 for g in report.groups)
    assert report.amount_due == D("6.96")


def test_credits_in_chargeback_follow_each_groups_amount_after_discounts():
    con = three_teams()
    contract = a_contract(credits=[{"id": "g", "amount": "6.96", "start": "2026-11-01",
                                    "expires": "2026-12-31"}])
    report = build_chargeback(con, "2026-11", by=["team"], contract=contract)
    assert all(g.net == 0 for g in report.groups)  # everything paid by the credit
    invoice = build_invoice(con, "2026-11", as_of="")
    assert invoice.total == D("6.96")


def test_focus_sums_to_the_amount_due_with_several_teams():
    con = three_teams()
    contract = a_contract(
        discounts=[{"id": "d", "percent": "33", "tags": {"team": "beta"}}],
        credits=[{"id": "g", "amount": "2", "start": "2026-11-01", "expires": "2026-11-10"}])
    build_focus(con, "2026-11", contract=contract)
    billed = con.execute("SELECT sum(BilledCost) FROM focus").fetchall()[0][0]
    statement = contract_statement(con, contract, "2026-11")
    # beta 1.80 x 33% = 0.594 -> 0.59; credit 2 (usage of Nov 3 is 6.37 after discounts)
    assert [(ln.term_id, ln.amount) for ln in statement.lines] == [("d", D("-0.59")),
                                                                    ("g", D("-2.00"))]
    assert billed == statement.amount_due == D("4.37")


def test_example_contract_runs_on_the_demo_periods(store, capsys):
    db, _ = store
    example = Path(__file__).parents[2] / "data/contracts/example-2026.toml"
    assert main(["chargeback", "--db", db, *AS_OF, "--contract", str(example),
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert D(doc["amount_due"]) == sum(D(g["net"]) for g in doc["groups"])


# --- what-if -----------------------------------------------------------------------------

SCENARIO = """\
name = "commit-more"
[contract]
replace = true
[[contract.commitments]]
id = "commit-15"
amount = "1"
meters = ["tokens"]
discount_percent = "15"
"""


def test_a_scenario_changes_contract_terms_and_compares_amounts_due(store, capsys, tmp_path):
    db, contract = store
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    assert main(["whatif", str(scenario), "--db", db, *AS_OF, "--contract", contract,
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)["contract"]
    # the scenario: opus -0.13, commitment 15% of 0.504 = 0.0756 -> -0.08, counted 0.4284,
    # true-up 0.5716 -> 0.57, credit -0.10: 0.71 - 0.13 - 0.08 + 0.57 - 0.10 = 0.97
    assert (doc["baseline_due"], doc["scenario_due"]) == ("0.98", "0.97")
    rows = {r["line"]: (r["baseline"], r["scenario"]) for r in doc["rows"]}
    assert rows["commitment discount commit-15"] == ("0.00", "-0.08")
    assert rows["true up commit"] == ("0.55", "0.00")
    assert rows["discount opus"] == ("-0.13", "-0.13")


def test_a_scenario_adding_a_contradicting_commitment_is_refused(store, capsys, tmp_path):
    db, contract = store
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace("replace = true", "replace = false"), encoding="utf-8")
    assert main(["whatif", str(scenario), "--db", db, *AS_OF, "--contract", contract]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "commitments[1].meters: tokens also counts toward commitments[0] ('commit')" in err
