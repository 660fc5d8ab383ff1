"""Money units: every priced amount is a whole number of them, so sums are exact and a line
is rounded once, from the true sum; and apportioning a line's cents over its parts."""

import random
from decimal import Decimal as D
from fractions import Fraction

import duckdb
import pytest

from pricing.money import (
    UNITS_PER_USD,
    apportion_cents,
    cents_of_units,
    install_sql_macros,
    runtime_units_per_ms,
    units_of_usd,
    usd_of_units,
)


@pytest.fixture
def con():
    con = duckdb.connect()
    install_sql_macros(con)
    return con


def test_runtime_units_are_exact_for_every_millisecond():
    # $0.08 per hour is 0.08 / 3,600,000 USD per ms: 200,000,000,000 units
    assert runtime_units_per_ms(D("0.08")) == 200_000_000_000
    assert Fraction(runtime_units_per_ms(D("0.08")), UNITS_PER_USD) == Fraction("0.08") / 3600000
    assert runtime_units_per_ms(D("0.12345678")) * 3_600_000 == 12_345_678 * 9 * 10**10
    with pytest.raises(ValueError, match="too fine"):
        runtime_units_per_ms(D("0.0000000000001"))


@pytest.mark.parametrize(("ms", "sessions", "cents"), [
    (1_725_000, 3, "0.12"),   # 3 x 0.038333... = 0.115 exactly: half-even up to 0.12
    (1_275_000, 3, "0.08"),   # 3 x 0.028333... = 0.085: half-even down to 0.08
    (562_500, 1, "0.01"),     # 0.0125 -> 0.01
    (3_262_500, 9, "0.65"),   # 9 x 0.0725 = 0.6525 -> 0.65
    (3_037_500, 1, "0.07"),   # 0.0675 -> 0.07
    (225_000, 3, "0.02"),     # 3 x 0.005 = 0.015: half-even up to 0.02
    (375_000, 3, "0.02"),     # 3 x 0.008333... = 0.025: half-even down to 0.02
])
def test_summed_runtime_units_round_the_true_amount(con, ms, sessions, cents):
    units = sessions * ms * runtime_units_per_ms(D("0.08"))
    assert cents_of_units(units) == D(cents)
    assert con.execute("SELECT units_cents(sum(runtime_units(ms, 0.08))) FROM "
                       "(SELECT $ms AS ms FROM range($n))", {"ms": ms, "n": sessions}
                       ).fetchall()[0][0] == D(cents)


def test_sql_and_python_round_alike_also_below_zero(con):
    for units in (45 * 10**15, 45 * 10**15 + 1, -45 * 10**15, -45 * 10**15 - 1,
                  -135 * 10**15, 9, 4, 5, -4, -5, 0):
        sql_cents, sql_usd = con.execute("SELECT units_cents($u::HUGEINT), units_usd($u::HUGEINT)",
                                         {"u": str(units)}).fetchall()[0]
        assert (sql_cents, sql_usd) == (cents_of_units(units), usd_of_units(units)), units


def test_units_of_an_exact_decimal_amount(con):
    amount = D("123.456789012345678")
    assert con.execute("SELECT units_of($a::DECIMAL(38, 18))", {"a": str(amount)}
                       ).fetchall()[0][0] == units_of_usd(D("123.456789012345678"))
    assert usd_of_units(units_of_usd(D("0.000000000000000001"))) == D("1E-18")


def test_apportion_cents_is_exact_and_within_a_cent_of_each_share(con):
    rng = random.Random(3)
    parts = [(line, part, rng.randint(-10**20, 10**21)) for line in range(5)
             for part in range(rng.randint(1, 9))]
    lines = {line: rng.randint(-500, 50_000) for line in range(5)}
    con.execute("CREATE TEMP TABLE p (line INTEGER, part INTEGER, weight HUGEINT)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?)", parts)
    con.execute("CREATE TEMP TABLE l (line INTEGER, cents HUGEINT)")
    con.executemany("INSERT INTO l VALUES (?, ?)", list(lines.items()))
    apportion_cents(con, parts="p", lines="l", line_keys=["line"], part_keys=["part"], out="o")
    got = con.execute("SELECT line, part, cents FROM o").fetchall()
    for line, cents in lines.items():
        mine = {part: c for ln, part, c in got if ln == line}
        assert sum(mine.values()) == cents
        weights = {part: a for ln, part, a in parts if ln == line}
        total = sum(weights.values())
        for part, c in mine.items():
            assert abs(D(c) - D(cents) * weights[part] / total) < 1


def test_runtime_usd_is_the_units_to_the_nearest_atto_dollar(con):
    rows = con.execute("""
        SELECT ms, k, runtime_usd(ms, k) = units_usd(CAST(ms AS HUGEINT) * k)
        FROM (SELECT unnest([0, 1, 4, 5, 8, 9, 10, 3599999, 86400000, 123456789]) AS ms),
             (SELECT unnest([200000000000, 308641950000, 1, 4, 5, 750000000000000000]) AS k)
    """).fetchall()
    assert all(same for _, _, same in rows), [r for r in rows if not r[2]]
