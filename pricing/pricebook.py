"""Price books: dated, versioned list prices read from TOML files in ``data/pricebooks``.

A price book is data, not code: each file says what a token, a session-hour and a web search
cost during one period, and where each number comes from. Books with the same ``name`` form a
history (``effective_from`` inclusive, ``effective_to`` exclusive) and must not overlap, so that
exactly one version applies at any instant.

Money is ``Decimal`` read from TOML strings. TOML floats are refused: ``0.1`` in a float is not
0.1, and a price book that silently rounds is worse than one that does not load.
"""

from __future__ import annotations

import os
import re
import types
import typing
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from meter.config_files import describe, read_toml, utc_moment
from meter.errors import UsageError
from meter.settings import setting, shipped
from meter.vocabulary import TOKEN_CLASSES

__all__ = [
    "TOKEN_CLASSES",
    "LongContextRates",
    "ModelPrice",
    "Modifiers",
    "PriceBook",
    "PriceBookError",
    "RuntimePrice",
    "TokenRates",
    "WebSearchPrice",
    "canonical_model_id",
    "default_pricebook_dir",
    "load_pricebook",
    "load_pricebooks",
]


PRICEBOOKS_ENV = "AGENTTALLY_PRICEBOOKS"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_SNAPSHOT_SUFFIX = re.compile(r"-\d{8}$")


class PriceBookError(UsageError):
    """A price book that cannot be loaded; the message names the file, the field and the fix."""


# --- field types -------------------------------------------------------------------------


def _money_input(value: Any) -> Any:
    # bool is an int subclass: `input = true` is a typo, not a price of 1.
    if isinstance(value, bool):
        raise ValueError('expected money as a string, e.g. "25", got a boolean')
    if isinstance(value, float):
        text = repr(value)
        if text.endswith(".0"):
            text = text[:-2]
        raise ValueError(f'write money as a string, e.g. "{text}" (a TOML float is inexact binary)')
    return value


# Rates and multipliers are stored as DECIMAL(18,8) in the rating engine: 8 decimal places
# (1e-14 USD per token on a per-million rate) and 10 integer digits, checked here by name.
Money = Annotated[Decimal, BeforeValidator(_money_input),
                  Field(ge=0, allow_inf_nan=False, max_digits=18, decimal_places=8)]
Multiplier = Annotated[Decimal, BeforeValidator(_money_input),
                       Field(gt=0, allow_inf_nan=False, max_digits=18, decimal_places=8)]
UtcDatetime = Annotated[datetime, BeforeValidator(utc_moment)]
ModelId = Annotated[str, Field(min_length=1, pattern=r"^\S+$")]


def _to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_MS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- models ------------------------------------------------------------------------------


class TokenRates(_Strict):
    """USD per million tokens for each of the five token classes."""

    input: Money
    output: Money
    cache_write_5m: Money
    cache_write_1h: Money
    cache_read: Money

    def rate(self, token_class: str) -> Decimal:
        if token_class not in TOKEN_CLASSES:
            raise KeyError(f"unknown token class {token_class!r}; expected one of {TOKEN_CLASSES}")
        return getattr(self, token_class)


class LongContextRates(TokenRates):
    """Rates for every token of a request whose prompt (input + cache read + cache write)
    exceeds ``threshold_tokens``."""

    threshold_tokens: int = Field(gt=0, strict=True)


class ModelPrice(TokenRates):
    """One model's list prices; its own fields are the standard-speed, standard-tier rates."""

    id: ModelId
    aliases: tuple[ModelId, ...] = ()
    data_residency_multiplier: Multiplier | None = None
    source: str | None = None
    note: str = ""
    fast: TokenRates | None = None
    long_context: LongContextRates | None = None

    @property
    def standard(self) -> TokenRates:
        return TokenRates(**{c: getattr(self, c) for c in TOKEN_CLASSES})

    @property
    def geo_multiplier(self) -> Decimal:
        """The US data-residency multiplier, 1 where the model does not support it."""
        return self.data_residency_multiplier or Decimal(1)


class RuntimePrice(_Strict):
    usd_per_session_hour: Money
    source: str | None = None
    note: str = ""


class WebSearchPrice(_Strict):
    usd_per_1000: Money
    source: str | None = None
    note: str = ""


class Modifiers(_Strict):
    """Which Messages-API price modifiers Managed Agents honoured during the book's period."""

    fast_mode_applies: bool = Field(strict=True)
    data_residency_applies: bool = Field(strict=True)
    default_cache_write_ttl: Literal["5m", "1h"] = "5m"


class PriceBook(_Strict):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    currency: Literal["USD"] = "USD"
    effective_from: UtcDatetime
    effective_to: UtcDatetime | None = None
    source: str | None = None
    note: str = ""
    runtime: RuntimePrice
    web_search: WebSearchPrice
    modifiers: Modifiers
    models: tuple[ModelPrice, ...] = ()

    _index: dict[str, ModelPrice] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_period_and_ids(self) -> PriceBook:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError(
                f"effective_to {self.effective_to.isoformat()} must be after "
                f"effective_from {self.effective_from.isoformat()}"
            )
        where: dict[str, str] = {}
        for i, model in enumerate(self.models):
            names = [(model.id, f"models[{i}].id")]
            names += [(a, f"models[{i}].aliases[{j}]") for j, a in enumerate(model.aliases)]
            for model_id, place in names:
                if model_id in where:
                    raise ValueError(
                        f"model id {model_id!r} appears twice ({where[model_id]} and {place}); "
                        f"each id or alias may name only one model"
                    )
                where[model_id] = place
                self._index[model_id] = model
        return self

    @property
    def effective_from_ms(self) -> int:
        return _to_ms(self.effective_from)

    @property
    def effective_to_ms(self) -> int | None:
        return None if self.effective_to is None else _to_ms(self.effective_to)

    def covers(self, at_ms: int) -> bool:
        """Whether this book is in effect at ``at_ms`` (from inclusive, to exclusive)."""
        end = self.effective_to_ms
        return self.effective_from_ms <= at_ms and (end is None or at_ms < end)

    def resolve(self, model_id: str) -> ModelPrice | None:
        """The price of ``model_id``: by exact id or alias, then without a dated snapshot
        suffix. ``None`` means the book has no price for it: the usage is unrated."""
        found = self._index.get(model_id)
        if found is None:
            found = self._index.get(canonical_model_id(model_id))
        return found

    def token_rate_rows(self) -> list[dict[str, Any]]:
        """Every rate as one flat row, ready for a DataFrame or a SQL table."""
        rows: list[dict[str, Any]] = []
        for model in self.models:
            tiers: list[tuple[str, str, TokenRates, int | None]] = [
                ("standard", "standard", model, None)
            ]
            if model.fast is not None:
                tiers.append(("fast", "standard", model.fast, None))
            if model.long_context is not None:
                lc = model.long_context
                tiers.append(("standard", "long_context", lc, lc.threshold_tokens))
            for speed, tier, rates, threshold in tiers:
                for token_class in TOKEN_CLASSES:
                    rows.append(
                        {
                            "model_id": model.id,
                            "speed": speed,
                            "tier": tier,
                            "token_class": token_class,
                            "usd_per_mtok": rates.rate(token_class),
                            "threshold_tokens": threshold,
                            "geo_multiplier": model.geo_multiplier,
                        }
                    )
        return rows

    def alias_rows(self) -> list[dict[str, str]]:
        """Each model id mapped to itself, and each explicit alias mapped to its model."""
        return [
            {"alias": alias, "model_id": model.id}
            for model in self.models
            for alias in (model.id, *model.aliases)
        ]


# --- loading -----------------------------------------------------------------------------


def canonical_model_id(model_id: str) -> str:
    """``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4-5``: drop a dated snapshot suffix."""
    return _SNAPSHOT_SUFFIX.sub("", model_id)


def default_pricebook_dir() -> Path:
    override = setting(PRICEBOOKS_ENV)
    if override:
        return Path(override).expanduser()
    return shipped("data/pricebooks")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _unwrap(annotation: Any) -> Any:
    """The model class behind ``X | None`` or ``tuple[X, ...]``, else the annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType, tuple, list):
            args = [a for a in typing.get_args(annotation) if a not in (type(None), Ellipsis)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: Any = PriceBook
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _unwrap(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _special(error: Any) -> str | None:
    """Messages that know the price book: which keys a table allows, what a date looks like."""
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(tuple(error["loc"]))
        return "unknown key" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    if error["type"] == "string_type":
        shown = error["input"]
        shown = shown.isoformat() if isinstance(shown, date) else repr(shown)
        return f"expected a quoted string, got {shown}"
    return None


def _describe(error: Any) -> str:
    return describe(error, special=_special)


def load_pricebook(path: str | os.PathLike[str]) -> PriceBook:
    path = Path(path)
    shown = _display(path)
    raw = read_toml(shown, PriceBookError, "price book")
    try:
        return PriceBook.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{shown}: {_describe(error)}" for error in exc.errors()]
        raise PriceBookError("\n".join(lines)) from None


def _moment(moment: datetime) -> str:
    if moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.isoformat().replace("+00:00", "Z")


def _period(book: PriceBook) -> str:
    end = _moment(book.effective_to) if book.effective_to else "open-ended"
    return f"{book.name} {book.version} [{_moment(book.effective_from)} .. {end})"


def load_pricebooks(directory: str | os.PathLike[str] | None = None) -> list[PriceBook]:
    """Every ``*.toml`` book in ``directory`` (default: :func:`default_pricebook_dir`), sorted
    by ``effective_from``. Books sharing a name must not overlap in time."""
    directory = Path(directory) if directory is not None else default_pricebook_dir()
    if not directory.is_dir():
        raise PriceBookError(
            f"{_display(directory)}: no such price-book directory "
            f"(set {PRICEBOOKS_ENV} to point elsewhere)"
        )
    loaded = [(load_pricebook(p), p) for p in sorted(directory.glob("*.toml"))]
    loaded.sort(key=lambda item: (item[0].effective_from, item[0].name, item[0].version))

    last_by_name: dict[str, tuple[PriceBook, Path]] = {}
    seen_versions: dict[tuple[str, str], Path] = {}
    for book, path in loaded:
        key = (book.name, book.version)
        if key in seen_versions:
            raise PriceBookError(
                f"{_display(seen_versions[key])} and {_display(path)}: both define price book "
                f"{book.name!r} version {book.version!r}; give each version its own number"
            )
        seen_versions[key] = path
        previous = last_by_name.get(book.name)
        if previous is not None:
            before, before_path = previous
            if before.effective_to is None or before.effective_to > book.effective_from:
                raise PriceBookError(
                    f"{_display(before_path)} and {_display(path)}: price books overlap in time: "
                    f"{_period(before)} and {_period(book)}; set effective_to of "
                    f"{before.version} to {_moment(book.effective_from)} or earlier"
                )
        last_by_name[book.name] = (book, path)
    return [book for book, _ in loaded]
