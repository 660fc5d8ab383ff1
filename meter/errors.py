"""The one root of AgentTally's errors, and the kinds a caller can catch.

Every error AgentTally raises on purpose is an `AgentTallyError` with a one-line message that
names the value, the field (or file and line) and what was expected:
- `UsageError`: what the user gave is malformed (a flag, a price book, a profile, a scenario,
  a rules file); fixing the input fixes it. The CLI exits 2.
- `DataError`: the input is well formed but the data or the world is not as needed (a store
  that cannot be opened, an API that refuses, a report that does not match). The CLI exits 1.
Anything else is a bug, and the CLI shows its traceback.
"""

from __future__ import annotations

__all__ = ["AgentTallyError", "DataError", "UsageError"]


class AgentTallyError(Exception):
    """Something the user can act on; `hint`, when given, says how."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(AgentTallyError, ValueError):
    """Malformed input: a flag, a field of a file the user wrote."""

    exit_code = 2


class DataError(AgentTallyError, RuntimeError):
    """Well-formed input, but the data, the store or a remote service is not as needed."""

    exit_code = 1
