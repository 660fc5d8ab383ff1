"""Instants and periods: one parser each, and a refusal that says what was expected."""

from datetime import date

import pytest

from meter.vocabulary import (
    Period,
    VocabularyError,
    iso_ms,
    parse_day,
    parse_instant,
    parse_span,
    span_months,
    to_epoch_ms,
)
from tests.conftest import ms


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-30", "2026-11-30T00:00:00.000Z"),             # a bare date: 00:00 UTC
    ("2026-11-30T09:15:00Z", "2026-11-30T09:15:00.000Z"),
    ("2026-11-30t09:15:00.25z", "2026-11-30T09:15:00.250Z"),
    ("2026-11-30T10:15:00.999999+01:00", "2026-11-30T09:15:00.999Z"),  # floor to the ms
    ("2026-12-01T00:30:00-01:00", "2026-12-01T01:30:00.000Z"),
    ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
])
def test_instants_parse_to_epoch_ms_and_print_back(text, expected):
    assert iso_ms(parse_instant(text)) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-11-30T10:00", "2026-11-30T10:00:00",
                                  "2026-13-01", "2026-11-31", "2026-11-30T24:00:01Z", "nov",
                                  "1796000000000", ""])
def test_anything_else_is_not_an_instant(text):
    with pytest.raises(VocabularyError, match="is not an instant; expected an RFC 3339"):
        parse_instant(text)


def test_a_period_knows_its_bounds_and_neighbours():
    nov = Period.parse("2026-11")
    assert (str(nov), nov.start, nov.end) == ("2026-11", date(2026, 11, 1), date(2026, 12, 1))
    assert (nov.start_ms, nov.end_ms) == (ms("2026-11-01T00:00:00Z"), ms("2026-12-01T00:00:00Z"))
    assert str(Period.parse("2026-12").next()) == "2027-01"
    assert str(Period.parse("2027-01").previous()) == "2026-12"
    assert Period.containing(ms("2026-11-30T23:59:59.999Z")) == nov
    assert Period.containing(ms("2026-12-01T00:00:00Z")) == nov.next()
    assert Period.containing(-1) == Period(1969, 12)


@pytest.mark.parametrize("text", ["nov", "2026-13", "2026-00", "2026-1", "2026-11-01", "26-11"])
def test_anything_else_is_not_a_period(text):
    with pytest.raises(VocabularyError, match=r"is not a period; expected YYYY-MM, e.g. 2026-11"):
        Period.parse(text)


def test_spans_and_days():
    assert [parse_span(t) for t in ("2026-11", "2026-Q4", "2026", "all")] == [
        "2026-11", "2026-Q4", "2026", "all"]
    with pytest.raises(VocabularyError, match="YYYY-MM, YYYY-Qn, YYYY or all"):
        parse_span("2026-Q5")
    assert parse_day("2026-10-01") == date(2026, 10, 1)
    with pytest.raises(VocabularyError, match="is not a day; expected YYYY-MM-DD"):
        parse_day("2026-02-30")


def test_a_span_expands_to_its_months():
    assert [str(m) for m in span_months("2026-Q4")] == ["2026-10", "2026-11", "2026-12"]
    assert len(span_months("2026")) == 12 and span_months("all") is None
    assert span_months(None) is None and [str(m) for m in span_months("2026-02")] == ["2026-02"]


def test_an_as_of_is_text_epoch_ms_or_now():
    import time

    assert to_epoch_ms("2026-11-30") == ms("2026-11-30T00:00:00Z") and to_epoch_ms(5) == 5
    assert abs(to_epoch_ms(None) - time.time() * 1000) < 5_000
