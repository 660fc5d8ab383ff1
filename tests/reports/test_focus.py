"""FOCUS 1.2 export: schema conformance (shared/reference/focus.md), values, and money."""

from __future__ import annotations

import csv
import json
import random
import re
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reports.exports import export_charges, write_rows
from reports.focus import FocusOptions, write_focus
from reports.invoice import build_invoice
from tests.reports.test_chargeback import rated, session

D = Decimal

# FOCUS 1.2, from the specification's column files: feature level and data type.
MANDATORY = {
    "BilledCost": "Decimal", "BillingAccountId": "String", "BillingAccountName": "String",
    "BillingCurrency": "String", "BillingPeriodEnd": "Date/Time",
    "BillingPeriodStart": "Date/Time", "ChargeCategory": "String", "ChargeClass": "String",
    "ChargeDescription": "String", "ChargePeriodEnd": "Date/Time",
    "ChargePeriodStart": "Date/Time", "ContractedCost": "Decimal", "EffectiveCost": "Decimal",
    "InvoiceIssuerName": "String", "ListCost": "Decimal", "PricingQuantity": "Decimal",
    "PricingUnit": "String", "ProviderName": "String", "PublisherName": "String",
    "ServiceCategory": "String", "ServiceName": "String",
}
# The Conditional and Recommended columns whose condition holds for Managed Agents usage.
APPLICABLE = {
    "ChargeFrequency": "String", "ConsumedQuantity": "Decimal", "ConsumedUnit": "String",
    "ContractedUnitPrice": "Decimal", "ListUnitPrice": "Decimal", "PricingCategory": "String",
    "ResourceId": "String", "ResourceName": "String", "ResourceType": "String",
    "ServiceSubcategory": "String", "SkuId": "String", "SkuMeter": "String",
    "SkuPriceDetails": "JSON", "SkuPriceId": "String", "Tags": "JSON",
}
NULLABLE = {"ChargeClass", "Tags"}  # ChargeClass: null unless a correction; Tags: untagged
ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {None, "Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "ServiceCategory": {"AI and Machine Learning", "Analytics", "Business Applications",
                        "Compute", "Databases", "Developer Tools", "Multicloud", "Identity",
                        "Integration", "Internet of Things", "Management and Governance",
                        "Media", "Migration", "Mobile", "Networking", "Security", "Storage",
                        "Web", "Other"},
    "BillingCurrency": {"USD"},
}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _events():
    rng = random.Random(12)
    events = session("s1", team="a", tokens=12_345, project="x")
    events += session("s2", run_ms=0, tokens=0)
    events.append({"session_id": "s2", "type": "session.usage", "id": "s2_w",
                   "processed_at": "2026-11-04T10:00:00.000Z", "usage": {
                       "input_tokens": 0, "output_tokens": 777, "cache_read_input_tokens": 9,
                       "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                          "ephemeral_1h_input_tokens": 0},
                       "server_tool_use": {"web_search_requests": 3}}})
    for i in range(20):
        events += session(f"r{i}", team=rng.choice(["a", "b"]), run_ms=rng.randint(1, 9_999_999),
                          tokens=rng.randint(1, 99_999), day=f"2026-11-{rng.randint(1, 30):02d}")
    return events


@pytest.fixture(scope="module")
def con():
    return rated(_events())


@pytest.fixture(scope="module")
def parquet(con, tmp_path_factory):
    path = tmp_path_factory.mktemp("focus") / "focus.parquet"
    write_focus(con, "2026-11", path, options=FocusOptions("org_1", "Acme"))
    return pq.read_table(path)


def _focus_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_decimal(arrow_type):
        return "Decimal"
    if pa.types.is_timestamp(arrow_type):
        assert arrow_type.tz == "UTC"
        return "Date/Time"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "String"
    return str(arrow_type)


def test_every_mandatory_and_applicable_column_has_its_name_and_type(parquet):
    types = {f.name: _focus_type(f.type) for f in parquet.schema}
    for name, kind in {**MANDATORY, **APPLICABLE}.items():
        assert name in types, f"missing {name}"
        assert types[name] == ("String" if kind == "JSON" else kind), name


def test_own_columns_are_prefixed_and_come_after_the_focus_columns(parquet):
    names = parquet.column_names
    own = [n for n in names if n not in MANDATORY and n not in APPLICABLE]
    assert own and all(n.startswith("x_") for n in own)
    assert names[-len(own):] == own


def test_nulls_and_allowed_values(parquet):
    rows = parquet.to_pylist()
    assert len(rows) == parquet.num_rows > 20
    for name in [*MANDATORY, *APPLICABLE]:
        if name not in NULLABLE:
            assert all(r[name] is not None for r in rows), f"null in {name}"
    for name, allowed in ALLOWED.items():
        assert {r[name] for r in rows} <= allowed, name
    for r in rows:
        assert r["ChargeCategory"] == "Usage" and r["ChargeFrequency"] == "Usage-Based"
        assert r["ServiceName"] == "Claude Managed Agents"
        assert r["ProviderName"] == r["PublisherName"] == r["InvoiceIssuerName"] == "Anthropic"
        assert (r["BillingAccountId"], r["BillingAccountName"]) == ("org_1", "Acme")
        assert r["BillingPeriodStart"] == datetime(2026, 11, 1, tzinfo=UTC)
        assert r["BillingPeriodEnd"] == datetime(2026, 12, 1, tzinfo=UTC)
        assert r["BillingPeriodStart"] <= r["ChargePeriodStart"] < r["ChargePeriodEnd"] \
            <= r["BillingPeriodEnd"]
        assert (r["ChargePeriodEnd"] - r["ChargePeriodStart"]).days == 1
        assert r["BilledCost"] == r["EffectiveCost"]
        assert r["ListCost"] == r["ContractedCost"]
        assert r["ListUnitPrice"] == r["ContractedUnitPrice"]
        assert abs(r["BilledCost"] - r["ListCost"]) < D("0.01")
        assert json.loads(r["SkuPriceDetails"])["PriceBook"] == "anthropic-list"
        if r["Tags"] is not None:
            assert isinstance(json.loads(r["Tags"]), dict)


def test_unit_price_times_quantity_is_list_cost(parquet):
    for r in parquet.to_pylist():
        product = r["ListUnitPrice"] * r["PricingQuantity"]
        if r["x_Meter"] == "runtime":  # hours are ms / 3,600,000 at 18 decimals
            assert abs(product - r["ListCost"]) < D("1e-15")
        else:
            assert product == r["ListCost"]


def test_units_skus_and_details_for_each_meter(parquet):
    by_sku = {r["SkuId"]: r for r in parquet.to_pylist() if r["ResourceId"] in ("s1", "s2")}
    runtime = by_sku["session-runtime"]
    assert (runtime["PricingUnit"], runtime["PricingQuantity"], runtime["ConsumedUnit"],
            runtime["ConsumedQuantity"], runtime["ListUnitPrice"], runtime["ListCost"]) == (
        "Hours", D(1), "Milliseconds", D(3_600_000), D("0.08"), D("0.08"))
    tokens = by_sku["claude-opus-5/input"]
    assert (tokens["PricingUnit"], tokens["PricingQuantity"], tokens["ConsumedQuantity"],
            tokens["ListCost"], tokens["SkuMeter"]) == (
        "1000000 Tokens", D("0.012345"), D(12_345), D("0.061725"), "Input Tokens")
    assert json.loads(tokens["SkuPriceDetails"]) == {
        "Model": "claude-opus-5", "TokenClass": "input", "Tier": "standard",
        "PriceBook": "anthropic-list", "PriceBookVersion": "2026-08-07"}
    assert json.loads(tokens["Tags"]) == {"team": "a", "project": "x"}
    assert tokens["ChargeDescription"] == "claude-opus-5 input tokens"
    search = by_sku["web-search"]
    assert (search["PricingUnit"], search["PricingQuantity"], search["ConsumedUnit"],
            search["ListCost"], search["ResourceId"], search["Tags"]) == (
        "1000 Requests", D("0.003"), "Requests", D("0.03"), "s2", None)


def test_billed_cost_adds_up_to_the_invoice_line_by_line(con, parquet):
    invoice = build_invoice(con, "2026-11", as_of="x")
    rows = parquet.to_pylist()
    assert sum(r["BilledCost"] for r in rows) == invoice.total
    for line in invoice.lines:
        billed = sum(r["BilledCost"] for r in rows if (r["x_Meter"], r["x_Model"],
                     r["x_TokenClass"]) == (line.meter, line.model, line.token_class))
        assert billed == line.amount


def test_csv_dates_are_iso_8601_in_utc_and_money_parses(con, tmp_path, parquet):
    path = tmp_path / "focus.csv"
    assert write_focus(con, "2026-11", path) == parquet.num_rows
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == parquet.column_names
    for r in rows:
        for name in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart",
                     "ChargePeriodEnd"):
            assert ISO_Z.match(r[name]), r[name]
        for name in ("BilledCost", "ListCost", "PricingQuantity", "ListUnitPrice"):
            D(r[name])
    assert sum(D(r["BilledCost"]) for r in rows) == build_invoice(con, "2026-11",
                                                                    as_of="x").total


def test_charges_and_reports_export_to_csv_and_parquet(con, tmp_path):
    assert export_charges(con, tmp_path / "c.parquet", period="2026-11") > 20
    table = pq.read_table(tmp_path / "c.parquet")
    assert pa.types.is_decimal(table.schema.field("amount_exact").type)
    assert export_charges(con, tmp_path / "all.csv") == table.num_rows
    rows = [["a", 3, D("1.5"), None], ["TOTAL", 3, D("0.25"), D("7")]]
    write_rows(["team", "n", "cost", "x"], rows, tmp_path / "r.parquet")
    back = pq.read_table(tmp_path / "r.parquet")
    assert back.schema.field("cost").type == pa.decimal128(38, 2)
    assert back.to_pylist()[1] == {"team": "TOTAL", "n": 3, "cost": D("0.25"), "x": D("7")}
    write_rows(["team", "n", "cost", "x"], rows, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text() == "team,n,cost,x\na,3,1.50,\nTOTAL,3,0.25,7.00\n"


def test_an_unknown_export_suffix_is_refused(con, tmp_path):
    with pytest.raises(ValueError, match=r"end it in \.csv or \.parquet"):
        export_charges(con, tmp_path / "c.xlsx")


def test_cli_exports_focus_charges_and_the_chargeback(tmp_path, capsys):
    from agenttally.cli import main
    from tests.reports.test_chargeback import store_file

    db = store_file(tmp_path, _events())
    common = ["--db", db, "--period", "2026-11", "--as-of", "2026-12-01"]
    assert main(["export", "focus", *common, "-o", str(tmp_path / "f.csv"),
                 "--billing-account-id", "org_9"]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'f.csv'}: ")
    with (tmp_path / "f.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["BillingAccountId"] for r in rows} == {"org_9"}
    for what in ("charges", "unrated", "invoice", "chargeback"):
        assert main(["export", what, *common, "-o", str(tmp_path / f"{what}.parquet")]) == 0
        assert pq.read_table(tmp_path / f"{what}.parquet").num_rows >= (0 if what == "unrated"
                                                                         else 1)
