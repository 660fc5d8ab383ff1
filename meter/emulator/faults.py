"""Fault injection for the emulator: deterministic counters, so a test run is repeatable.

Spec strings (`agenttally emulate --fault drop=50 --fault 429=7,retry_after=0.5`):

    drop=N         close every stream after N events (alternately a clean end and an abort
                   mid-body, which the client sees as a broken connection)
    stall=N        every Nth stream goes silent after its first event: no events, no pings
    429=N          every Nth API request is answered 429 with `retry-after`
    retry_after=S  the `retry-after` seconds sent with a 429 (default 1)
    500=N          every Nth API request is answered 500
    slow=S         every API request waits S seconds before it is answered
    dup=N          every Nth event served (stream or listing) is sent twice
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

_NAMES = {
    "drop": "drop_every", "stall": "stall_every", "429": "rate_limit_every",
    "rate_limit": "rate_limit_every", "retry_after": "retry_after_s", "500": "error_every",
    "error": "error_every", "slow": "slow_s", "dup": "duplicate_every",
    "duplicate": "duplicate_every",
}
_FLOATS = {"retry_after_s", "slow_s"}


@dataclass
class Faults:
    drop_every: int = 0
    stall_every: int = 0
    rate_limit_every: int = 0
    retry_after_s: float = 1.0
    error_every: int = 0
    slow_s: float = 0.0
    duplicate_every: int = 0
    injected: dict[str, int] = field(default_factory=lambda: {
        "429": 0, "500": 0, "drop": 0, "abort": 0, "stall": 0, "dup": 0})
    _requests: int = 0
    _streams: int = 0
    _events: int = 0

    @classmethod
    def parse(cls, specs: str | Iterable[str] | None) -> Faults:
        """Faults from `name=value` items, comma-separated and/or repeated."""
        if specs is None:
            return cls()
        items = [specs] if isinstance(specs, str) else list(specs)
        faults = cls()
        for spec in items:
            for part in filter(None, (p.strip() for p in spec.split(","))):
                name, sep, value = part.partition("=")
                attr = _NAMES.get(name.strip().lower())
                if not sep or attr is None:
                    raise ValueError(
                        f"--fault {part!r}: expected name=value with name one of "
                        "drop, stall, 429, retry_after, 500, slow, dup")
                try:
                    number = float(value) if attr in _FLOATS else int(value)
                except ValueError:
                    raise ValueError(f"--fault {part!r}: {value!r} is not a number") from None
                if number < 0:
                    raise ValueError(f"--fault {part!r}: must be >= 0")
                setattr(faults, attr, number)
        return faults

    @property
    def active(self) -> bool:
        return any((self.drop_every, self.stall_every, self.rate_limit_every, self.error_every,
                    self.slow_s, self.duplicate_every))

    def on_request(self) -> int | None:
        """The status to answer this API request with instead (429/500), or None."""
        self._requests += 1
        n = self._requests
        if self.rate_limit_every and n % self.rate_limit_every == 0:
            self.injected["429"] += 1
            return 429
        if self.error_every and n % self.error_every == 0:
            self.injected["500"] += 1
            return 500
        return None

    def on_stream(self) -> bool:
        """Whether this new stream is to stall."""
        self._streams += 1
        if self.stall_every and self._streams % self.stall_every == 0:
            self.injected["stall"] += 1
            return True
        return False

    def duplicate(self) -> bool:
        """Whether the event being served is to be sent twice."""
        self._events += 1
        if self.duplicate_every and self._events % self.duplicate_every == 0:
            self.injected["dup"] += 1
            return True
        return False
