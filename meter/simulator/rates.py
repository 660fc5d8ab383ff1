"""The rates the simulator needs to compute ``list_cost`` and enforce budgets, passed in.

``meter`` must not import ``pricing`` (imports flow one way), so the caller (the CLI, a test)
turns a price book into a :class:`RateCard` and hands it over. Inside, money is integer: every
rate becomes a whole number of *units* of ``1e-12 / den`` USD, where ``den`` is the smallest
integer that makes the runtime price per millisecond whole ($0.08 per hour is 200000/9
pico-dollars per ms, so ``den`` is 9). Sums of int64 units are exact; cents are derived once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np

from meter.errors import UsageError
from meter.vocabulary import TOKEN_CLASSES

__all__ = [
    "CompiledRates",
    "ModelRates",
    "RateCard",
    "RateSchedule",
    "TokenPrices",
    "UnratedModelError",
]

PICO_PER_USD = 10**12
MS_PER_HOUR = 3_600_000
STANDARD, FAST, LONG = 0, 1, 2  # rate variants
_SNAPSHOT_SUFFIX = re.compile(r"-\d{8}$")
_MAX_DEN = 10**6


class UnratedModelError(UsageError):
    """A profile uses a model for which the rate card in force has no price."""


@dataclass(frozen=True)
class TokenPrices:
    """USD per million tokens for the five disjoint token classes."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal

    def as_tuple(self) -> tuple[Decimal, ...]:
        return tuple(getattr(self, c) for c in TOKEN_CLASSES)


@dataclass(frozen=True)
class ModelRates:
    standard: TokenPrices
    fast: TokenPrices | None = None
    long_context: TokenPrices | None = None
    long_context_threshold: int | None = None  # prompt tokens (input + cache read + write)
    data_residency_multiplier: Decimal | None = None


@dataclass(frozen=True)
class RateCard:
    """List prices in force during one period; ``models`` is keyed by model id and alias."""

    usd_per_session_hour: Decimal
    usd_per_1000_searches: Decimal
    models: Mapping[str, ModelRates]
    fast_mode_applies: bool = False
    data_residency_applies: bool = False
    label: str = ""

    def resolve(self, model_id: str) -> ModelRates | None:
        found = self.models.get(model_id)
        if found is None:
            found = self.models.get(_SNAPSHOT_SUFFIX.sub("", model_id))
        return found


@dataclass(frozen=True)
class RateSchedule:
    """Rate cards by the instant they take effect (epoch ms, inclusive), oldest first."""

    cards: tuple[tuple[int, RateCard], ...]

    def __post_init__(self) -> None:
        if not self.cards:
            raise ValueError("a rate schedule needs at least one rate card")
        starts = [s for s, _ in self.cards]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("rate cards must be ordered by distinct effective_from instants")

    @classmethod
    def single(cls, card: RateCard) -> RateSchedule:
        return cls(((-(2**62), card),))

    @classmethod
    def of(cls, cards: RateCard | RateSchedule | Iterable[tuple[int, RateCard]]) -> RateSchedule:
        if isinstance(cards, RateSchedule):
            return cards
        if isinstance(cards, RateCard):
            return cls.single(cards)
        return cls(tuple(cards))

    def card_at(self, at_ms: int) -> RateCard:
        chosen = self.cards[0][1]
        for start, card in self.cards:
            if start <= at_ms:
                chosen = card
        return chosen


def _fraction(value: Decimal | int) -> Fraction:
    return Fraction(value)


@dataclass
class CompiledRates:
    """A schedule as integer arrays indexed [card, model, variant, geo, token class]."""

    den: int
    change_ms: np.ndarray  # int64[Q]: the instant each card takes effect
    token_units: np.ndarray  # int64[Q, M, 3, 2, 5]: units per token
    priced: np.ndarray  # bool[Q, M]
    fast_ok: np.ndarray  # bool[Q, M]: fast rates exist and the modifier applies
    geo_ok: np.ndarray  # bool[Q, M]: the data-residency multiplier applies
    threshold: np.ndarray  # int64[Q, M]: long-context threshold (huge when none)
    runtime_units_per_ms: np.ndarray  # int64[Q]
    search_units: np.ndarray  # int64[Q]
    labels: list[str] = field(default_factory=list)

    @property
    def units_per_cent(self) -> int:
        return PICO_PER_USD // 100 * self.den

    @classmethod
    def compile(cls, schedule: RateSchedule, model_ids: Sequence[str]) -> CompiledRates:
        cards = [card for _, card in schedule.cards]
        exact: list[Fraction] = []
        for card in cards:
            exact.append(_fraction(card.usd_per_session_hour) * PICO_PER_USD / MS_PER_HOUR)
            exact.append(_fraction(card.usd_per_1000_searches) * PICO_PER_USD / 1000)
            for model_id in model_ids:
                rates = card.resolve(model_id)
                if rates is None:
                    continue
                mult = _fraction(rates.data_residency_multiplier or 1)
                for prices in (rates.standard, rates.fast, rates.long_context):
                    if prices is None:
                        continue
                    for value in prices.as_tuple():
                        per_token = _fraction(value) * PICO_PER_USD / 10**6
                        exact.extend((per_token, per_token * mult))
        den = 1
        for rate in exact:
            den = math.lcm(den, rate.denominator)
            if den > _MAX_DEN:
                raise ValueError(
                    f"rates need a unit finer than 1e-12/{_MAX_DEN} USD to stay exact; "
                    f"check the rate card for prices with many decimals"
                )

        def units(value: Fraction) -> int:
            scaled = value * den
            assert scaled.denominator == 1
            return int(scaled)

        q, m = len(cards), len(model_ids)
        token_units = np.zeros((q, m, 3, 2, 5), dtype=np.int64)
        priced = np.zeros((q, m), dtype=bool)
        fast_ok = np.zeros((q, m), dtype=bool)
        geo_ok = np.zeros((q, m), dtype=bool)
        threshold = np.full((q, m), 2**62, dtype=np.int64)
        for qi, card in enumerate(cards):
            for mi, model_id in enumerate(model_ids):
                rates = card.resolve(model_id)
                if rates is None:
                    continue
                priced[qi, mi] = True
                fast_ok[qi, mi] = card.fast_mode_applies and rates.fast is not None
                geo_ok[qi, mi] = (
                    card.data_residency_applies and rates.data_residency_multiplier is not None
                )
                mult = _fraction(rates.data_residency_multiplier or 1)
                variants = (rates.standard, rates.fast or rates.standard,
                            rates.long_context or rates.standard)
                for vi, prices in enumerate(variants):
                    for ci, value in enumerate(prices.as_tuple()):
                        per_token = _fraction(value) * PICO_PER_USD / 10**6
                        token_units[qi, mi, vi, 0, ci] = units(per_token)
                        token_units[qi, mi, vi, 1, ci] = units(per_token * mult)
                if rates.long_context is not None and rates.long_context_threshold is not None:
                    threshold[qi, mi] = rates.long_context_threshold
        return cls(
            den=den,
            change_ms=np.array([start for start, _ in schedule.cards], dtype=np.int64),
            token_units=token_units,
            priced=priced,
            fast_ok=fast_ok,
            geo_ok=geo_ok,
            threshold=threshold,
            runtime_units_per_ms=np.array(
                [units(_fraction(c.usd_per_session_hour) * PICO_PER_USD / MS_PER_HOUR)
                 for c in cards], dtype=np.int64),
            search_units=np.array(
                [units(_fraction(c.usd_per_1000_searches) * PICO_PER_USD / 1000) for c in cards],
                dtype=np.int64),
            labels=[c.label or f"rate card {i}" for i, c in enumerate(cards)],
        )

    def card_index(self, at_ms: np.ndarray) -> np.ndarray:
        """The card in force at each instant (the first card also covers earlier instants)."""
        idx = np.searchsorted(self.change_ms, at_ms, side="right") - 1
        return np.maximum(idx, 0).astype(np.int64)

    def require_priced(self, model_ids: Sequence[str], used: np.ndarray, card: np.ndarray) -> None:
        """Raise naming the model and the card when a used (model, card) pair has no price."""
        if used.size == 0:
            return
        bad = ~self.priced[card, used]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            q, mi = int(card[i]), int(used[i])
            when = datetime.fromtimestamp(
                max(int(self.change_ms[q]), 0) / 1000, tz=UTC).date().isoformat()
            raise UnratedModelError(
                f"model {model_ids[mi]!r} has no price in {self.labels[q]} (in force from "
                f"{when}); pick a model the price book lists, or simulate a later period"
            )

    def require_window_priced(self, model_ids: Sequence[str], start_ms: int, end_ms: int) -> None:
        """Every model priced by every card in force at some point of [start_ms, end_ms)."""
        ends = list(self.change_ms[1:]) + [2**62]
        for q, (begin, end) in enumerate(zip(self.change_ms, ends, strict=True)):
            if begin < end_ms and end > start_ms and q < len(self.priced):
                missing = np.flatnonzero(~self.priced[q])
                if missing.size:
                    self.require_priced(model_ids, missing[:1], np.array([q]))

    def runtime_units(self, start_ms: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
        """Exact runtime cost of running intervals [start, end), split where cards change."""
        if len(self.change_ms) == 1:
            return (end_ms - start_ms) * self.runtime_units_per_ms[0]
        total = np.zeros(len(start_ms), dtype=np.int64)
        bounds = list(self.change_ms[1:]) + [2**62]
        lo = -(2**62)
        for q, hi in enumerate(bounds):
            overlap = np.minimum(end_ms, hi) - np.maximum(start_ms, lo)
            total += np.maximum(overlap, 0) * self.runtime_units_per_ms[q]
            lo = hi
        return total

    def request_units(self, tokens: Mapping[str, np.ndarray], model: np.ndarray,
                      fast: np.ndarray, us: np.ndarray, card: np.ndarray) -> np.ndarray:
        """Exact token cost of each request at its card.

        Fast rates when the agent asks for fast mode and the card has (and applies) them;
        otherwise long-context rates for every token of a request whose prompt (input +
        cache read + cache writes) exceeds the model's threshold; otherwise standard. The
        data-residency multiplier then applies to all classes where the card says so.
        """
        prompt = tokens["input"] + tokens["cache_read"] + tokens["cw5"] + tokens["cw1h"]
        variant = np.where(fast & self.fast_ok[card, model], FAST,
                           np.where(prompt > self.threshold[card, model], LONG, STANDARD))
        geo = (us & self.geo_ok[card, model]).astype(np.int64)
        rate = self.token_units[card, model, variant, geo]  # [n, 5], TOKEN_CLASSES order
        return (tokens["input"] * rate[:, 0] + tokens["output"] * rate[:, 1]
                + tokens["cw5"] * rate[:, 2] + tokens["cw1h"] * rate[:, 3]
                + tokens["cache_read"] * rate[:, 4])

    def cents(self, units: np.ndarray) -> np.ndarray:
        """Units rounded to the nearest whole cent, ties to even (exact integer arithmetic)."""
        per = self.units_per_cent
        q, r = np.divmod(units, per)
        up = (2 * r > per) | ((2 * r == per) & (q % 2 == 1))
        return q + up
