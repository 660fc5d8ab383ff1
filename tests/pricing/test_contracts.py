"""Contract terms: one small exact fixture per rule, the bad inputs, and the invariants.

Amounts are list amounts of one month as the invoice has them (whole cents); every expected
value is worked out by hand in the comment beside it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.contracts import (
    ContractError,
    ContractSet,
    ListItem,
    apply_contract,
    largest_remainder,
    load_contract,
    load_contracts,
    parse_contract,
    statements,
)

D = Decimal
BASE = {"name": "acme", "version": "1", "effective_from": date(2026, 11, 1),
        "owner": "finance@acme.test"}


def contract(**terms):
    return parse_contract({**BASE, **terms})


def tokens(amount: str, day: int = 10, model: str = "claude-opus-5", **tags) -> ListItem:
    return ListItem(D(amount), "tokens", model, date(2026, 11, day), tuple(tags.items()))


def runtime(amount: str, day: int = 10, **tags) -> ListItem:
    return ListItem(D(amount), "runtime", None, date(2026, 11, day), tuple(tags.items()))


def lines(statement):
    return [(ln.kind, ln.term_id, ln.amount) for ln in statement.lines]


# --- credits -----------------------------------------------------------------------------


def test_drawdown_order_across_two_grants_is_priority_then_expiry_then_id():
    c = contract(credits=[
        {"id": "b-late", "amount": "100", "start": "2026-11-01", "expires": "2027-03-31",
         "priority": 1},
        {"id": "a-soon", "amount": "30", "start": "2026-11-01", "expires": "2026-12-31",
         "priority": 1},
        {"id": "first", "amount": "20", "start": "2026-11-01", "expires": "2027-06-30",
         "priority": 0},
    ])
    s, state = apply_contract(c, "2026-11", [tokens("70.00")])
    # 70 = 20 (priority 0) + 30 (priority 1, expires first) + 20 of b-late
    assert lines(s) == [("credit", "first", D("-20.00")), ("credit", "a-soon", D("-30.00")),
                        ("credit", "b-late", D("-20.00"))]
    assert s.amount_due == D("0.00")
    assert {b.grant_id: b.closing for b in s.credits} == {
        "first": D("0.00"), "a-soon": D("0.00"), "b-late": D("80.00")}
    # the next month draws the rest of b-late only
    s2, _ = apply_contract(c, "2026-12", [ListItem(D("100.00"), "tokens", "claude-opus-5",
                                                   date(2026, 12, 5))], state)
    assert lines(s2) == [("credit", "b-late", D("-80.00"))]
    assert s2.amount_due == D("20.00")


def test_credit_expires_on_the_last_millisecond_of_its_expiry_day():
    c = contract(credits=[{"id": "promo", "amount": "50", "start": "2026-11-01",
                           "expires": "2026-11-15"}])
    # usage of Nov 15 (its last day, through 23:59:59.999Z) is paid; Nov 16 is not
    s, state = apply_contract(c, "2026-11", [tokens("10.00", day=15), tokens("25.00", day=16)])
    assert lines(s) == [("credit", "promo", D("-10.00"))]
    assert s.amount_due == D("25.00")
    (balance,) = s.credits
    assert (balance.drawn, balance.expired, balance.closing) == (D("10.00"), D("40.00"),
                                                                  D("0.00"))
    s2, _ = apply_contract(c, "2026-12", [], state)
    assert s2.credits == () and s2.lines == ()


def test_credit_does_not_pay_usage_before_its_start():
    c = contract(credits=[{"id": "late", "amount": "50", "start": "2026-11-20",
                           "expires": "2026-12-31"}])
    s, _ = apply_contract(c, "2026-11", [tokens("10.00", day=19), tokens("5.00", day=20)])
    assert lines(s) == [("credit", "late", D("-5.00"))]
    assert s.amount_due == D("10.00")


# --- commitments -------------------------------------------------------------------------

COMMIT = {"id": "c1", "amount": "100", "per": "month", "meters": ["tokens"]}


def test_commitment_met_exactly_has_no_true_up():
    s, _ = apply_contract(contract(commitments=[COMMIT]), "2026-11",
                          [tokens("60.00"), tokens("40.00", day=11), runtime("7.00")])
    assert lines(s) == []
    assert s.amount_due == D("107.00")
    (use,) = s.commitments
    assert (use.counted, use.true_up, use.closes, use.utilisation_percent) == (
        D("100.00"), D("0.00"), True, D("100.0"))


def test_commitment_short_by_one_cent_trues_up_one_cent():
    s, _ = apply_contract(contract(commitments=[COMMIT]), "2026-11",
                          [tokens("99.99"), runtime("50.00")])
    assert lines(s) == [("true_up", "c1", D("0.01"))]
    assert s.amount_due == D("150.00")  # 99.99 + 50 + 0.01


def test_commitment_discount_counts_what_is_paid_toward_the_commitment():
    c = contract(commitments=[{**COMMIT, "discount_percent": "10"}])
    s, _ = apply_contract(c, "2026-11", [tokens("100.00")])
    # 10% off 100 = 10; counted 90 of 100: true-up 10; due 100 - 10 + 10 = 100
    assert lines(s) == [("commitment_discount", "c1", D("-10.00")), ("true_up", "c1", D("10.00"))]
    assert s.amount_due == D("100.00")


def test_quarterly_commitment_trues_up_at_the_end_of_its_quarter_only():
    c = contract(commitments=[{**COMMIT, "amount": "300", "per": "quarter"}])
    months = [("2026-11", [tokens("100.00")]), ("2026-12", [ListItem(D("120.00"), "tokens")]),
              ("2027-01", [ListItem(D("79.99"), "tokens")])]
    s = statements(ContractSet((c,)), months)
    assert [lines(x) for x in s] == [[], [], [("true_up", "c1", D("0.01"))]]
    assert [x.commitments[0].window for x in s] == ["2026-11..2027-01"] * 3
    assert [x.commitments[0].counted for x in s] == [D("100.00"), D("220.00"), D("299.99")]


# --- discounts ---------------------------------------------------------------------------


def test_stacked_discounts_apply_in_file_order_before_the_commitment_and_credits():
    c = contract(
        discounts=[{"id": "ten", "percent": "10", "meters": ["tokens"]},
                   {"id": "twenty", "percent": "20", "models": ["claude-opus-5"]},
                   {"id": "fixed", "fixed_usd": "5", "tags": {"team": "search"}}],
        commitments=[{**COMMIT, "amount": "10", "discount_percent": "50"}],
        credits=[{"id": "g", "amount": "1", "start": "2026-11-01", "expires": "2026-11-30"}])
    items = [tokens("100.00", team="search"), runtime("10.00", team="search")]
    s, _ = apply_contract(c, "2026-11", items)
    # tokens: 100 -10% = 90, -20% = 72; fixed $5 over search's 72 + 10 (by what is left):
    # 72 - 5 x 72/82, runtime 10 - 5 x 10/82; commitment 50% off tokens' remaining
    # 72 x 77/82 = 67.609756.. -> 33.804878.. -> 33.80; credit 1
    assert lines(s) == [("discount", "ten", D("-10.00")), ("discount", "twenty", D("-18.00")),
                        ("discount", "fixed", D("-5.00")),
                        ("commitment_discount", "c1", D("-33.80")), ("credit", "g", D("-1.00"))]
    assert s.amount_due == D("42.20")  # 110 - 10 - 18 - 5 - 33.80 - 1


def test_a_full_discount_leaves_nothing_due_and_never_below_zero():
    c = contract(discounts=[{"id": "all", "percent": "100"},
                            {"id": "more", "fixed_usd": "10"}])
    s, _ = apply_contract(c, "2026-11", [tokens("0.01"), runtime("0.01")])
    assert lines(s) == [("discount", "all", D("-0.02"))]  # nothing left for the second
    assert s.amount_due == D("0.00")


def test_discount_rounds_each_line_once_half_even():
    c = contract(discounts=[{"id": "d", "percent": "50"}])
    s, _ = apply_contract(c, "2026-11", [tokens("0.01"), tokens("0.04", day=11)])
    # 50% of 0.05 = 0.025 -> 0.02 (half-even, once on the line, not per item)
    assert lines(s) == [("discount", "d", D("-0.02"))]
    assert s.amount_due == D("0.03")


def test_no_contract_in_force_leaves_the_list_amount():
    c = contract(effective_from=date(2026, 12, 1), discounts=[{"id": "d", "percent": "50"}])
    s, _ = apply_contract(c, "2026-11", [tokens("10.00")])
    assert (s.contract, s.lines, s.amount_due) == (None, (), D("10.00"))


# --- bad input ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


HEAD = 'name = "acme"\nversion = "1"\neffective_from = 2026-11-01\nowner = "me"\n'


@pytest.mark.parametrize("terms, expected", [
    ('[[discounts]]\nid = "d"\npercent = "120"\n',
     ':8: discounts[0].percent: a discount above 100% would pay the customer; expected 0 to '
     '100, got 120'),
    ('[[credits]]\nid = "g"\namount = "10"\nstart = 2026-11-10\nexpires = 2026-11-09\n',
     ":10: credits[0].expires: 2026-11-09 is before start 2026-11-10"),
    ('[[commitments]]\nid = "c"\namount = "10"\nmeters = ["tokens", "gpu"]\n',
     ":9: commitments[0].meters[1]: unknown meter 'gpu'; expected one of runtime, tokens, "
     "web_search"),
    ('[[commitments]]\nid = "a"\namount = "10"\nmeters = ["tokens"]\n'
     '[[commitments]]\nid = "b"\namount = "10"\n',
     ":10: commitments[1].meters: tokens also counts toward commitments[0] ('a') in the same "
     "months; spend counts toward one commitment at a time"),
    ('[[discounts]]\nid = "d"\npercent = "10"\nfixed_usd = "5"\n',
     ":8: discounts[0].percent: give exactly one of percent"),
    ('[[discounts]]\nid = "d"\npercent = 10.5\n',
     ':8: discounts[0].percent: write money and percentages as strings, e.g. "10.5"'),
    ('[[credits]]\nid = "x"\namount = "1"\nstart = 2026-11-01\nexpires = 2026-11-02\n'
     '[[discounts]]\nid = "x"\npercent = "1"\n',
     ":12: discounts[0].id: id 'x' is used twice (credits[0].id and discounts[0].id)"),
    ('[internal]\n[[internal.rates]]\nvalue = "search"\nmarkup_percent = "10"\n'
     '[[internal.rates]]\nvalue = "search"\nfixed_usd = "5"\n',
     ":11: internal.rates[1].value: team = 'search' already has a rate"),
])
def test_bad_terms_name_the_file_line_and_field(tmp_path, terms, expected):
    path = write(tmp_path, HEAD + "\n" + terms)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message, message
    assert "\n" not in message


def test_a_contract_needs_an_owner_or_a_source(tmp_path):
    path = write(tmp_path, 'name = "a"\nversion = "1"\neffective_from = 2026-11-01\n')
    with pytest.raises(ContractError, match="owner: missing; say who owns"):
        load_contract(path)


def test_terms_start_on_a_month(tmp_path):
    path = write(tmp_path, HEAD.replace("2026-11-01", "2026-11-15"))
    with pytest.raises(ContractError, match=r":3: effective_from: terms run in whole billing "
                                            r"months: expected the first day of a month"):
        load_contract(path)


def test_overlapping_versions_are_refused(tmp_path):
    write(tmp_path, HEAD, "v1.toml")
    write(tmp_path, HEAD.replace('version = "1"', 'version = "2"')
          .replace("2026-11-01", "2027-01-01"), "v2.toml")
    with pytest.raises(ContractError, match="effective_to: versions overlap: 1 runs "
                                            "2026-11-01..open-ended and 2 .* starts 2027-01-01"):
        load_contracts(tmp_path)


def test_versions_in_sequence_apply_each_in_its_months(tmp_path):
    write(tmp_path, HEAD + 'effective_to = 2027-01-01\n[[discounts]]\nid = "d"\npercent = "10"\n',
          "v1.toml")
    write(tmp_path, HEAD.replace('version = "1"', 'version = "2"')
          .replace("2026-11-01", "2027-01-01") + '[[discounts]]\nid = "d"\npercent = "20"\n',
          "v2.toml")
    contracts = load_contracts(tmp_path)
    s = statements(contracts, [("2026-12", [ListItem(D("10.00"), "tokens")]),
                               ("2027-01", [ListItem(D("10.00"), "tokens")])])
    assert [(x.contract, x.amount_due) for x in s] == [("acme@1", D("9.00")),
                                                        ("acme@2", D("8.00"))]


def test_the_shipped_example_loads():
    contracts = load_contracts(Path(__file__).parents[2] / "data/contracts")
    assert contracts.name == "example"


# --- invariants --------------------------------------------------------------------------

cents = st.integers(min_value=0, max_value=500_00).map(lambda c: D(c).scaleb(-2))
items_st = st.lists(st.tuples(cents, st.sampled_from(["tokens", "runtime", "web_search"]),
                              st.integers(1, 30), st.sampled_from(["a", "b", "c"])),
                    max_size=12)
terms_st = st.fixed_dictionaries({
    "discounts": st.lists(st.one_of(
        st.fixed_dictionaries({"percent": st.integers(1, 100).map(str)}),
        st.fixed_dictionaries({"fixed_usd": st.integers(1, 300).map(str),
                               "meters": st.just(["tokens"])})), max_size=3),
    "commit": st.integers(0, 2000), "commit_pct": st.integers(0, 60),
    "credits": st.lists(st.tuples(st.integers(1, 1500), st.integers(1, 30), st.integers(1, 30),
                                  st.integers(0, 3)), max_size=3),
})


def build(terms) -> object:
    raw = {"discounts": [{"id": f"d{i}", **d} for i, d in enumerate(terms["discounts"])],
           "credits": [{"id": f"g{i}", "amount": str(a), "start": date(2026, 11, min(s, e)),
                        "expires": date(2026, 11, max(s, e)), "priority": p}
                       for i, (a, s, e, p) in enumerate(terms["credits"])]}
    if terms["commit"]:
        raw["commitments"] = [{"id": "c", "amount": str(terms["commit"]),
                               "discount_percent": str(terms["commit_pct"]),
                               "meters": ["tokens"]}]
    return contract(**raw)


@settings(max_examples=150, deadline=None)
@given(items_st, terms_st)
def test_amount_due_is_never_below_zero_and_lines_add_up(raw_items, terms):
    items = [ListItem(a, m, "claude-opus-5" if m == "tokens" else None, date(2026, 11, d),
                      (("team", t),)) for a, m, d, t in raw_items]
    s, _ = apply_contract(build(terms), "2026-11", items)
    assert s.amount_due >= 0
    assert s.list_amount + s.adjustments == s.amount_due
    assert s.list_amount == sum((i.amount for i in items), D("0.00"))
    for line in s.lines:  # every line in whole cents; credits never exceed the grants
        assert line.amount == line.amount.quantize(D("0.01"))
    assert all(b.closing >= 0 and b.drawn <= b.opening + b.granted for b in s.credits)


@settings(max_examples=150, deadline=None)
@given(items_st, terms_st)
def test_chargeback_by_the_stated_rule_sums_to_the_invoice_to_the_cent(raw_items, terms):
    """Each team's list amount plus its largest-remainder share of every adjustment line
    (weighted by the line's shares) adds up to the amount due exactly."""
    items = [ListItem(a, m, "claude-opus-5" if m == "tokens" else None, date(2026, 11, d),
                      (("team", t),)) for a, m, d, t in raw_items]
    s, _ = apply_contract(build(terms), "2026-11", items)
    per_team: dict[str, int] = {}
    for item in items:
        team = dict(item.tags)["team"]
        per_team[team] = per_team.get(team, 0) + int(item.amount * 100)
    for line in s.lines:
        split = largest_remainder(int(line.amount * 100), list(line.shares)) \
            if line.shares else None
        if split is None:  # nothing to weigh by: the whole line to one group
            per_team["unallocated"] = per_team.get("unallocated", 0) + int(line.amount * 100)
            continue
        for item, c in zip(items, split, strict=True):
            team = dict(item.tags)["team"]
            per_team[team] += c
    assert sum(per_team.values()) == int(s.amount_due * 100)


@given(st.integers(-10**6, 10**6), st.lists(st.fractions(min_value=0, max_value=1000),
                                             min_size=1, max_size=8))
def test_largest_remainder_splits_exactly(total, weights):
    split = largest_remainder(total, weights)
    if sum(weights, Fraction(0)) == 0:
        assert split is None
    else:
        assert split is not None and sum(split) == total
        whole = sum(weights, Fraction(0))
        assert all(abs(Fraction(total) * w / whole - c) < 1 for w, c in zip(weights, split,
                                                                             strict=True))
