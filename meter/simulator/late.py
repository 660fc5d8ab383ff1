"""Late arrivals: a share of the simulated sessions whose events reach the store late.

Real collectors see late usage: a stream that reconnects after hours, a region that uploads in
batches, an export replayed days later. To try a late-usage policy (reports.closing) on a
simulated fleet, `agenttally simulate --late-share S --late-delay-hours H --late-out FILE`
picks each session as late with probability S (from the seed and the session id, so the same
run picks the same sessions) and gives it one delay, log-normal with median H hours and
sigma 1 (a long tail: most late sessions arrive within a day or two, a few a week later).
Each of its events arrives at its `processed_at` plus that delay; events arriving after the
cut-off (the simulation's as-of: now with --until-now, else the end of its window) are kept
out of the main output and written, in order of arrival, to the late file, to be ingested
later (e.g. after closing a month). Session records stay in the main output.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from statistics import NormalDist

from meter.errors import UsageError
from meter.vocabulary import parse_api_time

__all__ = ["LateArrivals", "LateArrivalsError", "LateSplit", "split_late"]

_NORMAL = NormalDist()


class LateArrivalsError(UsageError):
    """A knob out of range: `field` is "share" or "median_delay_hours", `detail` what is
    wrong with its value."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"late arrivals: {field} {detail}")
        self.field, self.detail = field, detail


@dataclass(frozen=True)
class LateArrivals:
    """Which sessions arrive late and how late: share of sessions, median delay (hours)."""

    share: float
    median_delay_hours: float = 24.0
    sigma: float = 1.0
    seed: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise LateArrivalsError("share", f"{self.share} is not a share; expected a "
                                             "number from 0 to 1, e.g. 0.02")
        if self.median_delay_hours <= 0:
            raise LateArrivalsError("median_delay_hours", f"{self.median_delay_hours} is not "
                                             "a delay; expected hours > 0, e.g. 24")

    def _uniform(self, session_id: str, salt: str) -> float:
        digest = hashlib.sha256(f"{self.seed}:{salt}:{session_id}".encode()).digest()
        return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64

    def delay_ms(self, session_id: str) -> int | None:
        """The session's delay, or None when it arrives on time."""
        if self._uniform(session_id, "late") >= self.share:
            return None
        z = _NORMAL.inv_cdf(self._uniform(session_id, "delay"))
        return int(self.median_delay_hours * 3_600_000 * math.exp(self.sigma * z))


@dataclass
class LateSplit:
    """What `split_late` held back."""

    late_events: int = 0
    late_sessions: int = 0
    first_arrival_ms: int | None = None
    last_arrival_ms: int | None = None


def split_late(lines: Iterable[str], late: LateArrivals, cutoff_ms: int,
               held: list[tuple[int, str]], split: LateSplit) -> Iterator[str]:
    """Yield the lines that arrive by `cutoff_ms`; append (arrival, line) of the others to
    `held` (sorted by the caller) and count them in `split`."""
    sessions: set[str] = set()
    for line in lines:
        if not line.strip():
            continue
        item = json.loads(line)
        session_id = item.get("session_id")
        delay = late.delay_ms(session_id) if session_id and item.get("type") != "session" \
            else None
        at_ms = parse_api_time(item.get("processed_at"))
        if delay is not None and at_ms is not None:  # (no readable time: on time)
            arrival = at_ms + delay
            if arrival > cutoff_ms:
                held.append((arrival, line))
                sessions.add(session_id)
                split.late_events += 1
                split.first_arrival_ms = min(arrival, split.first_arrival_ms or arrival)
                split.last_arrival_ms = max(arrival, split.last_arrival_ms or arrival)
                continue
        yield line
    split.late_sessions = len(sessions)
