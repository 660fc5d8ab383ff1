"""What a collector run is configured with, counts, and knows about each session."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CollectorConfig:
    """Knobs of a collector run; the defaults suit the real API's documented limits."""

    since_ms: int | None = None          # only sessions created at or after this instant
    poll_interval_s: float = 5.0         # new and running sessions are listed this often
    sweep_interval_s: float = 300.0      # all sessions are listed this often (catches idle ones)
    full_sweep_every: int = 12           # ... and every Nth sweep back-fills every live session
    flush_events: int = 1000
    flush_interval_s: float = 1.0
    max_streams: int = 100               # concurrent SSE streams
    max_requests: int = 16               # concurrent listings / retrievals besides streams
    idle_linger_s: float = 300.0         # keep following an idle session this long
    backfill_overlap_ms: int = 1000      # re-read this much history before the cursor [U]
    discovery_overlap_ms: int = 60_000
    events_page_limit: int = 1000
    sessions_page_limit: int = 100
    max_buffer_events: int = 200_000     # streams pause while this many events wait
    progress_interval_s: float = 10.0
    source: str = "collector"


@dataclass
class CollectStats:
    """What a run did. `stored` counts events the store did not have before."""

    sessions: int = 0
    received: int = 0
    from_stream: int = 0
    from_backfill: int = 0
    skipped_duplicates: int = 0
    stored: int = 0
    store_duplicates: int = 0
    records: int = 0
    quarantined: int = 0
    flushes: int = 0
    streams_opened: int = 0
    reconnects: int = 0
    backfills: int = 0
    evictions: int = 0
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        secs = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.stored:,} new events stored ({self.store_duplicates:,} already stored, "
            f"{self.skipped_duplicates:,} duplicates skipped, {self.quarantined:,} quarantined), "
            f"{self.records:,} session records, {self.sessions:,} sessions in {secs:.1f} s "
            f"({self.streams_opened:,} streams, {self.reconnects:,} reconnects, "
            f"{self.backfills:,} back-fills)"
        )


class SessionState:
    """What the collector knows of one session during a run."""

    def __init__(self, session_id: str, *, new: bool):
        self.id = session_id
        self.json_prefix = '{"session_id":' + json.dumps(session_id) + ","
        self.new = new                        # first seen after the initial sweep
        self.status: str | None = None
        self.created_ms: int | None = None
        self.updated_ms: int | None = None
        self.archived = False
        self.gone = False                     # 404 or session.deleted
        self.record_text: str | None = None
        self.stored_key: tuple[Any, Any] | None = None   # (status, updated_ms) in the store
        self.cursor_ms: int | None = None     # processed_at of the latest event received
        self.synced_updated_ms: int | None = None  # updated_at we last back-filled up to
        self.seen: OrderedDict[str, int] = OrderedDict()
        self.follower: asyncio.Task | None = None
        self.backfill: asyncio.Task | None = None
        self.refetch: asyncio.Task | None = None
        self.refetch_again = False
        self.idle_since: float | None = None
        self.connected = False

    @property
    def terminal(self) -> bool:
        return self.gone or self.archived or self.status == "terminated"
