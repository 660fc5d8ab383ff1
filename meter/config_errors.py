"""pydantic errors as one `field.path: message` line each, for the files people write.

Price books, workload profiles, scenarios and allocation rules all report errors this way; a
loader passes `special` for the error kinds it can explain better (the keys a table allows,
the incident types a profile knows) and `skip` for location steps its reader never wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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
