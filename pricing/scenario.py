"""What-if scenarios: a TOML file that changes prices, billing policy or usage (pydantic).

A scenario is data (``data/scenarios/*.toml``), like a price book. Every section is optional
and an empty file is the identity scenario (the baseline, to the cent). Sections:

- ``[prices]``: runtime $/session-hour, web search $/1,000, any token rate (absolute, or a
  multiplier), models the books lack (``[[prices.add_models]]``), a ``[prices.discount]`` and a
  ``[prices.commitment]`` (a monthly minimum spend, billed when usage falls short of it);
- ``[billing]``: idle time billed at a rate (capped per idle stretch), a minimum per session,
  runtime granularity (per started second, minute or hour instead of per millisecond);
- ``[usage]``: move a share of one model's traffic to another (with a token multiplier),
  raise the cache hit rate, cut running time, grow sessions by a percentage per month;
- ``[build_vs_buy]``: the same workload on the plain Messages API with a self-hosted sandbox
  at $/hour and a utilisation, instead of Managed Agents runtime;
- ``[contract]``: contract terms (pricing.contracts: ``[[contract.credits]]``,
  ``[[contract.commitments]]``, ``[[contract.discounts]]``, ``[contract.internal]``) added to
  the contract in force (``--contract``), or replacing its terms of the same kind with
  ``replace = true``; without a contract they form one of their own. The what-if then also
  compares the amount due under each side's contract.

Money and percentages are exact decimals: strings or integers in TOML, never floats (a TOML
float is inexact binary; the same rule as price books).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from meter.config_files import describe, read_toml
from meter.errors import UsageError
from pricing.contracts import (
    CommitmentTerm,
    Contract,
    ContractError,
    ContractSet,
    CreditGrant,
    DiscountTerm,
    InternalRates,
    parse_contract,
)
from pricing.pricebook import TOKEN_CLASSES, ModelPrice, PriceBook

__all__ = [
    "BillingPolicy",
    "BuildVsBuy",
    "Commitment",
    "ContractChanges",
    "Discount",
    "MoveTraffic",
    "Prices",
    "Scenario",
    "ScenarioError",
    "TokenPriceChange",
    "UsageChanges",
    "describe_error",
    "exact_decimal",
    "load_scenario",
    "parse_scenario",
]

GRANULARITY_MS = {"ms": 1, "second": 1_000, "minute": 60_000, "hour": 3_600_000}
RATE_DECIMALS = 8  # pricing.rating keeps unit prices as DECIMAL(18, 8)
MAX_DECIMALS = 10  # factors are applied exactly at 1e-12; percent/100 must fit


class ScenarioError(UsageError):
    """A scenario that cannot be used; the message names the file, the field and the fix."""


def exact_decimal(value: Any) -> Any:
    """Pydantic before-validator: an exact Decimal from a TOML string or integer; floats are
    refused with the fix."""
    if isinstance(value, bool):
        raise ValueError("expected a number as a string or an integer, got a boolean")
    if isinstance(value, float):
        text = repr(value).removesuffix(".0")
        raise ValueError(f'write decimals as a string, e.g. "{text}" (a TOML float is inexact)')
    if isinstance(value, str | int | Decimal):
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            raise ValueError(f"expected a decimal number, got {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"expected a finite number, got {value!r}")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_DECIMALS:
            raise ValueError(f"at most {MAX_DECIMALS} decimal places, got {value!r}")
        return number
    return value


Money = Annotated[Decimal, BeforeValidator(exact_decimal), Field(ge=0)]
PositiveMoney = Annotated[Decimal, BeforeValidator(exact_decimal), Field(gt=0)]
Percent = Annotated[Decimal, BeforeValidator(exact_decimal), Field(gt=0, le=100)]
Multiplier = Annotated[Decimal, BeforeValidator(exact_decimal), Field(gt=0, le=1000)]
ModelId = Annotated[str, Field(min_length=1, pattern=r"^\S+$")]
TokenClass = Literal["input", "output", "cache_write_5m", "cache_write_1h", "cache_read"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- prices ------------------------------------------------------------------------------


class TokenPriceChange(_Strict):
    """A token rate change for one model (an id or alias; ``"*"`` is every model).

    ``usd_per_mtok`` sets the rate of the listed classes at ``speed``; ``multiplier`` scales
    them at every speed and tier (standard, fast, long context)."""

    model: ModelId
    token_classes: tuple[TokenClass, ...] = TOKEN_CLASSES  # type: ignore[assignment]
    usd_per_mtok: Money | None = None
    multiplier: Multiplier | None = None
    speed: Literal["standard", "fast"] = "standard"

    @model_validator(mode="after")
    def _one_change(self) -> TokenPriceChange:
        if (self.usd_per_mtok is None) == (self.multiplier is None):
            raise ValueError("give exactly one of usd_per_mtok or multiplier")
        if self.model == "*" and self.usd_per_mtok is not None:
            raise ValueError('model "*" takes a multiplier, not one usd_per_mtok for all models')
        return self


class Discount(_Strict):
    """A percentage off the listed meters (a negotiated discount), shown as a negative line."""

    percent: Percent
    meters: tuple[Literal["runtime", "tokens", "web_search", "idle", "minimum", "sandbox"],
                  ...] = ()  # empty: every metered line


class Commitment(_Strict):
    """A committed spend per calendar month: a month whose (discounted) charges fall short of
    it pays the difference (a month still in progress commits pro rata to the millisecond)."""

    usd_per_month: PositiveMoney


class Prices(_Strict):
    runtime_usd_per_hour: Money | None = None
    web_search_usd_per_1000: Money | None = None
    tokens: tuple[TokenPriceChange, ...] = ()
    add_models: tuple[ModelPrice, ...] = ()
    discount: Discount | None = None
    commitment: Commitment | None = None

    @property
    def changes_books(self) -> bool:
        return (self.runtime_usd_per_hour is not None or self.web_search_usd_per_1000 is not None
                or bool(self.tokens) or bool(self.add_models))


# --- billing policy ----------------------------------------------------------------------


class BillingPolicy(_Strict):
    """Other ways of billing the same sessions, to see what per-ms running-only billing saves."""

    idle_usd_per_hour: Money | None = None
    idle_max_minutes: PositiveMoney | None = None  # an idle stretch is billed up to this long
    minimum_per_session_usd: PositiveMoney | None = None
    runtime_granularity: Literal["ms", "second", "minute", "hour"] = "ms"

    @model_validator(mode="after")
    def _cap_needs_rate(self) -> BillingPolicy:
        if self.idle_max_minutes is not None and self.idle_usd_per_hour is None:
            raise ValueError("idle_max_minutes needs idle_usd_per_hour")
        return self

    @property
    def granularity_ms(self) -> int:
        return GRANULARITY_MS[self.runtime_granularity]


# --- usage -------------------------------------------------------------------------------


class MoveTraffic(_Strict):
    """Move ``percent`` of ``from_model``'s tokens to ``to_model``; the moved tokens are
    multiplied by ``token_multiplier`` (e.g. 1.3 for a model that needs more tokens)."""

    from_model: ModelId
    to_model: ModelId
    percent: Percent
    token_multiplier: Multiplier = Decimal(1)

    @model_validator(mode="after")
    def _different(self) -> MoveTraffic:
        if self.from_model == self.to_model:
            raise ValueError("from_model and to_model are the same model")
        return self


class UsageChanges(_Strict):
    move: tuple[MoveTraffic, ...] = ()
    cache_hit_rate_percent: Percent | None = None  # cache reads / all prompt tokens
    cache_hit_models: tuple[ModelId, ...] = ()  # empty: every model
    runtime_cut_percent: Annotated[Decimal, BeforeValidator(exact_decimal),
                                   Field(gt=0, lt=100)] | None = None
    session_growth_percent_per_month: Annotated[Decimal, BeforeValidator(exact_decimal),
                                                Field(gt=-100, le=1000)] | None = None
    growth_from: date | None = None  # re-rated usage grows from this month; forecasts from as-of


# --- build vs buy ------------------------------------------------------------------------


class BuildVsBuy(_Strict):
    """The same tokens on the Messages API, with a self-hosted sandbox instead of session
    runtime: sandbox cost = running hours / utilisation x ``sandbox_usd_per_hour``.

    ``utilisation_percent`` is the share of paid sandbox time that sessions actually run
    (idle warm pools, bin-packing losses); ``fixed_usd_per_month`` is what the self-built
    orchestration costs to run and maintain; ``batch_share_percent`` of tokens may go through
    the Batch API at ``batch_discount_percent`` off, which Managed Agents cannot use."""

    sandbox_usd_per_hour: Money
    utilisation_percent: Percent
    fixed_usd_per_month: Money = Decimal(0)
    batch_share_percent: Annotated[Decimal, BeforeValidator(exact_decimal),
                                   Field(ge=0, le=100)] = Decimal(0)
    batch_discount_percent: Percent = Decimal(50)


# --- contract ----------------------------------------------------------------------------

_WHATIF_FROM = date(2000, 1, 1)


class ContractChanges(_Strict):
    """Contract terms the scenario adds to the contract in force (with ``replace``: in place
    of the contract's terms of each kind the scenario gives); validated again as a whole
    contract, so a contradiction (two commitments on one meter) is refused."""

    replace: bool = False
    credits: tuple[CreditGrant, ...] = ()
    commitments: tuple[CommitmentTerm, ...] = ()
    discounts: tuple[DiscountTerm, ...] = ()
    internal: InternalRates | None = None

    def apply(self, contracts: ContractSet | None, *, name: str) -> ContractSet:
        """The contract under the scenario: each version with these terms added (or in place
        of its own), or, without a contract, a contract of these terms alone."""
        versions = contracts.versions if contracts is not None else (Contract(
            name="what-if", version=name, effective_from=_WHATIF_FROM,
            owner=f"what-if scenario {name}"),)
        out = []
        for version in versions:
            raw = version.model_dump()
            for kind in ("credits", "commitments", "discounts"):
                added = [t.model_dump() for t in getattr(self, kind)]
                if added:
                    raw[kind] = added if self.replace else [*raw[kind], *added]
            if self.internal is not None:
                raw["internal"] = self.internal.model_dump()
            try:
                out.append(parse_contract(raw, source=f"scenario {name}: contract"))
            except ContractError as exc:
                raise ScenarioError(str(exc)) from None
        return ContractSet(tuple(out), contracts.sources if contracts is not None else ())


# --- the scenario ------------------------------------------------------------------------


class Scenario(_Strict):
    name: str = Field(default="scenario", min_length=1)
    description: str = ""
    prices: Prices = Prices()
    billing: BillingPolicy = BillingPolicy()
    usage: UsageChanges = UsageChanges()
    build_vs_buy: BuildVsBuy | None = None
    contract: ContractChanges | None = None

    @model_validator(mode="after")
    def _compatible(self) -> Scenario:
        if self.build_vs_buy is not None and self.billing != BillingPolicy():
            raise ValueError(
                "build_vs_buy replaces Managed Agents billing; [billing] levers (idle rate, "
                "minimum, granularity) cannot be combined with it: use two scenarios")
        return self

    @property
    def is_identity(self) -> bool:
        """No lever set: re-rating under it reproduces the baseline exactly."""
        return (self.prices == Prices() and self.billing == BillingPolicy()
                and self.usage.move == () and self.usage.cache_hit_rate_percent is None
                and self.usage.runtime_cut_percent is None
                and (self.usage.session_growth_percent_per_month is None
                     or self.usage.growth_from is None)
                and self.build_vs_buy is None)

    def apply_to_books(self, books: list[PriceBook]) -> list[PriceBook]:
        """Copies of ``books`` with this scenario's price changes (rebuilt with
        ``model_validate`` so that every book rule is checked again)."""
        p = self.prices
        if not p.changes_books:
            return list(books)
        for i, change in enumerate(p.tokens):
            if change.model != "*" and not any(b.resolve(change.model) for b in books):
                raise ScenarioError(
                    f"prices.tokens[{i}].model: {change.model!r} is in no price book; "
                    f"price it under [[prices.add_models]]")
        out = []
        for book in books:
            raw = book.model_dump()
            if p.runtime_usd_per_hour is not None:
                raw["runtime"]["usd_per_session_hour"] = p.runtime_usd_per_hour
            if p.web_search_usd_per_1000 is not None:
                raw["web_search"]["usd_per_1000"] = p.web_search_usd_per_1000
            models = raw["models"] = list(raw["models"])
            for i, change in enumerate(p.tokens):
                target = None if change.model == "*" else book.resolve(change.model)
                for model in models:
                    if target is None and change.model != "*":
                        break
                    if target is not None and model["id"] != target.id:
                        continue
                    _change_rates(model, change, f"prices.tokens[{i}]")
            known = {m["id"] for m in models} | {a for m in models for a in m["aliases"]}
            for i, added in enumerate(p.add_models):
                if added.id in known:
                    raise ScenarioError(
                        f"prices.add_models[{i}].id: {added.id!r} is already in price book "
                        f"{book.name} {book.version}; change its rates under [[prices.tokens]]")
                models.append(added.model_dump())
            raw["note"] = f"{book.note} [what-if: {self.name}]".strip()
            out.append(PriceBook.model_validate(raw))
        return out


def _change_rates(model: dict[str, Any], change: TokenPriceChange, where: str) -> None:
    if change.usd_per_mtok is not None:
        rates = model if change.speed == "standard" else model.get("fast")
        if rates is None:
            raise ScenarioError(f"{where}.speed: {model['id']!r} has no fast rates to set")
        for token_class in change.token_classes:
            rates[token_class] = change.usd_per_mtok
        return
    for rates in (model, model.get("fast"), model.get("long_context")):
        if rates is not None:
            for token_class in change.token_classes:
                value = (rates[token_class] * change.multiplier).normalize()
                exponent = value.as_tuple().exponent
                if isinstance(exponent, int) and exponent < -RATE_DECIMALS:
                    raise ScenarioError(
                        f"{where}.multiplier: {model['id']} {token_class} becomes {value} USD/M, "
                        f"more than {RATE_DECIMALS} decimals (the engine's rate precision); "
                        f"set usd_per_mtok instead")
                rates[token_class] = value


# --- loading -----------------------------------------------------------------------------


def describe_error(error: Any) -> str:
    """One pydantic error as `field.path: message`."""
    return describe(error)


def parse_scenario(raw: dict[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Validate a scenario already read from TOML; errors name ``source`` and the field."""
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {describe_error(e)}" for e in exc.errors()]
        raise ScenarioError("\n".join(lines)) from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    raw = read_toml(path, ScenarioError, "scenario", "see data/scenarios/ for examples")
    raw.setdefault("name", path.stem)
    return parse_scenario(raw, source=str(path))
