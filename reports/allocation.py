"""Who pays for what: allocation rules (a TOML file) and the cents apportioning they rely on.

Rules say where a charge's group comes from and how shared costs move:
- tag precedence: each grouping key (e.g. `team`) is read from the session's metadata, else
  its agent's, else its environment's, else a default (`unallocated`), in a configurable order;
- renames: tag values merged or renamed after that lookup (`Platform`, `platform-eng` ->
  `platform`), one pass, so a value is never renamed twice;
- shared costs: charges matching a rule (an environment, an agent, resolved tag values) form a
  pool that is re-assigned to target groups, proportionally to a driver (running time, tokens
  or cost, measured on the targets' own charges) or by fixed percentages.

Money is apportioned in whole cents with the largest-remainder (Hamilton) method, one invoice
line at a time: each line's rounded amount is split over its parts so that the parts add up to
the line exactly, and therefore every report built on it adds up to the invoice to the cent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from meter.config_files import describe, read_toml
from meter.errors import UsageError

__all__ = [
    "TAG_KEY_PATTERN",
    "AllocationError",
    "AllocationRules",
    "SharedCost",
    "TagRules",
    "load_rules",
]

Source = Literal["session", "agent", "environment"]  # where a tag value may be read from
SOURCES: tuple[Source, ...] = ("session", "agent", "environment")
DRIVERS = ("running_time", "tokens", "cost", "fixed")
_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$"
TAG_KEY_PATTERN = _KEY  # what a tag key may be: never SQL, never a JSON path of its own


class AllocationError(UsageError):
    """Allocation rules that cannot be used; the message names the file, the field and the fix."""


def _no_float(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a percentage as a string, e.g. \"50\", got a boolean")
    if isinstance(value, float):
        raise ValueError(f'write percentages as strings, e.g. "{value!r}" (a TOML float is '
                         "inexact binary)")
    return value


Percent = Annotated[Decimal, BeforeValidator(_no_float), Field(gt=0, le=100, allow_inf_nan=False)]
TagKey = Annotated[str, Field(pattern=_KEY)]
OneOrMany = Annotated[tuple[str, ...], BeforeValidator(lambda v: (v,) if isinstance(v, str) else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TagRules(_Strict):
    """Where tag values come from and what they become."""

    precedence: tuple[Source, ...] = SOURCES
    default: Annotated[str, Field(min_length=1)] = "unallocated"

    @model_validator(mode="after")
    def _distinct(self) -> TagRules:
        if not self.precedence:
            raise ValueError("precedence: name at least one of session, agent, environment")
        if len(set(self.precedence)) != len(self.precedence):
            raise ValueError("precedence: a source is listed twice")
        return self


class SharedCost(_Strict):
    """A pool of charges re-assigned to other groups of one tag key."""

    name: Annotated[str, Field(min_length=1)]
    key: TagKey
    environment: OneOrMany = ()
    agent: OneOrMany = ()
    tags: dict[TagKey, OneOrMany] = Field(default_factory=dict)
    driver: Literal["running_time", "tokens", "cost", "fixed"]
    targets: OneOrMany = ()
    percentages: dict[str, Percent] = Field(default_factory=dict)
    scope: Literal["match", "period"] = "match"

    @model_validator(mode="after")
    def _consistent(self) -> SharedCost:
        if not (self.environment or self.agent or self.tags):
            raise ValueError("says nothing about which charges are shared; set environment, "
                             "agent or tags")
        if self.driver == "fixed":
            if not self.percentages:
                raise ValueError('driver "fixed" needs percentages, e.g. '
                                 'percentages = { search = "60", ads = "40" }')
            total = sum(self.percentages.values(), Decimal(0))
            if total != 100:
                raise ValueError(f"percentages add up to {total}, not 100")
            if self.targets and set(self.targets) != set(self.percentages):
                raise ValueError("targets and the keys of percentages differ; give only "
                                 "percentages")
            for value in self.percentages.values():
                if value.as_tuple().exponent < -4:  # type: ignore[operator]
                    raise ValueError(f"percentage {value} has more than 4 decimals")
        elif self.percentages:
            raise ValueError(f'percentages only apply to driver "fixed", not "{self.driver}"')
        return self

    @property
    def target_values(self) -> tuple[str, ...]:
        return tuple(self.percentages) if self.driver == "fixed" else self.targets


class AllocationRules(_Strict):
    """The whole file: `[tags]`, `[renames.<key>]` and `[[shared]]` tables, all optional."""

    tags: TagRules = TagRules()
    renames: dict[TagKey, dict[str, Annotated[str, Field(min_length=1)]]] = Field(
        default_factory=dict)
    shared: tuple[SharedCost, ...] = ()

    @model_validator(mode="after")
    def _checks(self) -> AllocationRules:
        for key, mapping in self.renames.items():
            chained = sorted(set(mapping) & set(mapping.values()) - {
                k for k, v in mapping.items() if k == v})
            if chained:
                value = chained[0]
                raise ValueError(
                    f"renames.{key}: {value!r} is both renamed and a rename target; "
                    f"map every value straight to its final name")
        names = [s.name for s in self.shared]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"shared: two rules are named {name!r}; names must be unique")
        return self

    def keys_needed(self, by: Sequence[str]) -> list[str]:
        """The grouping keys plus every key a shared rule reads or writes, in a stable order."""
        keys = list(dict.fromkeys(by))
        for rule in self.shared:
            for key in (rule.key, *rule.tags):
                if key not in keys:
                    keys.append(key)
        return keys


def _describe(error: Any) -> str:
    return describe(error, unknown_key="unknown key")


def load_rules(path: str | os.PathLike[str] | None = None) -> AllocationRules:
    """Rules from a TOML file, or the defaults (precedence session > agent > environment,
    default `unallocated`, no renames, no shared costs) when `path` is None."""
    if path is None:
        return AllocationRules()
    shown = str(path)
    raw = read_toml(shown, AllocationError, "allocation rules")
    try:
        return AllocationRules.model_validate(raw)
    except ValidationError as exc:
        raise AllocationError("\n".join(f"{shown}: {_describe(e)}" for e in exc.errors())) \
            from None


def json_path(key: str) -> str:
    """The JSON path of a top-level metadata key, quoted so that dots stay part of the name."""
    if not re.match(_KEY, key):
        raise AllocationError(f"{key!r} is not a usable tag key (letters, digits, _ . : / -)")
    return '$."' + key + '"'



