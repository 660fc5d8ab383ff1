"""What every TOML file people write shares: reading it, UTC moments, and error lines.

Price books, workload profiles, scenarios and allocation rules are read with `read_toml`,
take dates through `utc_moment`, and report pydantic errors as one `field.path: message` line
each (`describe`); a loader passes `special` for the error kinds it can explain better (the
keys a table allows, the incident types a profile knows) and `skip` for location steps its
reader never wrote.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any


def read_toml(path: str | Path, error: type[Exception], what: str,
              hint: str | None = None) -> dict[str, Any]:
    """The TOML table of `path`; `error` names the file on any failure (`what`: "profile")."""
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}" + (f" ({hint})" if hint else "")) from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc


def utc_moment(value: Any) -> Any:
    """A date (midnight UTC) or an offset-aware datetime, as a UTC datetime.

    Naive datetimes are refused: a billing boundary in an unknown timezone is a bug waiting.
    """
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"expected a date (2026-08-07) or a UTC datetime (2026-08-07T00:00:00Z), "
                f"got {value!r}"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"datetime {value.isoformat()} has no UTC offset; "
                f"write {value.isoformat()}Z or a plain date"
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value

# Steps pydantic adds to a location (validators, constrained types) that no file contains.
_NOISE = ("function-", "constrained-")


def format_loc(loc: Iterable[int | str],
               skip: Callable[[str, str], bool] | None = None) -> str:
    """('models', 2, 'output') -> 'models[2].output'; `skip(part, text_so_far)` drops steps."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(_NOISE) or (skip is not None and skip(str(part), text)):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def describe(
    error: dict[str, Any],
    *,
    special: Callable[[dict[str, Any]], str | None] | None = None,
    skip: Callable[[str, str], bool] | None = None,
    unknown_key: str = "unknown key (a typo?)",
) -> str:
    """One pydantic error dict as `field.path: message` (just the message at the top level)."""
    message = special(error) if special is not None else None
    if message is None:
        kind = error["type"]
        if kind == "value_error":
            message = str(error["ctx"]["error"])
        elif kind == "extra_forbidden":
            message = unknown_key
        elif kind == "missing":
            message = "missing; this field is required"
        else:
            message = f"{error['msg']}, got {error['input']!r}"
    where = format_loc(error["loc"], skip)
    return f"{where}: {message}" if where else message
