"""The emulator's data: sessions and events from a JSONL file, "emitted" on a replay clock.

An event counts as emitted once the clock has passed its `processed_at`; listings show only
emitted events, and a stream delivers only events emitted after it connected (the real API
does not replay). A session is visible from its `created_at`; its object is the latest
record whose `updated_at` has passed, with `status`/`updated_at` brought forward from the
emitted status events when those are newer than the record.
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from meter.vocabulary import iso_ms, parse_api_time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

STATUS_OF_EVENT = {
    "session.status_running": "running",
    "session.status_idle": "idle",
    "session.status_rescheduled": "rescheduling",
    "session.status_terminated": "terminated",
}


class ReplayClock:
    """Virtual time: `start_ms + wall seconds x speed`.

    `speed=None` is instant (everything already emitted); `speed=0` is a manual clock that
    only moves with `set()`/`advance()` (tests, step-by-step demos). The clock starts on
    `start()`, which the app calls on the first authenticated API request, so that a slow
    client start-up does not eat into the replay.
    """

    def __init__(self, start_ms: int, speed: float | None = 1.0):
        if speed is not None and speed < 0:
            raise ValueError(f"speed must be >= 0 or instant, got {speed}")
        self.start_ms = start_ms
        self.speed = speed
        self._wall0: float | None = None
        self._manual = float(start_ms)

    @property
    def started(self) -> bool:
        return self._wall0 is not None

    def start(self) -> None:
        if self._wall0 is None:
            self._wall0 = time.monotonic()

    def now_ms(self) -> float:
        if self.speed is None:
            return math.inf
        if self.speed == 0:
            return self._manual
        if self._wall0 is None:
            return float(self.start_ms)
        return self.start_ms + (time.monotonic() - self._wall0) * 1000.0 * self.speed

    def set(self, at_ms: float) -> None:
        if self.speed != 0:
            raise ValueError("only a manual clock (speed 0) can be set")
        self._manual = max(self._manual, float(at_ms))

    def advance(self, ms: float) -> None:
        self.set(self._manual + ms)

    def wall_s_until(self, at_ms: float) -> float | None:
        """Wall seconds until virtual `at_ms`; None when only polling can tell (manual)."""
        if self.speed is None:
            return 0.0
        if self.speed == 0 or self._wall0 is None:
            return None
        return max(0.0, (at_ms - self.now_ms()) / 1000.0 / self.speed)


@dataclass
class SessionData:
    id: str
    created_ms: int
    records: list[tuple[int, int, dict]] = field(default_factory=list)  # (updated, order, obj)
    times: list[int] = field(default_factory=list)        # processed_at of events, sorted
    kinds: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)        # event JSON without session_id
    status_times: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    deleted_ms: int | None = None

    def emitted(self, now: float) -> int:
        """How many events the clock has passed."""
        return bisect_right(self.times, now)

    def visible(self, now: float) -> bool:
        return self.created_ms <= now and not (self.deleted_ms is not None
                                               and self.deleted_ms <= now)

    def object_at(self, now: float) -> dict:
        """The session object as the API would return it at virtual time `now`."""
        idx = bisect_right([r[0] for r in self.records], now)
        base_visible = idx > 0
        updated, _, base = self.records[idx - 1] if base_visible else self.records[0]
        n = self.emitted(now)
        last_event = self.times[n - 1] if n else None
        if base_visible and (last_event is None or updated >= last_event):
            return base
        out = dict(base)
        k = bisect_right(self.status_times, now)
        if k:
            out["status"] = self.statuses[k - 1]
        elif not base_visible:
            out["status"] = "idle"
        stamp = max(self.created_ms, last_event or self.created_ms,
                    updated if base_visible else self.created_ms)
        out["updated_at"] = iso_ms(stamp)
        archived = parse_api_time(out.get("archived_at"))
        if archived is not None and archived > now:
            out["archived_at"] = None
        return out


class Replay:
    """All sessions and events of one JSONL file, indexed for the API's queries."""

    def __init__(self, sessions: dict[str, SessionData], clock: ReplayClock, skipped: int = 0):
        self.sessions = sessions
        self.clock = clock
        self.skipped = skipped
        self.order = sorted(sessions.values(), key=lambda s: (s.created_ms, s.id))
        self.total_events = sum(len(s.times) for s in sessions.values())
        self.last_ms = max((s.times[-1] for s in sessions.values() if s.times), default=0)

    @classmethod
    def from_lines(
        cls,
        lines: Iterable[str | dict],
        *,
        speed: float | None = 1.0,
        start_ms: int | None = None,
    ) -> Replay:
        """Build from simulator-format lines: session records, and events with `session_id`.

        Lines that are neither (agent/environment records, bad JSON, events without a
        session or a `processed_at`) are counted in `skipped`, not served.
        """
        records: dict[str, list[tuple[int, int, dict]]] = {}
        events: dict[str, list[tuple[int, int, dict]]] = {}
        skipped = 0
        for order, line in enumerate(lines):
            if isinstance(line, str):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    skipped += 1
                    continue
            else:
                obj = line
            if not isinstance(obj, dict):
                skipped += 1
                continue
            if obj.get("type") == "session" and isinstance(obj.get("id"), str):
                created = parse_api_time(obj.get("created_at"))
                if created is None:
                    skipped += 1
                    continue
                updated = parse_api_time(obj.get("updated_at")) or created
                records.setdefault(obj["id"], []).append((updated, order, obj))
                continue
            sid, at = obj.get("session_id"), parse_api_time(obj.get("processed_at"))
            if not isinstance(sid, str) or at is None or obj.get("type") in ("agent",
                                                                              "environment"):
                skipped += 1
                continue
            events.setdefault(sid, []).append((at, order, obj))
        sessions: dict[str, SessionData] = {}
        for sid in set(records) | set(events):
            evs = sorted(events.get(sid, []), key=lambda e: (e[0], e[1]))
            recs = sorted(records.get(sid, []), key=lambda r: (r[0], r[1]))
            if not recs:  # events of a session the file has no record for
                first = evs[0][0]
                recs = [(first, -1, {"type": "session", "id": sid, "created_at": iso_ms(first),
                                     "updated_at": iso_ms(first), "status": "idle",
                                     "metadata": {}})]
            created = min(_created_ms(r[2]) for r in recs)
            data = SessionData(sid, created, recs)
            for at, _, obj in evs:
                kind = str(obj.get("type"))
                wire = {k: v for k, v in obj.items() if k != "session_id"}
                data.times.append(at)
                data.kinds.append(kind)
                data.texts.append(json.dumps(wire, separators=(",", ":"), ensure_ascii=False))
                if kind in STATUS_OF_EVENT:
                    data.status_times.append(at)
                    data.statuses.append(STATUS_OF_EVENT[kind])
                if kind == "session.deleted" and data.deleted_ms is None:
                    data.deleted_ms = at
            sessions[sid] = data
        if start_ms is None:
            starts = [s.created_ms for s in sessions.values()]
            start_ms = min(starts) if starts else 0
        return cls(sessions, ReplayClock(start_ms, speed), skipped)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs) -> Replay:
        with open(path, encoding="utf-8") as fh:
            return cls.from_lines(fh, **kwargs)

    def emitted_events(self) -> int:
        now = self.clock.now_ms()
        return sum(s.emitted(now) for s in self.sessions.values())

    @property
    def done(self) -> bool:
        return self.clock.now_ms() >= self.last_ms


def _created_ms(record: dict) -> int:
    """A kept session record's creation time: `Replay.from_lines` skips records whose
    `created_at` does not parse, and the stand-in records it writes itself have one."""
    created = parse_api_time(record.get("created_at"))
    assert created is not None
    return created
