"""Money rules in one place: exact amounts, and one rounding, half-even to the cent.

Every amount a price book can produce is a whole number of *units* of 1/9 atto-dollar
(USD / 9e18): token and search amounts (rates of at most 8 decimals, a residency multiplier,
x a quantity) are whole atto-dollars, and runtime's ms x $/hour / 3,600,000 is a whole number
of ninths of one (x / 3.6e6 at 8 decimals = x x 25,000 / 9 atto). A charge line carries its
amount in units (`amount_units`, HUGEINT), so any sum of lines is exact, and beside it as a
DECIMAL(38,18) for reading (`amount_exact`, to the nearest atto-dollar). Amounts are rounded
once, from the summed units, on invoice or report lines; a total is the sum of its rounded
lines, as on a real invoice.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import duckdb

from meter.errors import UsageError

# An invoice line: what is rounded once. Every report rounds these lines (per period) and
# apportions or adds their cents, so its totals equal the invoice's.
CENT = Decimal("0.01")
EXACT_SQL_TYPE = "DECIMAL(38,18)"
UNITS_PER_USD = 9 * 10**18
_UNITS_PER_CENT = UNITS_PER_USD // 100
_UNITS_PER_ATTO = 9
_ATTO = Decimal("1e-18")


def round_cents(amount: Decimal) -> Decimal:
    """Half-even (banker's) rounding to whole cents: 0.125 -> 0.12, 0.135 -> 0.14."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _div_half_even(a: int, b: int) -> int:
    """a / b rounded half-even to an integer (b > 0), in integers only."""
    q, r = divmod(a, b)
    if 2 * r > b or (2 * r == b and q % 2 == 1):
        q += 1
    return q


def cents_of_units(units: int) -> Decimal:
    """An exact amount in units, rounded half-even to whole cents."""
    return Decimal(_div_half_even(int(units), _UNITS_PER_CENT)) * CENT


def usd_of_units(units: int) -> Decimal:
    """An exact amount in units as USD to the nearest atto-dollar (half-even), for reading."""
    return Decimal(_div_half_even(int(units), _UNITS_PER_ATTO)) * _ATTO


def units_of_usd(amount: Decimal) -> int:
    """USD (whole atto-dollars, as every DECIMAL(38,18) amount is) in units."""
    return int(amount.scaleb(18).to_integral_value()) * _UNITS_PER_ATTO


def install_sql_macros(con: duckdb.DuckDBPyConnection) -> None:
    """SQL twins of the Python rules, for pricing and rounding many rows inside DuckDB.

    DuckDB's round() rounds half away from zero and DECIMAL division yields DOUBLE, so neither
    is used on money: amounts are HUGEINT money units (module docstring), and the one
    rounding is integer division, half-even: `units_cents` (to the cent), `units_usd` (to the
    atto-dollar, for reading). `units_of` takes an exact DECIMAL amount (whole atto-dollars;
    x * 1e18 as a DECIMAL would overflow at $100, so the integer and fraction parts are
    scaled apart), `runtime_units` running ms at a $/hour rate of at most 8 decimals.
    Installed once per connection (the macros never change; a rating run asks twice).
    """
    if con in _MACROS_ON:
        return
    _install_macros(con)
    _MACROS_ON.add(con)


# The connections that have the macros (weakly held: a closed connection drops out).
_MACROS_ON: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE OR REPLACE TEMP MACRO units_of(x) AS (
            9 * (CAST(trunc(CAST(x AS DECIMAL(38, 18))) AS HUGEINT) * 1000000000000000000
                 + CAST((CAST(x AS DECIMAL(38, 18)) - trunc(CAST(x AS DECIMAL(38, 18))))
                        * 1000000000000000000 AS HUGEINT)))
    """)
    con.execute("""
        CREATE OR REPLACE TEMP MACRO runtime_units(ms, usd_per_hour) AS (
            CAST(ms AS HUGEINT)
            * CAST(CAST(usd_per_hour AS DECIMAL(38, 12)) * 2500000000000 AS HUGEINT))
    """)
    con.execute("""
        CREATE OR REPLACE TEMP MACRO units_div_half_even(u, d) AS (
            CASE WHEN u >= 0
                 THEN u // d + CASE WHEN 2 * (u % d) > d
                                         OR (2 * (u % d) = d AND (u // d) % 2 = 1)
                                    THEN 1 ELSE 0 END
                 ELSE -((-u) // d + CASE WHEN 2 * ((-u) % d) > d
                                              OR (2 * ((-u) % d) = d AND ((-u) // d) % 2 = 1)
                                         THEN 1 ELSE 0 END) END)
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP MACRO units_cents(u) AS (
            CAST(units_div_half_even(CAST(u AS HUGEINT), {_UNITS_PER_CENT}) AS DECIMAL(38, 0))
            * 0.01::DECIMAL(3, 2))
    """)
    # (9 is odd: u / 9 is never a half, so half up on |u| is half-even, one division)
    con.execute(f"""
        CREATE OR REPLACE TEMP MACRO units_usd(u) AS (
            CAST(sign(u) * ((abs(CAST(u AS HUGEINT)) + 4) // {_UNITS_PER_ATTO})
                 AS DECIMAL(38, 0)) * CAST(0.000000000000000001 AS {EXACT_SQL_TYPE}))
    """)
    # = units_usd(ms x units_per_ms) in BIGINT steps and one HUGEINT product (15x faster on
    # millions of lines); units_per_ms x 8 must fit a BIGINT (a rate below $400,000/hour)
    con.execute(f"""
        CREATE OR REPLACE TEMP MACRO runtime_usd(ms, units_per_ms) AS (
            CAST(CAST(ms // 9 AS HUGEINT) * units_per_ms + (ms % 9 * units_per_ms + 4) // 9
                 AS DECIMAL(38, 0)) * CAST(0.000000000000000001 AS {EXACT_SQL_TYPE}))
    """)
    # floor division for HUGEINT (DuckDB's // truncates toward zero), b > 0
    con.execute("""
        CREATE OR REPLACE TEMP MACRO floordiv(a, b) AS (
            CASE WHEN a >= 0 THEN a // b ELSE -((-a + b - 1) // b) END)
    """)


def runtime_units_per_ms(usd_per_hour: Decimal) -> int:
    """A rate in USD per session-hour as money units per millisecond (a whole number for
    rates of at most 8 decimals, as price books have)."""
    units = Fraction(usd_per_hour) * UNITS_PER_USD / 3_600_000
    if units.denominator != 1:
        raise UsageError(f"runtime rate {usd_per_hour} USD/hour is too fine: at most 8 "
                         f"decimals are exact")
    return int(units)


def _match(cols: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{c} IS NOT DISTINCT FROM {right}.{c}" for c in cols) or "true"


def apportion_cents(
    con: duckdb.DuckDBPyConnection,
    *,
    parts: str,
    lines: str,
    line_keys: Sequence[str],
    part_keys: Sequence[str],
    out: str,
) -> None:
    """Split each line's whole cents over its parts, proportionally to the parts' weights.

    `parts` has columns line_keys + part_keys + `weight` (HUGEINT, normally the exact amount
    in money units); `lines` has line_keys + `cents` (HUGEINT, the rounded line amount).
    Creates temp table `out` (line_keys, part_keys, weight, cents) in which the cents of every
    line add up to the line's cents exactly: each part gets the floor of its exact share, and
    the cents left over go one each to the parts with the largest remainders (ties: the part
    keys in order). Set-based: window functions only, whatever the number of parts.
    Needs `install_sql_macros` on `con`.
    """
    lk = ", ".join(line_keys)
    order = ", ".join(f"{k} NULLS FIRST" for k in part_keys) or "1"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        WITH p AS (
            SELECT p.*, l.cents AS line_cents,
                   sum(p.weight) OVER (PARTITION BY {', '.join(f'p.{k}' for k in line_keys)})
                       AS line_weight
            FROM {parts} p JOIN {lines} l ON {_match(line_keys, 'p', 'l')}
        ), q AS (
            SELECT *, CASE WHEN line_weight = 0 THEN 0::HUGEINT ELSE floordiv(
                          line_cents * weight * sign(line_weight), abs(line_weight)) END AS base,
                      CASE WHEN line_weight = 0 THEN 0::HUGEINT ELSE
                          line_cents * weight * sign(line_weight) - floordiv(
                              line_cents * weight * sign(line_weight), abs(line_weight))
                          * abs(line_weight) END AS remainder
            FROM p
        ), r AS (
            SELECT *, line_cents - sum(base) OVER (PARTITION BY {lk}) AS leftover,
                   row_number() OVER (PARTITION BY {lk} ORDER BY remainder DESC, {order})
                       AS rank
            FROM q
        )
        SELECT {lk}, {', '.join(part_keys)}, weight,
               CAST(base + CASE WHEN rank <= leftover THEN 1 ELSE 0 END AS HUGEINT) AS cents
        FROM r
    """)
    # Lines with no part at all (possible only if a caller filtered parts) would lose money.
    missing = con.execute(f"""
        SELECT count(*) FROM {lines} l
        WHERE l.cents <> 0 AND NOT EXISTS (SELECT 1 FROM {parts} p
                                           WHERE {_match(line_keys, 'p', 'l')})
    """).fetchall()[0][0]
    if missing:
        raise ValueError(f"{missing} invoice line(s) have no part to carry their cents")
