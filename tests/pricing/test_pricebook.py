from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pricing.pricebook import (
    TOKEN_CLASSES,
    PriceBook,
    PriceBookError,
    canonical_model_id,
    default_pricebook_dir,
    load_pricebook,
    load_pricebooks,
)

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "pricebooks"

# A small book of our own, so that the error tests do not depend on the shipped data.
TINY = """\
name = "tiny"
version = "1"
effective_from = 2026-01-01
source = "test"

[runtime]
usd_per_session_hour = "0.08"

[web_search]
usd_per_1000 = "10.00"

[modifiers]
fast_mode_applies = true
data_residency_applies = false

[[models]]
id = "claude-test-1"
aliases = ["claude-test-one"]
input = "5"
output = "25"
cache_write_5m = "6.25"
cache_write_1h = "10"
cache_read = "0.50"

[[models]]
id = "claude-test-2"
input = "1"
output = "5"
cache_write_5m = "1.25"
cache_write_1h = "2"
cache_read = "0.10"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def books() -> dict[str, PriceBook]:
    return {book.version: book for book in load_pricebooks(SHIPPED)}


@pytest.fixture(scope="module")
def august(books: dict[str, PriceBook]) -> PriceBook:
    return books["2026-08-07"]


@pytest.fixture(scope="module")
def april(books: dict[str, PriceBook]) -> PriceBook:
    return books["2026-04-08"]


# --- the shipped books -----------------------------------------------------------------


def test_shipped_books_are_two_consecutive_versions_of_anthropic_list():
    loaded = load_pricebooks(SHIPPED)
    assert [(b.name, b.version) for b in loaded] == [
        ("anthropic-list", "2026-04-08"),
        ("anthropic-list", "2026-08-07"),
    ]
    first, second = loaded
    assert first.effective_from == datetime(2026, 4, 8, tzinfo=UTC)
    assert first.effective_to == datetime(2026, 8, 7, tzinfo=UTC)
    assert first.effective_from_ms == 1_775_606_400_000
    assert first.effective_to_ms == second.effective_from_ms == 1_786_060_800_000
    assert second.effective_to is None and second.effective_to_ms is None


def test_default_dir_is_the_shipped_dir_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv("AGENTTALLY_PRICEBOOKS", raising=False)
    assert default_pricebook_dir() == SHIPPED
    monkeypatch.setenv("AGENTTALLY_PRICEBOOKS", str(tmp_path))
    assert default_pricebook_dir() == tmp_path


def test_book_boundary_is_inclusive_from_and_exclusive_to(april, august):
    boundary = august.effective_from_ms
    assert april.covers(boundary - 1) and not april.covers(boundary)
    assert august.covers(boundary) and not august.covers(boundary - 1)


def test_runtime_web_search_and_modifiers(april, august):
    for book in (april, august):
        assert book.currency == "USD"
        assert book.runtime.usd_per_session_hour == Decimal("0.08")
        assert book.web_search.usd_per_1000 == Decimal("10.00")
        assert book.modifiers.default_cache_write_ttl == "5m"
    assert not april.modifiers.fast_mode_applies
    assert not april.modifiers.data_residency_applies
    assert august.modifiers.fast_mode_applies
    assert august.modifiers.data_residency_applies


def test_april_book_lacks_models_released_after_it(april, august):
    for later in ("claude-fable-5-1", "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"):
        assert april.resolve(later) is None
        assert august.resolve(later) is not None
    for inside in ("claude-opus-5", "claude-sonnet-5", "claude-fable-5"):
        assert april.resolve(inside) is not None


def test_fable_5_2_is_not_priced_so_its_usage_is_unrated(april, august):
    assert august.resolve("claude-fable-5-2") is None
    assert april.resolve("claude-fable-5-2") is None


def test_every_shipped_model_names_its_source_and_has_a_note(april, august):
    for book in (april, august):
        for model in book.models:
            assert model.source and model.note, model.id


def test_unverified_rates_say_so_in_the_note(august):
    assert "[U]" in august.resolve("claude-haiku-5-5").note
    assert "[U]" in august.resolve("claude-opus-5-5").note


def test_data_residency_only_for_4_6_and_later(august):
    assert august.resolve("claude-opus-4-6").geo_multiplier == Decimal("1.1")
    assert august.resolve("claude-sonnet-4-6").geo_multiplier == Decimal("1.1")
    assert august.resolve("claude-haiku-5-5").geo_multiplier == Decimal("1.1")
    assert august.resolve("claude-opus-4-5").data_residency_multiplier is None
    assert august.resolve("claude-haiku-4-5").geo_multiplier == Decimal(1)


# --- resolving model ids ---------------------------------------------------------------


def test_canonical_model_id_strips_only_a_dated_suffix():
    assert canonical_model_id("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert canonical_model_id("claude-3-haiku-20240307") == "claude-3-haiku"
    assert canonical_model_id("claude-opus-5") == "claude-opus-5"
    assert canonical_model_id("claude-opus-4-8") == "claude-opus-4-8"


def test_resolve_by_id_alias_and_dated_snapshot(august):
    assert august.resolve("claude-mythos-5-1").id == "claude-fable-5-1"
    assert august.resolve("claude-haiku-4-5-20251001").id == "claude-haiku-4-5"
    assert august.resolve("claude-3-haiku-20240307").id == "claude-3-haiku-20240307"
    # not listed anywhere: found by dropping the snapshot date
    assert august.resolve("claude-opus-4-1-20250805").id == "claude-opus-4-1"
    # the dated form of an alias: canonical id, then the aliases of the canonical id
    assert august.resolve("claude-3-5-haiku-20241022").id == "claude-haiku-3-5"


def test_resolve_unknown_model_is_none(august):
    assert august.resolve("claude-opus-9") is None
    assert august.resolve("") is None


def test_alias_rows_map_each_id_to_itself_and_each_alias(august):
    rows = august.alias_rows()
    assert {"alias": "claude-opus-5", "model_id": "claude-opus-5"} in rows
    assert {"alias": "claude-mythos-5", "model_id": "claude-fable-5"} in rows
    assert {"alias": "claude-sonnet-4-5-20250929", "model_id": "claude-sonnet-4-5"} in rows
    assert len(rows) == len(august.models) + sum(len(m.aliases) for m in august.models)
    assert len({row["alias"] for row in rows}) == len(rows)


# --- rate rows -------------------------------------------------------------------------


def rates_of(book: PriceBook, model_id: str) -> dict[tuple[str, str, str], dict]:
    return {
        (r["speed"], r["tier"], r["token_class"]): r
        for r in book.token_rate_rows()
        if r["model_id"] == model_id
    }


def test_opus_5_rate_rows_by_hand(august):
    rows = rates_of(august, "claude-opus-5")
    standard = {c: rows["standard", "standard", c]["usd_per_mtok"] for c in TOKEN_CLASSES}
    fast = {c: rows["fast", "standard", c]["usd_per_mtok"] for c in TOKEN_CLASSES}
    assert standard == {
        "input": Decimal("5"),
        "output": Decimal("25"),
        "cache_write_5m": Decimal("6.25"),
        "cache_write_1h": Decimal("10"),
        "cache_read": Decimal("0.50"),
    }
    assert fast == {
        "input": Decimal("10"),
        "output": Decimal("50"),
        "cache_write_5m": Decimal("12.50"),
        "cache_write_1h": Decimal("20"),
        "cache_read": Decimal("1.00"),
    }
    assert len(rows) == 10
    assert {r["geo_multiplier"] for r in rows.values()} == {Decimal("1.1")}
    assert {r["threshold_tokens"] for r in rows.values()} == {None}


def test_april_book_has_no_fast_rates(april):
    assert {r["speed"] for r in april.token_rate_rows()} == {"standard"}


def test_haiku_5_5_long_context_rows(august):
    rows = rates_of(august, "claude-haiku-5-5")
    long_context = {c: rows["standard", "long_context", c]["usd_per_mtok"] for c in TOKEN_CLASSES}
    assert long_context == {
        "input": Decimal("0.50"),
        "output": Decimal("2.50"),
        "cache_write_5m": Decimal("0.625"),
        "cache_write_1h": Decimal("1.00"),
        "cache_read": Decimal("0.05"),
    }
    assert rows["standard", "long_context", "input"]["threshold_tokens"] == 100_000
    assert rows["standard", "standard", "cache_read"]["usd_per_mtok"] == Decimal("0.01")
    assert rows["standard", "standard", "input"]["threshold_tokens"] is None
    assert len(rows) == 10


def test_rows_for_a_model_without_geo_use_multiplier_one(august):
    rows = rates_of(august, "claude-sonnet-4")
    assert len(rows) == 5
    assert {r["geo_multiplier"] for r in rows.values()} == {Decimal(1)}


# --- errors ----------------------------------------------------------------------------


def test_tiny_book_loads(tmp_path):
    book = load_pricebook(write(tmp_path, "tiny.toml", TINY))
    assert book.resolve("claude-test-one").id == "claude-test-1"
    assert book.models[1].cache_read == Decimal("0.10")


def test_float_money_is_rejected_naming_file_and_field(tmp_path):
    text = TINY.replace('output = "5"', "output = 5.0")
    path = write(tmp_path, "x.toml", text)
    with pytest.raises(PriceBookError) as caught:
        load_pricebook(path)
    message = str(caught.value)
    assert 'x.toml: models[1].output: write money as a string, e.g. "5"' in message


def test_float_runtime_price_is_rejected(tmp_path):
    text = TINY.replace('usd_per_session_hour = "0.08"', "usd_per_session_hour = 0.08")
    with pytest.raises(PriceBookError, match=r'runtime\.usd_per_session_hour: .*e\.g\. "0\.08"'):
        load_pricebook(write(tmp_path, "x.toml", text))


def test_a_rate_finer_than_the_engine_stores_is_rejected_by_name(tmp_path):
    # the rating engine stores rates as DECIMAL(18,8): a ninth decimal would be lost there
    text = TINY.replace('output = "5"', 'output = "5.000000001"')
    with pytest.raises(PriceBookError, match=r"models\[1\]\.output: .*8 decimal places"):
        load_pricebook(write(tmp_path, "x.toml", text))


def test_unknown_key_is_rejected(tmp_path):
    text = TINY.replace('cache_read = "0.10"', 'cache_read = "0.10"\ncache_reed = "1"')
    with pytest.raises(PriceBookError, match=r"x\.toml: models\[1\]\.cache_reed: unknown key"):
        load_pricebook(write(tmp_path, "x.toml", text))


def test_negative_and_non_numeric_money_are_rejected(tmp_path):
    with pytest.raises(PriceBookError, match=r"models\[0\]\.input: .*greater than or equal"):
        load_pricebook(write(tmp_path, "a.toml", TINY.replace('input = "5"', 'input = "-5"')))
    with pytest.raises(PriceBookError, match=r"models\[0\]\.input: .*decimal.*'five'"):
        load_pricebook(write(tmp_path, "b.toml", TINY.replace('input = "5"', 'input = "five"')))


def test_naive_datetime_is_rejected(tmp_path):
    text = TINY.replace("effective_from = 2026-01-01", "effective_from = 2026-01-01T00:00:00")
    with pytest.raises(PriceBookError, match=r"effective_from: .*no UTC offset"):
        load_pricebook(write(tmp_path, "x.toml", text))


def test_offset_datetime_is_normalised_to_utc(tmp_path):
    text = TINY.replace("effective_from = 2026-01-01", "effective_from = 2026-01-01T02:00:00+02:00")
    book = load_pricebook(write(tmp_path, "x.toml", text))
    assert book.effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert book.effective_from.tzinfo is UTC


def test_duplicate_model_id_within_a_book_is_rejected(tmp_path):
    text = TINY.replace('aliases = ["claude-test-one"]', 'aliases = ["claude-test-2"]')
    with pytest.raises(PriceBookError, match=r"'claude-test-2' appears twice"):
        load_pricebook(write(tmp_path, "x.toml", text))


def test_overlapping_books_with_the_same_name_are_rejected(tmp_path):
    write(tmp_path, "a.toml", TINY)  # open-ended from 2026-01-01
    write(
        tmp_path,
        "b.toml",
        TINY.replace('version = "1"', 'version = "2"').replace(
            "effective_from = 2026-01-01", "effective_from = 2026-03-01"
        ),
    )
    with pytest.raises(PriceBookError, match=r"a\.toml and .*b\.toml: price books overlap"):
        load_pricebooks(tmp_path)


def test_consecutive_books_and_other_names_may_share_time(tmp_path):
    write(
        tmp_path,
        "a.toml",
        TINY.replace(
            "effective_from = 2026-01-01", "effective_from = 2026-01-01\neffective_to = 2026-03-01"
        ),
    )
    write(
        tmp_path,
        "b.toml",
        TINY.replace('version = "1"', 'version = "2"').replace(
            "effective_from = 2026-01-01", "effective_from = 2026-03-01"
        ),
    )
    write(tmp_path, "c.toml", TINY.replace('name = "tiny"', 'name = "negotiated"'))
    loaded = load_pricebooks(tmp_path)
    assert [(b.name, b.version) for b in loaded] == [
        ("negotiated", "1"),
        ("tiny", "1"),
        ("tiny", "2"),
    ]


def test_effective_to_must_follow_effective_from(tmp_path):
    text = TINY.replace(
        "effective_from = 2026-01-01", "effective_from = 2026-01-01\neffective_to = 2026-01-01"
    )
    with pytest.raises(PriceBookError, match=r"effective_to .* must be after effective_from"):
        load_pricebook(write(tmp_path, "x.toml", text))


def test_invalid_toml_and_missing_directory_are_price_book_errors(tmp_path):
    with pytest.raises(PriceBookError, match=r"x\.toml: not valid TOML"):
        load_pricebook(write(tmp_path, "x.toml", "name = "))
    with pytest.raises(PriceBookError, match=r"no such price-book directory"):
        load_pricebooks(tmp_path / "missing")
