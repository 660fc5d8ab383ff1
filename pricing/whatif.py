"""What-if: re-rate the same metered usage under a scenario, side by side with the baseline.

The rating engine runs in two stages (pricing.rating), and a scenario acts between them:

1. ``prepare_usage`` stages the usage (``usage_lines``, ``search_lines``, ``runtime_days``); the
   baseline is priced from it as is and kept in ``whatif_baseline``;
2. usage levers rewrite the staged tables (move traffic, cache hits, running time, billing
   granularity), price levers load modified copies of the books, ``price_usage`` prices them;
3. levers that are not a price of a metered quantity add lines of their own meter to
   ``whatif_scenario``: ``idle``, ``minimum``, ``sandbox`` (replacing ``runtime``),
   ``batch_discount``, ``discount``, ``commitment``, ``fixed``; growth scales session lines.

The staged tables, books, ``charges`` and ``unrated`` are restored afterwards (the last two
as views of the baseline's tables), so the connection looks as after ``rate()`` and several
scenarios can be re-rated from one staging.

Money stays exact: quantities are integers (tokens rounded to the nearest whole token when a
share of them moves, milliseconds to the nearest ms when running time is cut), amounts are
DECIMAL(38,18), and factors (a discount, growth, utilisation) are applied in integer
atto-dollars (1e-18 USD) with one half-even rounding there, never with DOUBLE arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction

import duckdb

from meter.errors import UsageError
from meter.intervals import gather_intervals, split_sql
from meter.vocabulary import GROUP_SQL, LINE_KEYS, METER_ORDER, Period, span_months
from pricing.contracts import ContractComparison
from pricing.money import (
    UNITS_PER_USD,
    apportion_cents,
    cents_of_units,
    install_sql_macros,
)
from pricing.pricebook import PriceBook, canonical_model_id
from pricing.rating import (
    RatingOptions,
    book_sql,
    day_start,
    drop_relation,
    load_books,
    prepare_usage,
    price_usage,
    runtime_days_sql,
)
from pricing.scenario import Scenario

__all__ = [
    "BASELINE",
    "SCENARIO",
    "GROUP_SQL",
    "Comparison",
    "ComparisonRow",
    "WhatIf",
    "compare",
    "period_months",
    "rerate",
    "run_whatif",
    "stage_baseline",
]

BASELINE = "whatif_baseline"
SCENARIO = "whatif_scenario"
_STAGED = ("usage_lines", "search_lines", "runtime_days")
_PICO = 10**12

@dataclass(frozen=True)
class WhatIf:
    """The outcome of a re-rating: where the two sides are, and what the reader should know."""

    scenario: Scenario
    notes: tuple[str, ...] = ()
    baseline_table: str = BASELINE
    scenario_table: str = SCENARIO


# --- exact factor arithmetic -------------------------------------------------------------


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    install_sql_macros(con)
    # u x num / den for an amount u in money units (pricing.money), rounded half-even
    con.execute("""
        CREATE OR REPLACE TEMP MACRO wi_scale_units(u, num, den) AS (
            units_div_half_even(CAST(u AS HUGEINT) * CAST(num AS HUGEINT),
                                CAST(den AS HUGEINT)))
    """)


def _ratio(value: Fraction | Decimal, note: list[str] | None = None) -> tuple[int, int]:
    """num/den of a factor, small enough for HUGEINT atto arithmetic (else to 1e-12)."""
    f = Fraction(value)
    if f.numerator <= _PICO * 10 and f.denominator <= _PICO:
        return f.numerator, f.denominator
    rounded = round(f * _PICO)
    if note is not None:
        note.append(f"a factor {float(f):.6g} was applied to 12 decimal places")
    return rounded, _PICO


def _units(value: Fraction) -> int:
    """A rational amount in money units, rounded half-even (Python's round is half-even)."""
    return round(value * UNITS_PER_USD)


# --- periods -----------------------------------------------------------------------------


def period_months(spec: str | None) -> list[str] | None:
    """'2026-11' -> ['2026-11']; '2026-Q4' -> its three months; '2026' -> twelve; None or
    'all' -> None (every period)."""
    months = span_months(spec)
    return None if months is None else [str(m) for m in months]


def _month_fraction(period: str, as_of_ms: int) -> Fraction:
    """How much of month `period` has elapsed at `as_of_ms` (1 for a finished month)."""
    month = Period.parse(period)
    length = month.end_ms - month.start_ms
    return Fraction(min(max(as_of_ms - month.start_ms, 0), length), length)


# --- staging -----------------------------------------------------------------------------


def _copy(con: duckdb.DuckDBPyConnection, source: str, target: str) -> None:
    drop_relation(con, target)  # `charges` is a view after rating, a table once restored
    con.execute(f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT * FROM {source}")


def _name(con: duckdb.DuckDBPyConnection, table: str, name: str) -> None:
    """`name` as a view of `table` (as the rating leaves `charges`: a view), not a copy."""
    drop_relation(con, name)
    con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {table}")


def stage_baseline(
    con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook], options: RatingOptions
) -> None:
    """Meter the usage once and price the baseline into ``whatif_baseline`` (and
    ``whatif_baseline_unrated``); keep the staged usage for :func:`rerate`."""
    prepare_usage(con, books, options)
    for table in _STAGED:
        _copy(con, table, f"wi_staged_{table}")
    price_usage(con)
    _copy(con, "charges", BASELINE)
    _copy(con, "unrated", f"{BASELINE}_unrated")
    _install_macros(con)


def run_whatif(
    con: duckdb.DuckDBPyConnection,
    books: Sequence[PriceBook],
    scenario: Scenario,
    options: RatingOptions,
    *,
    table: str = SCENARIO,
) -> WhatIf:
    """Rate the store's usage as of ``options.as_of_ms`` twice: as it is (``whatif_baseline``)
    and under ``scenario`` (``table``). Leaves ``charges``/``unrated`` as the baseline."""
    stage_baseline(con, books, options)
    return rerate(con, books, scenario, options.as_of_ms, table=table)


def rerate(
    con: duckdb.DuckDBPyConnection,
    books: Sequence[PriceBook],
    scenario: Scenario,
    as_of_ms: int,
    *,
    table: str = SCENARIO,
) -> WhatIf:
    """Re-rate the usage staged by :func:`stage_baseline` under ``scenario`` into ``table``
    (and ``{table}_unrated``); restores the staging, the books and the baseline charges."""
    notes: list[str] = []
    try:
        stretches = _uses_stretches(scenario)
        if stretches:  # these levers act on whole running or idle stretches
            gather_intervals(con, as_of_ms, table="intervals")
        _apply_usage(con, books, scenario, notes)
        if stretches:
            con.execute(runtime_days_sql(con, "SELECT * FROM intervals"))
        if scenario.prices.changes_books:
            load_books(con, scenario.apply_to_books(list(books)))
        price_usage(con)
        _copy(con, "charges", table)
        _copy(con, "unrated", f"{table}_unrated")
        _add_lines(con, scenario, table, as_of_ms, notes)
    finally:
        for staged in _STAGED:
            _copy(con, f"wi_staged_{staged}", staged)
        load_books(con, books)
        _name(con, BASELINE, "charges")
        _name(con, f"{BASELINE}_unrated", "unrated")
    _unrated_notes(con, table, notes)
    if scenario.usage.session_growth_percent_per_month is not None \
            and scenario.usage.growth_from is None:
        notes.append(f"growth of {scenario.usage.session_growth_percent_per_month}%/month "
                     f"applies to forecasts only (set usage.growth_from to grow re-rated usage)")
    return WhatIf(scenario=scenario, notes=tuple(notes), scenario_table=table)


def _uses_stretches(scenario: Scenario) -> bool:
    """Whether a lever acts on whole running or idle stretches (merged intervals)."""
    return (scenario.usage.runtime_cut_percent is not None
            or scenario.billing.granularity_ms > 1
            or scenario.billing.idle_usd_per_hour is not None)


def _model_names(books: Sequence[PriceBook], name: str) -> list[str]:
    """Every spelling of a model the staged `model_raw` may carry."""
    names = {name, canonical_model_id(name)}
    for book in books:
        model = book.resolve(name)
        if model is not None:
            names |= {model.id, *model.aliases}
    return sorted(names)


_MATCHES = ("(list_contains($names, model_raw) OR "
            "list_contains($names, regexp_replace(model_raw, '-[0-9]{8}$', '')))")

_Q = ("q_input", "q_output", "q_5m", "q_1h", "q_read")  # usage_lines' class columns

_MOVE = f"""
CREATE OR REPLACE TEMP TABLE usage_lines AS
WITH models AS (
    SELECT model_raw, coalesce({_MATCHES}, false) AS hit
    FROM (SELECT DISTINCT model_raw FROM usage_lines)
), tagged AS (
    SELECT u.*, coalesce(m.hit, false) AS hit,
           {", ".join(f"CAST(round(u.{q} * $share) AS BIGINT) AS moved_{q}" for q in _Q)}
    FROM usage_lines u LEFT JOIN models m USING (model_raw)
)
SELECT session_id, thread_id, at_ms, model_raw, speed, us, tier, source,
       {", ".join(f"CASE WHEN hit THEN {q} - moved_{q} ELSE {q} END AS {q}" for q in _Q)}
FROM tagged
UNION ALL
-- the target model is priced at its standard tier: long-context tokens move as standard ones
SELECT session_id, thread_id, at_ms, $to AS model_raw, speed, us, 'standard' AS tier, source,
       {", ".join(f"CAST(round(moved_{q} * $multiplier) AS BIGINT)" for q in _Q)}
FROM tagged
WHERE hit AND ({" OR ".join(f"moved_{q} <> 0" for q in _Q)})
"""

# Uncached input becomes cache reads until reads are `$hit` of the prompt (input + reads +
# writes) of each usage line (a snapshot increase or requests grouped per day); writes are left
# as they are.
_CACHE = f"""
CREATE OR REPLACE TEMP TABLE usage_lines AS
WITH models AS (
    SELECT model_raw, $all_models OR coalesce({_MATCHES}, false) AS in_scope
    FROM (SELECT DISTINCT model_raw FROM usage_lines)
), shifted AS (
    SELECT u.*, CASE WHEN m.in_scope AND q_input + q_5m + q_1h + q_read > 0
                     THEN greatest(0, least(q_input, CAST(round((q_input + q_5m + q_1h + q_read)
                                                             * $hit) AS BIGINT) - q_read))
                     ELSE 0 END AS shift
    FROM usage_lines u LEFT JOIN models m USING (model_raw)
)
SELECT * EXCLUDE (shift) REPLACE (q_input - shift AS q_input, q_read + shift AS q_read)
FROM shifted
"""

_CUT = """
UPDATE intervals SET end_ms = start_ms + CAST(round(duration_ms * $keep) AS BIGINT),
                     duration_ms = CAST(round(duration_ms * $keep) AS BIGINT)
WHERE status = 'running'
"""

# Each continuous running stretch is billed per started unit.
_GRANULARITY = """
UPDATE intervals SET end_ms = start_ms + (duration_ms + $unit - 1) // $unit * $unit,
                     duration_ms = (duration_ms + $unit - 1) // $unit * $unit
WHERE status = 'running' AND duration_ms > 0
"""


# Levers that round per usage line see one row per session x thread x day x book x model x
# speed x tier x source (rating keeps requests apart by the speed they said and by their
# long-context bucket, which only pricing's sums need), dated at its first usage.
_USAGE_LINE_KEY = """
CREATE OR REPLACE TEMP TABLE usage_lines AS
SELECT session_id, thread_id, min(at_ms) AS at_ms, model_raw, speed, us, tier, source,
       sum(q_input)::BIGINT AS q_input, sum(q_output)::BIGINT AS q_output,
       sum(q_5m)::BIGINT AS q_5m, sum(q_1h)::BIGINT AS q_1h, sum(q_read)::BIGINT AS q_read
FROM usage_lines
GROUP BY session_id, thread_id, model_raw, speed, us, tier, source,
         CASE WHEN source = 'snapshot' THEN at_ms END, {day}, {book}
"""


def _apply_usage(con: duckdb.DuckDBPyConnection, books: Sequence[PriceBook],
                 scenario: Scenario, notes: list[str]) -> None:
    usage = scenario.usage
    if usage.move or usage.cache_hit_rate_percent is not None:
        con.execute(_USAGE_LINE_KEY.format(day=day_start("at_ms"), book=book_sql(con, "at_ms")))
    for move in usage.move:
        con.execute(_MOVE, {"names": _model_names(books, move.from_model),
                            "share": move.percent / 100, "to": move.to_model,
                            "multiplier": move.token_multiplier})
    if usage.cache_hit_rate_percent is not None:
        names = sorted({n for m in usage.cache_hit_models for n in _model_names(books, m)})
        con.execute(_CACHE, {"hit": usage.cache_hit_rate_percent / 100, "names": names,
                             "all_models": not usage.cache_hit_models})
    if usage.runtime_cut_percent is not None:
        con.execute(_CUT, {"keep": 1 - usage.runtime_cut_percent / 100})
    if scenario.billing.granularity_ms > 1:
        con.execute(_GRANULARITY, {"unit": scenario.billing.granularity_ms})


# --- lines of the scenario's own ---------------------------------------------------------

_DAY = "CAST(make_timestamp(start_ms * 1000) AS DATE)"

_IDLE = f"""
INSERT INTO {{table}}
WITH idle AS (
    SELECT session_id, status, start_ms,
           start_ms + least(duration_ms, coalesce($cap_ms, duration_ms)) AS end_ms,
           least(duration_ms, coalesce($cap_ms, duration_ms)) AS duration_ms, provisional
    FROM intervals WHERE status = 'idle' AND duration_ms > 0
), idle_days AS ({{split}})
SELECT strftime(p.day, '%Y-%m'), p.day, p.session_id, s.agent_id, s.environment_id,
       s.metadata, 'idle', NULL, NULL, 'standard', sum(p.duration_ms)::BIGINT, 'ms',
       $rate, 'USD per idle session-hour',
       units_usd(runtime_units(sum(p.duration_ms), $rate)),
       $book, 'what-if', bool_or(p.provisional), runtime_units(sum(p.duration_ms), $rate)
FROM (SELECT *, {_DAY} AS day FROM idle_days) p
LEFT JOIN rating_sessions s USING (session_id)
GROUP BY ALL
"""

_MINIMUM = """
INSERT INTO {table}
WITH per AS (
    SELECT session_id, min(day) AS day, sum(amount_units) AS total,
           bool_or(provisional) AS provisional
    FROM {table} WHERE session_id IS NOT NULL GROUP BY session_id
)
SELECT strftime(per.day, '%Y-%m'), per.day, per.session_id, s.agent_id, s.environment_id,
       s.metadata, 'minimum', NULL, NULL, 'standard', 1, 'sessions', $minimum,
       'USD minimum per session', units_usd(units_of($minimum) - per.total),
       $book, 'what-if', per.provisional, units_of($minimum) - per.total
FROM per LEFT JOIN rating_sessions s USING (session_id)
WHERE per.total < units_of($minimum)
"""

_SANDBOX = """
UPDATE {table} SET meter = 'sandbox', unit_price = $rate, price_unit = $price_unit,
    amount_units = wi_scale_units(runtime_units(quantity, $rate), $num, $den),
    amount_exact = units_usd(wi_scale_units(runtime_units(quantity, $rate), $num, $den)),
    book = $book, book_version = 'what-if'
WHERE meter = 'runtime'
"""

# A negative line per (day, session) taking `num/den` of the listed meters' amounts.
_REBATE = """
INSERT INTO {table}
SELECT period, day, session_id, agent_id, environment_id, tags, $meter, NULL, NULL,
       'standard', NULL, NULL, NULL, $price_unit,
       units_usd(-wi_scale_units(sum(amount_units), $num, $den)),
       $book, 'what-if', bool_or(provisional), -wi_scale_units(sum(amount_units), $num, $den)
FROM {table}
WHERE ($all_meters AND meter NOT IN ('discount', 'commitment', 'fixed'))
      OR list_contains($meters, meter)
GROUP BY period, day, session_id, agent_id, environment_id, tags
HAVING sum(amount_units) <> 0
"""

_GROWTH = """
UPDATE {table} SET
    amount_units = wi_scale_units(amount_units, g.num, g.den),
    amount_exact = units_usd(wi_scale_units(amount_units, g.num, g.den)),
    quantity = CAST(round(quantity * g.factor) AS BIGINT)
FROM wi_growth g
WHERE {table}.period = g.period AND {table}.session_id IS NOT NULL
"""

_MONTHLY = """
INSERT INTO {table}
SELECT $period, CAST($day AS DATE), NULL, NULL, NULL, NULL, $meter, NULL, NULL, 'standard',
       NULL, NULL, $unit_price, 'USD per month', units_usd(CAST($units AS HUGEINT)),
       $book, 'what-if', $provisional, CAST($units AS HUGEINT)
"""


def _add_lines(con: duckdb.DuckDBPyConnection, scenario: Scenario, table: str,
               as_of_ms: int, notes: list[str]) -> None:
    book = f"what-if:{scenario.name}"
    billing, bvb, prices = scenario.billing, scenario.build_vs_buy, scenario.prices
    if billing.idle_usd_per_hour is not None:
        cap = None if billing.idle_max_minutes is None else int(billing.idle_max_minutes * 60_000)
        con.execute(_IDLE.format(table=table, split=split_sql("idle", "day")),
                    {"cap_ms": cap, "rate": billing.idle_usd_per_hour, "book": book})
    if billing.minimum_per_session_usd is not None:
        con.execute(_MINIMUM.format(table=table),
                    {"minimum": billing.minimum_per_session_usd, "book": book})
    if bvb is not None:
        num, den = _ratio(Fraction(100) / Fraction(bvb.utilisation_percent), notes)
        con.execute(_SANDBOX.format(table=table), {
            "rate": bvb.sandbox_usd_per_hour, "num": num, "den": den, "book": book,
            "price_unit": f"USD per sandbox-hour at {bvb.utilisation_percent}% utilisation"})
        if bvb.batch_share_percent > 0:
            share = Fraction(bvb.batch_share_percent) * Fraction(bvb.batch_discount_percent)
            num, den = _ratio(share / 10_000, notes)
            con.execute(_REBATE.format(table=table), {
                "meter": "batch_discount", "num": num, "den": den, "book": book,
                "all_meters": False, "meters": ["tokens"],
                "price_unit": f"{bvb.batch_discount_percent}% off {bvb.batch_share_percent}% "
                              f"of tokens (Batch API)"})
    growth = scenario.usage.session_growth_percent_per_month
    if growth is not None and scenario.usage.growth_from is not None:
        _grow(con, table, Fraction(growth), scenario.usage.growth_from, notes)
    if prices.discount is not None:
        num, den = _ratio(Fraction(prices.discount.percent) / 100, notes)
        con.execute(_REBATE.format(table=table), {
            "meter": "discount", "num": num, "den": den, "book": book,
            "all_meters": not prices.discount.meters, "meters": list(prices.discount.meters),
            "price_unit": f"{prices.discount.percent}% off"})
    periods = [r[0] for r in con.execute(
        f"SELECT DISTINCT period FROM {table} WHERE period IS NOT NULL ORDER BY 1").fetchall()]
    if prices.commitment is not None:
        totals = dict(con.execute(
            f"SELECT period, sum(amount_units) FROM {table} GROUP BY period").fetchall())
        commit = prices.commitment.usd_per_month
        for period in periods:
            fraction = _month_fraction(period, as_of_ms)
            due = _units(Fraction(commit) * fraction)
            shortfall = due - int(totals.get(period) or 0)
            if fraction < 1:
                notes.append(f"commitment for {period} is pro rata: {cents_of_units(due)} of "
                             f"{commit} (month in progress)")
            if shortfall > 0:
                _monthly_line(con, table, period, "commitment", commit, shortfall, book,
                              fraction < 1)
    if bvb is not None and bvb.fixed_usd_per_month > 0:
        for period in periods:
            fraction = _month_fraction(period, as_of_ms)
            amount = _units(Fraction(bvb.fixed_usd_per_month) * fraction)
            _monthly_line(con, table, period, "fixed", bvb.fixed_usd_per_month, amount, book,
                          fraction < 1)


def _monthly_line(con: duckdb.DuckDBPyConnection, table: str, period: str, meter: str,
                  unit_price: Decimal, units: int, book: str, provisional: bool) -> None:
    con.execute(_MONTHLY.format(table=table), {
        "period": period, "day": f"{period}-01", "meter": meter, "unit_price": unit_price,
        "units": str(units), "book": book, "provisional": provisional})


def _grow(con: duckdb.DuckDBPyConnection, table: str, growth: Fraction, start: date,
          notes: list[str]) -> None:
    """Sessions grow by `growth` % per month from `start`'s month, compounding monthly:
    month k after it carries (1 + growth/100)^k times the usage."""
    periods = [r[0] for r in con.execute(
        f"SELECT DISTINCT period FROM {table} WHERE period IS NOT NULL").fetchall()]
    rows = []
    for period in periods:
        month = Period.parse(period)
        k = (month.year - start.year) * 12 + month.month - start.month
        if k > 0:
            factor = (1 + growth / 100) ** k
            num, den = _ratio(factor, notes)
            rows.append((period, num, den, Decimal(num) / Decimal(den)))
    con.execute("CREATE OR REPLACE TEMP TABLE wi_growth (period VARCHAR, num HUGEINT, "
                "den HUGEINT, factor DECIMAL(38, 12))")
    if rows:
        con.executemany("INSERT INTO wi_growth VALUES (?, ?, ?, ?)",
                        [(p, str(n), str(d), f) for p, n, d, f in rows])
        con.execute(_GROWTH.format(table=table))


def _unrated_notes(con: duckdb.DuckDBPyConnection, table: str, notes: list[str]) -> None:
    rows = con.execute(f"""
        SELECT s.model, s.unit, s.reason, sum(s.quantity)::BIGINT FROM {table}_unrated s
        GROUP BY ALL
        EXCEPT
        SELECT b.model, b.unit, b.reason, sum(b.quantity)::BIGINT FROM {BASELINE}_unrated b
        GROUP BY ALL
        ORDER BY 1 NULLS FIRST
    """).fetchall()
    for model, unit, reason, quantity in rows:
        notes.append(f"the scenario leaves {quantity:,} {unit} of {model or 'usage'} unrated "
                     f"({reason}); they are in neither total")


# --- side by side ------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    group: str | None
    meter: str
    baseline: Decimal
    scenario: Decimal

    @property
    def delta(self) -> Decimal:
        return self.scenario - self.baseline

    @property
    def delta_percent(self) -> Decimal | None:
        if self.baseline == 0:
            return None
        return (self.delta * 100 / self.baseline).quantize(Decimal("0.1"))


@dataclass(frozen=True)
class Comparison:
    """Baseline vs scenario per (group, meter), each line rounded half-even to the cent once;
    totals are sums of rounded lines, as on an invoice."""

    scenario: str
    period: str | None
    by: str | None
    rows: list[ComparisonRow]
    notes: tuple[str, ...] = field(default_factory=tuple)
    contract: ContractComparison | None = None  # amounts due under the contracts, if any

    @property
    def baseline_total(self) -> Decimal:
        return sum((r.baseline for r in self.rows), Decimal("0.00"))

    @property
    def scenario_total(self) -> Decimal:
        return sum((r.scenario for r in self.rows), Decimal("0.00"))

    def by_meter(self) -> list[ComparisonRow]:
        """Rows summed over groups, one per meter (sums of the rounded group lines)."""
        merged: dict[str, list[Decimal]] = {}
        for row in self.rows:
            pair = merged.setdefault(row.meter, [Decimal("0.00"), Decimal("0.00")])
            pair[0] += row.baseline
            pair[1] += row.scenario
        return [ComparisonRow(None, m, b, s) for m, (b, s) in merged.items()]


def _meter_rank(meter: str) -> int:
    return METER_ORDER.index(meter) if meter in METER_ORDER else len(METER_ORDER)


def compare(
    con: duckdb.DuckDBPyConnection,
    *,
    by: str | None = None,
    period: str | None = None,
    what_if: WhatIf | None = None,
) -> Comparison:
    """Baseline and scenario amounts per meter (and per ``by`` group: a key of GROUP_SQL)
    in ``period`` (YYYY-MM, YYYY-Qn, YYYY, or None/'all'). The baseline's total is the sum of
    the period's invoices, to the cent."""
    if by is not None and by not in GROUP_SQL:
        raise UsageError(f"unknown group {by!r}; choose from {', '.join(GROUP_SQL)}")
    baseline = what_if.baseline_table if what_if else BASELINE
    scenario = what_if.scenario_table if what_if else SCENARIO
    months = period_months(period)
    params = {"all": months is None, "months": months or []}
    # Each side as its invoices: a line per period x meter x model x token class x tier,
    # rounded once from its exact sum; groups get the line's cents apportioned by their exact
    # share, so the groups add up to the invoices to the cent.
    line = ["period", *LINE_KEYS]
    cents: dict[tuple[str | None, str], list[int]] = {}
    for side, table in enumerate((baseline, scenario)):
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE wi_parts AS
            SELECT {", ".join(line)}, {GROUP_SQL[by] if by else "NULL"} AS grp,
                   sum(amount_units) AS weight
            FROM {table} WHERE $all OR list_contains($months, period) GROUP BY ALL
        """, params)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE wi_lines AS
            SELECT {", ".join(line)}, CAST(units_cents(sum(weight)) * 100 AS HUGEINT) AS cents
            FROM wi_parts GROUP BY ALL
        """)
        apportion_cents(con, parts="wi_parts", lines="wi_lines", line_keys=line,
                        part_keys=["grp"], out="wi_alloc")
        for g, m, c in con.execute("SELECT grp, meter, sum(cents) FROM wi_alloc GROUP BY ALL"
                                   ).fetchall():
            cents.setdefault((g, m), [0, 0])[side] += int(c)
    summed = {k: [Decimal(c).scaleb(-2) for c in pair] for k, pair in cents.items()}
    out = [ComparisonRow(g, m, b, s_) for (g, m), (b, s_) in summed.items()]
    out.sort(key=lambda r: (r.group or "", _meter_rank(r.meter), r.meter))
    return Comparison(scenario=what_if.scenario.name if what_if else "scenario",
                      period=period, by=by, rows=out,
                      notes=what_if.notes if what_if else ())
