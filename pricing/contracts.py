"""Contracts: what a customer pays once list price has been worked out.

List price is where billing starts. A contract file (TOML, ``data/contracts/*.toml``, beside
the price books and with the same discipline: versions with effective dates, an owner or a
source, pydantic validation, errors naming the file, the line and the field) holds the terms:

- ``[[credits]]``: prepaid credit grants (``amount``, ``start``, ``expires``, ``priority``);
- ``[[commitments]]``: a committed spend ``amount`` ``per`` month, quarter or year, a
  ``discount_percent`` on the eligible ``meters`` / ``models``, and a true-up of the shortfall
  at the end of each commitment period;
- ``[[discounts]]``: ``percent`` or ``fixed_usd`` (per month) off ``meters`` / ``models`` /
  ``tags``;
- ``[internal]``: internal rates for chargeback (a markup or a fixed fee per team or project),
  showback at cost, and the group that receives (absorbs) the difference.

The rules, each applied by :func:`apply_contract` to a month's list amounts:

Stacking order. (1) line discounts, in file order, each on what the previous ones left
(10% then 20% is 28% off, never more than 100%; a fixed discount takes at most what is left of
its items); (2) the commitment discount on the eligible items' remainder; (3) the true-up of a
commitment period that ends this month; (4) credits. Each adjustment is one line, its exact
amount rounded half-even to the cent once; a discount line never takes the running subtotal
below zero (it is capped at it), so the amount due is never negative.

Commitments. A commitment period is ``per`` months long from the commitment's start (the
contract's by default). What counts toward it: the eligible items' amount after line and
commitment discounts (what is paid on them). At the end of each period the shortfall
(``amount`` - counted, when positive) is billed as a true-up line on that month's invoice:
met exactly means no true-up, short by one cent means a $0.01 true-up.

Credits. A grant can pay usage of the UTC days ``start`` .. ``expires`` inclusive: it expires
at the last millisecond of ``expires`` (23:59:59.999Z), and what is left of it then is gone
(shown as expired in the balances, never billed). The month's amount due before credits is
spread over its days (in proportion to each day's amount after discounts; a true-up falls on
the month's last day), and each day is paid by the grants valid that day in drawdown order:
``priority`` (lower first), then the earliest ``expires``, then the grant ``id``. A grant's
drawdown in a month is one line (ChargeCategory Credit), in whole cents.

Internal rates (chargeback only; reports.chargeback applies them): in ``chargeback`` mode a
group matched by a rate pays ``markup_percent`` of its cost plus ``fixed_usd`` a month, and the
``recipient`` group (the platform team) receives the same amount as a negative line, so the
groups still add up to the invoice; in ``showback`` mode groups are shown at cost and the
platform absorbs its own cost.

Everything in this module is pure and exact: money is Decimal at the edges and Fraction in
between, rounded once per line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from meter.config_files import describe, read_toml
from meter.errors import UsageError
from meter.vocabulary import Period

__all__ = [
    "CONTRACTS_ENV",
    "KNOWN_METERS",
    "AdjustmentLine",
    "CommitmentTerm",
    "CommitmentUse",
    "Contract",
    "ContractComparison",
    "ContractError",
    "ContractSet",
    "CreditBalance",
    "CreditGrant",
    "DiscountTerm",
    "InternalRate",
    "InternalRates",
    "LedgerState",
    "ListItem",
    "Statement",
    "apply_contract",
    "largest_remainder",
    "load_contract",
    "load_contracts",
    "parse_contract",
    "statements",
]

CONTRACTS_ENV = "AGENTTALLY_CONTRACTS"
KNOWN_METERS = ("runtime", "tokens", "web_search")
CENT = Decimal("0.01")
_ZERO = Fraction(0)


class ContractError(UsageError):
    """A contract file that cannot be used; the message names the file, the line and the field.

    Nothing of a contract with an error is applied: it is refused whole."""


# --- field types -------------------------------------------------------------------------


def _exact(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number as a string, e.g. \"100\", got a boolean")
    if isinstance(value, float):
        text = repr(value).removesuffix(".0")
        raise ValueError(f'write money and percentages as strings, e.g. "{text}" (a TOML float '
                         "is inexact binary)")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f"expected a decimal number, got {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    return value


def _cents(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError(f"at most 2 decimals (whole cents), got {value}")
    return value


def _percent(value: Decimal) -> Decimal:
    if value > 100:
        raise ValueError(f"a discount above 100% would pay the customer; expected 0 to 100, "
                         f"got {value}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise ValueError(f"at most 6 decimals, got {value}")
    return value


def _meter(value: str) -> str:
    if value not in KNOWN_METERS:
        raise ValueError(f"unknown meter {value!r}; expected one of {', '.join(KNOWN_METERS)}")
    return value


def _month_start(value: date) -> date:
    if value.day != 1:
        raise ValueError(f"terms run in whole billing months: expected the first day of a "
                         f"month, e.g. {value.replace(day=1).isoformat()}, got {value.isoformat()}")
    return value


def _a_date(value: Any) -> Any:
    if isinstance(value, str) and len(value.strip()) != 10:
        raise ValueError(f"expected a date, e.g. 2026-11-01, got {value!r}")
    if hasattr(value, "hour"):  # a TOML datetime: terms are in whole UTC days
        raise ValueError(f"expected a date, e.g. 2026-11-01 (terms are in whole UTC days), "
                         f"got {value.isoformat()}")
    return value


Money = Annotated[Decimal, BeforeValidator(_exact), Field(gt=0, allow_inf_nan=False),
                  AfterValidator(_cents)]
MoneyOrZero = Annotated[Decimal, BeforeValidator(_exact), Field(ge=0, allow_inf_nan=False),
                        AfterValidator(_cents)]
Percent = Annotated[Decimal, BeforeValidator(_exact), Field(gt=0), AfterValidator(_percent)]
PercentOrZero = Annotated[Decimal, BeforeValidator(_exact), Field(ge=0),
                          AfterValidator(_percent)]
Markup = Annotated[Decimal, BeforeValidator(_exact), Field(ge=0, le=1000)]
Day = Annotated[date, BeforeValidator(_a_date)]
Month = Annotated[date, BeforeValidator(_a_date), AfterValidator(_month_start)]
TermId = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")]
MeterName = Annotated[str, AfterValidator(_meter)]
ModelId = Annotated[str, Field(min_length=1, pattern=r"^\S+$")]
TagKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")]
OneOrMany = Annotated[tuple[str, ...],
                      BeforeValidator(lambda v: (v,) if isinstance(v, str) else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- terms -------------------------------------------------------------------------------


class CreditGrant(_Strict):
    """Prepaid credit: usable by usage of the days ``start`` .. ``expires`` (inclusive)."""

    id: TermId
    amount: Money
    start: Day
    expires: Day  # the last day it can pay for; gone at 23:59:59.999Z of that day
    priority: int = Field(default=100, ge=0, strict=True)  # lower is drawn first
    note: str = ""


class _Scope(_Strict):
    meters: tuple[MeterName, ...] = ()  # empty: every meter
    models: tuple[ModelId, ...] = ()  # empty: every model (and the meters without one)
    start: Month | None = None  # default: the contract's effective_from
    end: Month | None = None  # exclusive; default: the contract's effective_to

    def matches(self, item: ListItem) -> bool:
        if self.meters and item.meter not in self.meters:
            return False
        return not self.models or item.model in self.models


class CommitmentTerm(_Scope):
    """A committed spend per period with a discount on the eligible meters and models."""

    id: TermId
    amount: Money
    per: Literal["month", "quarter", "year"] = "month"
    discount_percent: PercentOrZero = Decimal(0)
    note: str = ""

    @property
    def months(self) -> int:
        return {"month": 1, "quarter": 3, "year": 12}[self.per]


class DiscountTerm(_Scope):
    """A percentage (or a fixed amount a month) off the matching list amounts."""

    id: TermId
    percent: Percent | None = None
    fixed_usd: Money | None = None  # per month, at most what is left of the matching items
    tags: dict[TagKey, OneOrMany] = Field(default_factory=dict)
    note: str = ""

    def matches(self, item: ListItem) -> bool:
        if not super().matches(item):
            return False
        tags = dict(item.tags)
        return all(tags.get(key) in values for key, values in self.tags.items())


class InternalRate(_Strict):
    """A markup and/or a fixed monthly fee for the chargeback groups whose ``key`` is
    ``value`` (``"*"``: every group but the recipient)."""

    key: TagKey = "team"
    value: str = Field(min_length=1)
    markup_percent: Markup = Decimal(0)
    fixed_usd: MoneyOrZero = Decimal(0)


class InternalRates(_Strict):
    mode: Literal["chargeback", "showback"] = "chargeback"
    recipient: str = Field(default="platform", min_length=1)
    rates: tuple[InternalRate, ...] = ()

    def rate_for(self, key: str, value: str) -> InternalRate | None:
        """The rate of the group `key` = `value`: its own, else the key's ``"*"`` rate."""
        if value == self.recipient:
            return None
        exact = [r for r in self.rates if r.key == key and r.value == value]
        if exact:
            return exact[0]
        wild = [r for r in self.rates if r.key == key and r.value == "*"]
        return wild[0] if wild else None


class Contract(_Strict):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    currency: Literal["USD"] = "USD"
    effective_from: Month
    effective_to: Month | None = None
    owner: str | None = None
    source: str | None = None
    note: str = ""
    credits: tuple[CreditGrant, ...] = ()
    commitments: tuple[CommitmentTerm, ...] = ()
    discounts: tuple[DiscountTerm, ...] = ()
    internal: InternalRates = InternalRates()

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def covers(self, period: Period) -> bool:
        return self.effective_from <= period.start and (
            self.effective_to is None or period.start < self.effective_to)

    def in_window(self, term: _Scope, period: Period) -> bool:
        start = term.start or self.effective_from
        end = term.end or self.effective_to
        return start <= period.start and (end is None or period.start < end)

    @property
    def tag_keys(self) -> tuple[str, ...]:
        """Every tag key a discount filters on, in order of appearance."""
        return tuple(dict.fromkeys(k for d in self.discounts for k in d.tags))


# --- checks across terms (each a (location, message) so errors can name the line) --------

Problem = tuple[tuple[int | str, ...], str]


def _problems(c: Contract) -> list[Problem]:
    out: list[Problem] = []
    if c.owner is None and c.source is None:
        out.append((("owner",), "missing; say who owns the contract (owner) or where its terms "
                                "come from (source)"))
    if c.effective_to is not None and c.effective_to <= c.effective_from:
        out.append((("effective_to",), f"{c.effective_to} must be after effective_from "
                                       f"{c.effective_from}"))
    seen: dict[str, str] = {}
    kinds: tuple[tuple[str, Sequence[CreditGrant | CommitmentTerm | DiscountTerm]], ...] = (
        ("credits", c.credits), ("commitments", c.commitments), ("discounts", c.discounts))
    for kind, terms in kinds:
        for i, term in enumerate(terms):
            where = f"{kind}[{i}].id"
            if term.id in seen:
                out.append(((kind, i, "id"), f"id {term.id!r} is used twice ({seen[term.id]} "
                                             f"and {where}); give each term its own id"))
            seen[term.id] = where
    for i, grant in enumerate(c.credits):
        if grant.expires < grant.start:
            out.append((("credits", i, "expires"),
                        f"{grant.expires} is before start {grant.start}"))
    scopes: tuple[tuple[str, Sequence[_Scope]], ...] = (
        ("commitments", c.commitments), ("discounts", c.discounts))
    for kind, scoped in scopes:
        for i, scope in enumerate(scoped):
            if scope.start is not None and scope.start < c.effective_from:
                out.append(((kind, i, "start"), f"{scope.start} is before the contract's "
                                                f"effective_from {c.effective_from}"))
            if scope.end is not None and scope.end <= (scope.start or c.effective_from):
                out.append(((kind, i, "end"), f"{scope.end} must be after the term's start "
                                              f"{scope.start or c.effective_from}"))
            if c.effective_to is not None and scope.end is not None \
                    and scope.end > c.effective_to:
                out.append(((kind, i, "end"), f"{scope.end} is after the contract's "
                                              f"effective_to {c.effective_to}"))
    for i, d in enumerate(c.discounts):
        if (d.percent is None) == (d.fixed_usd is None):
            out.append((("discounts", i, "percent"),
                        "give exactly one of percent (e.g. \"10\") or fixed_usd (per month)"))
    for i, a in enumerate(c.commitments):
        for j in range(i):
            b = c.commitments[j]
            if not _overlap_in_time(c, a, b):
                continue
            meters = _common(a.meters, b.meters, KNOWN_METERS)
            models = _common(a.models, b.models, None)
            if meters and models is not None:
                what = ", ".join(meters) + (f" ({', '.join(models)})" if models else "")
                out.append((("commitments", i, "meters"),
                            f"{what} also counts toward commitments[{j}] ({b.id!r}) in the same "
                            f"months; spend counts toward one commitment at a time"))
    rates: dict[tuple[str, str], int] = {}
    for i, r in enumerate(c.internal.rates):
        if (r.key, r.value) in rates:
            out.append((("internal", "rates", i, "value"),
                        f"{r.key} = {r.value!r} already has a rate (internal.rates"
                        f"[{rates[(r.key, r.value)]}]); one rate per group"))
        rates[(r.key, r.value)] = i
        if r.value == c.internal.recipient:
            out.append((("internal", "rates", i, "value"),
                        f"{r.value!r} is the recipient of internal rates; it cannot pay one"))
    return out


def _common(a: tuple[str, ...], b: tuple[str, ...], every: tuple[str, ...] | None
            ) -> list[str] | None:
    """What two scopes share: `every` stands for an empty scope; None (models) is 'all'."""
    if not a and not b:
        return list(every) if every is not None else []
    if not a or not b:
        return list(a or b)
    shared = [x for x in a if x in b]
    return shared if shared or every is not None else None


def _overlap_in_time(c: Contract, a: _Scope, b: _Scope) -> bool:
    far = date(9999, 1, 1)
    a0, a1 = a.start or c.effective_from, a.end or c.effective_to or far
    b0, b1 = b.start or c.effective_from, b.end or c.effective_to or far
    return a0 < b1 and b0 < a1


# --- loading -----------------------------------------------------------------------------


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"]+)\s*\]\]?")


def _line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the TOML `text` that a pydantic location points at (its key, else
    the table it sits in); None when the file does not write it (a missing key at the top)."""
    lines = text.splitlines()
    headers = [(n, m.group(1)) for n, line in enumerate(lines) if (m := _HEADER.match(line))]
    begin, stop = 0, headers[0][0] if headers else len(lines)
    parts = list(loc)
    rest = [p for p in parts if isinstance(p, str)]
    matched = False
    for k in range(len(parts), 0, -1):  # the longest table header the location starts with
        if not isinstance(parts[k - 1], str):
            continue
        name = ".".join(str(p) for p in parts[:k] if isinstance(p, str))
        found = [n for n, h in headers if h == name]
        if not found:
            continue
        follows = parts[k] if k < len(parts) else None
        which = follows if isinstance(follows, int) else 0
        if which >= len(found):
            return None
        begin = found[which]
        after = [n for n, _ in headers if n > begin]
        stop = after[0] if after else len(lines)
        rest = [p for p in parts[k:] if isinstance(p, str)]
        matched = True
        break
    if rest:
        key = re.compile(rf"^\s*\"?{re.escape(rest[0])}\"?\s*=")
        for n in range(begin, stop):
            if key.match(lines[n]):
                return n + 1
    return begin + 1 if matched else None


def _where(shown: str, text: str, loc: Sequence[int | str]) -> str:
    line = _line_of(text, loc)
    return f"{shown}:{line}" if line else shown


def parse_contract(raw: dict[str, Any], *, source: str = "<contract>", text: str = ""
                   ) -> Contract:
    """Validate a contract already read from TOML; errors name ``source``, the line (when
    ``text``, the file's text, is given) and the field, all of them in one line."""
    from meter.config_files import format_loc

    try:
        contract = Contract.model_validate(raw)
    except ValidationError as exc:
        errors = [f"{_where(source, text, e['loc'])}: {describe(dict(e))}" for e in exc.errors()]
        raise ContractError("; ".join(errors)) from None
    problems = _problems(contract)
    if problems:
        raise ContractError("; ".join(f"{_where(source, text, loc)}: {format_loc(loc)}: {msg}"
                                      for loc, msg in problems))
    return contract


def load_contract(path: str | os.PathLike[str]) -> Contract:
    """One contract file, validated whole (a file with any error is refused whole)."""
    path = Path(path)
    shown = _display(path)
    raw = read_toml(shown, ContractError, "contract file", "see data/contracts/ for an example")
    return parse_contract(raw, source=shown, text=path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ContractSet:
    """The versions of one contract, sorted by ``effective_from``, never overlapping."""

    versions: tuple[Contract, ...]
    sources: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.versions[0].name

    def in_force(self, period: Period) -> Contract | None:
        for version in self.versions:
            if version.covers(period):
                return version
        return None

    @property
    def first_month(self) -> Period:
        starts = [v.effective_from for v in self.versions]
        starts += [g.start for v in self.versions for g in v.credits]
        first = min(starts)
        return Period.parse(f"{first.year:04d}-{first.month:02d}")


def load_contracts(path: str | os.PathLike[str]) -> ContractSet:
    """A contract file, or a folder of ``*.toml`` versions of one contract. Versions must
    share a name, differ in version and not overlap in time."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.toml"))
        if not files:
            raise ContractError(f"{_display(path)}: no contract files (*.toml) in this folder")
    else:
        files = [path]
    loaded = sorted(((load_contract(p), _display(p)) for p in files),
                    key=lambda item: item[0].effective_from)
    names = sorted({c.name for c, _ in loaded})
    if len(names) > 1:
        raise ContractError(f"{_display(path)}: holds more than one contract ({', '.join(names)}"
                            "); point at one contract's file or folder")
    for (before, before_path), (after, after_path) in zip(loaded, loaded[1:], strict=False):
        if before.version == after.version:
            raise ContractError(f"{before_path} and {after_path}: version: both are "
                                f"{before.name} version {before.version!r}; number each "
                                "version")
        if before.effective_to is None or before.effective_to > after.effective_from:
            raise ContractError(
                f"{before_path}: effective_to: versions overlap: {before.version} runs "
                f"{before.effective_from}..{before.effective_to or 'open-ended'} and "
                f"{after.version} ({after_path}) starts {after.effective_from}; set "
                f"effective_to to {after.effective_from} or earlier")
    return ContractSet(tuple(c for c, _ in loaded), tuple(p for _, p in loaded))


# --- application -------------------------------------------------------------------------


@dataclass(frozen=True)
class ListItem:
    """A list amount of one month, as the invoice has it (normally whole cents: an invoice
    line's rounded amount apportioned to its day and tags), and what it is."""

    amount: Decimal
    meter: str
    model: str | None = None
    day: date | None = None  # None: the month as a whole (taken as its last day)
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AdjustmentLine:
    """One adjustment of a statement: ``amount`` is signed (negative lowers the amount due),
    whole cents, rounded half-even once from ``exact``. ``shares`` is how much of it each input
    item carries (exact, >= 0), in the order of the items: the weights reports use to
    distribute the line (reports.statement)."""

    kind: Literal["discount", "commitment_discount", "true_up", "credit"]
    term_id: str
    description: str
    amount: Decimal
    exact: Decimal
    shares: tuple[Fraction, ...] = field(default=(), repr=False, compare=False)

    @property
    def charge_category(self) -> str:
        """The FOCUS ChargeCategory of the line."""
        return "Credit" if self.kind == "credit" else "Usage"


@dataclass(frozen=True)
class CreditBalance:
    grant_id: str
    priority: int
    start: date
    expires: date
    opening: Decimal  # at the start of the month (0 before the grant starts)
    granted: Decimal  # added this month (the grant's amount, the month it starts)
    drawn: Decimal
    expired: Decimal  # left unused when it expired this month
    closing: Decimal


@dataclass(frozen=True)
class CommitmentUse:
    commitment_id: str
    window: str  # e.g. "2026-10..2026-12"
    amount: Decimal
    counted: Decimal  # counted toward it so far in its window (to the cent, half-even)
    closes: bool  # the window ends this month: a true-up is settled here
    true_up: Decimal

    @property
    def utilisation_percent(self) -> Decimal:
        return (self.counted * 100 / self.amount).quantize(Decimal("0.1"), ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Statement:
    """A month under a contract: the list amount, the adjustment lines in stacking order,
    the amount due (never below zero), credit balances and commitment use."""

    period: str
    contract: str | None  # name@version in force, None if none
    list_amount: Decimal
    lines: tuple[AdjustmentLine, ...]
    amount_due: Decimal
    credits: tuple[CreditBalance, ...] = ()
    commitments: tuple[CommitmentUse, ...] = ()

    @property
    def adjustments(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))


@dataclass(frozen=True)
class ContractComparison:
    """Baseline vs scenario under their contracts over some months: the list amount, each
    adjustment (summed over the months) and the amount due."""

    rows: tuple[tuple[str, Decimal, Decimal], ...]  # (label, baseline, scenario)
    baseline_contract: str | None
    scenario_contract: str | None

    @property
    def baseline_due(self) -> Decimal:
        return self.rows[-1][1]

    @property
    def scenario_due(self) -> Decimal:
        return self.rows[-1][2]


@dataclass(frozen=True)
class LedgerState:
    """What carries from one month to the next: credit balances (cents) and commitment
    windows' counted spend (exact)."""

    balances: Mapping[str, int] = field(default_factory=dict)
    expired: frozenset[str] = frozenset()
    counted: Mapping[tuple[str, str], Fraction] = field(default_factory=dict)


def _dec(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def _round_cents(value: Fraction) -> int:
    """A dollar amount as whole cents, half-even (Python's round is half-even)."""
    return round(value * 100)


def _usd(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2).quantize(CENT)


def largest_remainder(total: int, weights: Sequence[Fraction]) -> list[int] | None:
    """`total` (whole cents, any sign) split over `weights` (>= 0) in proportion: each gets
    the floor of its exact share and the cents left go one each to the largest remainders
    (ties: the earlier weight). None when every weight is zero (nothing to split by)."""
    whole = sum(weights, _ZERO)
    if whole <= 0:
        return None
    sign, total = (-1, -total) if total < 0 else (1, total)
    exact = [Fraction(total) * w / whole for w in weights]
    base = [int(e) for e in exact]  # floor: shares are >= 0
    left = total - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return [sign * b for b in base]


def _window(term: CommitmentTerm, contract: Contract, period: Period) -> tuple[Period, Period]:
    """The commitment period containing `period`: (first month, last month)."""
    start = term.start or contract.effective_from
    months = (period.year - start.year) * 12 + period.month - start.month
    first = Period(start.year, start.month)
    for _ in range(months // term.months * term.months):
        first = first.next()
    last = first
    for _ in range(term.months - 1):
        last = last.next()
    return first, last


def _last_day(period: Period) -> date:
    return period.end - timedelta(days=1)


def apply_contract(contract: Contract | None, period: str | Period, items: Sequence[ListItem],
                   state: LedgerState | None = None) -> tuple[Statement, LedgerState]:
    """The statement of one month under `contract` (None: no contract, credits still expire),
    from the month's list `items` and the `state` carried from the month before; returns it
    with the state to carry into the next month. Pure: nothing is changed in place."""
    month = period if isinstance(period, Period) else Period.parse(period)
    state = state or LedgerState()
    amounts = [Fraction(item.amount) for item in items]
    list_cents = _round_cents(sum(amounts, _ZERO))
    remaining = list(amounts)
    lines: list[AdjustmentLine] = []
    running = list_cents
    trueup_shares = [_ZERO] * len(items)  # the true-ups, falling on the month's last day
    trueup_extra = _ZERO  # a true-up of a month without usage
    uses: list[CommitmentUse] = []
    counted = dict(state.counted)

    def add(kind: Any, term_id: str, text: str, shares: list[Fraction], sign: int,
            cap: bool) -> int:
        nonlocal running
        exact = sum(shares, _ZERO)
        cents = _round_cents(exact)
        if cap:
            cents = min(cents, running)
        running += sign * cents
        lines.append(AdjustmentLine(kind, term_id, text, _usd(sign * cents), sign * _dec(exact),
                                    tuple(shares)))
        return cents

    if contract is not None and contract.covers(month):
        # (1) line discounts, in file order, each on what the ones before left
        for d in contract.discounts:
            if not contract.in_window(d, month):
                continue
            hit = [i for i, item in enumerate(items) if d.matches(item)]
            base = sum((remaining[i] for i in hit), _ZERO)
            if not hit or base <= 0:
                continue
            shares = [_ZERO] * len(items)
            if d.percent is not None:
                rate = Fraction(d.percent) / 100
                for i in hit:
                    shares[i] = remaining[i] * rate
                text = f"{d.percent}% off" + _scope_text(d)
            else:
                assert d.fixed_usd is not None
                take = min(Fraction(d.fixed_usd), base)
                for i in hit:
                    shares[i] = remaining[i] * take / base
                text = f"${d.fixed_usd} off a month" + _scope_text(d)
            for i in hit:
                remaining[i] -= shares[i]
            add("discount", d.id, text, shares, -1, cap=True)
        # (2) commitment discounts, (3) true-ups of windows ending this month
        for c in contract.commitments:
            if not contract.in_window(c, month):
                continue
            hit = [i for i, item in enumerate(items) if c.matches(item)]
            if c.discount_percent > 0 and hit:
                rate = Fraction(c.discount_percent) / 100
                shares = [_ZERO] * len(items)
                for i in hit:
                    shares[i] = remaining[i] * rate
                    remaining[i] -= shares[i]
                if sum(shares, _ZERO) > 0:
                    add("commitment_discount", c.id, f"{c.discount_percent}% commitment "
                        f"discount" + _scope_text(c), shares, -1, cap=True)
            first, last = _window(c, contract, month)
            key = (c.id, str(first))
            so_far = counted.get(key, _ZERO) + sum((remaining[i] for i in hit), _ZERO)
            counted[key] = so_far
            end = c.end or contract.effective_to
            closes = month == last or (end is not None and month.next().start >= end)
            true_up = 0
            if closes:
                shortfall = Fraction(c.amount) - so_far
                if shortfall > 0:
                    eligible = [amounts[i] if i in hit else _ZERO for i in range(len(items))]
                    whole = sum(eligible, _ZERO)
                    weights = eligible if whole > 0 else list(amounts)
                    total_w = sum(weights, _ZERO)
                    shares = [shortfall * w / total_w if total_w > 0 else _ZERO
                              for w in weights]
                    if total_w <= 0:  # no usage at all: a share-less line
                        shares = []
                    true_up = add("true_up", c.id, f"commitment true-up: ${c.amount} per "
                                  f"{c.per}, counted ${_usd(_round_cents(so_far))}",
                                  shares, +1, cap=False)
                    if shares:
                        trueup_shares = [a + b for a, b in zip(trueup_shares, shares,
                                                               strict=True)]
                    else:
                        trueup_extra += shortfall
                del counted[key]
            uses.append(CommitmentUse(c.id, f"{first}..{last}", c.amount,
                                      _usd(_round_cents(so_far)), closes, _usd(true_up)))
    # (4) credits
    drawn, balances, credit_rows, expired_ids = _draw_credits(
        contract, month, items, remaining, (trueup_shares, trueup_extra), running, state,
        lines)
    running -= drawn
    in_force = contract is not None and contract.covers(month)
    statement = Statement(
        period=str(month), contract=contract.label if contract is not None and in_force
        else None, list_amount=_usd(list_cents), lines=tuple(lines), amount_due=_usd(running),
        credits=tuple(credit_rows), commitments=tuple(uses))
    return statement, LedgerState(balances=balances, expired=expired_ids, counted=counted)


def _scope_text(term: _Scope) -> str:
    parts = []
    if term.meters:
        parts.append(", ".join(term.meters))
    if term.models:
        parts.append(", ".join(term.models))
    if isinstance(term, DiscountTerm):
        parts += [f"{k}={'|'.join(v)}" for k, v in term.tags.items()]
    return f" ({'; '.join(parts)})" if parts else ""


def _draw_credits(contract: Contract | None, month: Period, items: Sequence[ListItem],
                  remaining: list[Fraction], true_ups: tuple[list[Fraction], Fraction],
                  due: int, state: LedgerState, lines: list[AdjustmentLine]
                  ) -> tuple[int, dict[str, int], list[CreditBalance], frozenset[str]]:
    """Draw the month's grants against `due` (cents), day by day; appends the credit lines
    and returns (cents drawn, balances, balance rows, expired grant ids)."""
    balances = dict(state.balances)
    expired_ids = set(state.expired)
    in_force = contract is not None and contract.covers(month)
    grants = [g for g in (contract.credits if contract is not None and in_force else ())
              if g.id not in expired_ids and g.start < month.end]
    grants.sort(key=lambda g: (g.priority, g.expires, g.id))
    opening = {g.id: balances.get(g.id, 0) for g in grants}
    granted = {}
    for g in grants:
        if g.id not in balances:  # the first month the grant is in force
            balances[g.id] = int(g.amount * 100)
            granted[g.id] = balances[g.id]
    # each item's weight on its day; the true-ups fall on the month's last day
    trueup_shares, trueup_extra = true_ups
    last = _last_day(month)
    day_of = [item.day or last for item in items]
    weight: dict[date, Fraction] = {last: sum(trueup_shares, trueup_extra)}
    for i, d in enumerate(day_of):
        weight[d] = weight.get(d, _ZERO) + max(remaining[i], _ZERO)
    days = sorted(weight)
    split = largest_remainder(due, [weight[d] for d in days]) if due > 0 else None
    if split is None:  # nothing to weigh by (only rounding left): the month's last day
        split = [due if d == last else 0 for d in days]
    drawn_day: dict[str, dict[date, int]] = {g.id: {} for g in grants}
    for d, cents in zip(days, split, strict=True):
        for g in grants:
            if cents <= 0:
                break
            if not g.start <= d <= g.expires or balances[g.id] <= 0:
                continue
            take = min(cents, balances[g.id])
            balances[g.id] -= take
            cents -= take
            drawn_day[g.id][d] = drawn_day[g.id].get(d, 0) + take
    rows, total = [], 0
    for g in grants:
        drawn = sum(drawn_day[g.id].values())
        total += drawn
        if drawn:
            shares = [_ZERO] * len(items)
            for d, cents in drawn_day[g.id].items():
                members = [i for i in range(len(items)) if day_of[i] == d]
                parts = {i: max(remaining[i], _ZERO) for i in members}
                if d == last:
                    for i, s in enumerate(trueup_shares):
                        parts[i] = parts.get(i, _ZERO) + s
                whole = sum(parts.values(), _ZERO)
                for i, part in parts.items():
                    if whole > 0:
                        shares[i] += Fraction(cents, 100) * part / whole
            lines.append(AdjustmentLine(
                "credit", g.id, f"prepaid credit {g.id} (expires {g.expires}, "
                                f"priority {g.priority})", _usd(-drawn), -_usd(drawn),
                tuple(shares)))
        expired = 0
        if g.expires <= last:  # gone at the last millisecond of `expires`
            expired = balances[g.id]
            balances[g.id] = 0
            expired_ids.add(g.id)
        rows.append(CreditBalance(g.id, g.priority, g.start, g.expires,
                                  _usd(opening[g.id]), _usd(granted.get(g.id, 0)), _usd(drawn),
                                  _usd(expired), _usd(balances[g.id])))
    # grants not in force this month (no version lists them) still expire on time
    known = {g.id: g for v in ((contract,) if contract is not None else ()) for g in v.credits}
    for gid in list(balances):
        grant = known.get(gid)
        if gid not in opening and grant is not None and grant.expires <= last:
            balances[gid] = 0
            expired_ids.add(gid)
    return total, balances, rows, frozenset(expired_ids)


def statements(contracts: ContractSet, months: Sequence[tuple[str, Sequence[ListItem]]]
               ) -> list[Statement]:
    """The statements of consecutive `months` (period, items), oldest first, each under the
    version in force, carrying credit balances and commitment windows from one to the next."""
    out = []
    state = LedgerState()
    for period, items in months:
        month = Period.parse(period)
        statement, state = apply_contract(contracts.in_force(month) or _latest_before(
            contracts, month), month, items, state)
        out.append(statement)
    return out


def _latest_before(contracts: ContractSet, month: Period) -> Contract | None:
    """No version in force: the contract terms do not apply (credits of the last version
    still expire on time)."""
    before = [v for v in contracts.versions if v.effective_from <= month.start]
    return before[-1] if before else None
