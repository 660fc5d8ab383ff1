"""The collector's way into the store: buffered lines, flushed in batches through ingest.

Events and session records are held as JSON lines and written every `flush_events` lines or
`flush_interval_s`, whichever comes first, by `meter.ingest.ingest_lines` (the one way into the
store: validation, de-duplication by event id, quarantine). Each flush then advances
`collector_cursors` to the newest event of each session in the batch. The store is opened for
the length of a flush only, so that readers can share the file between flushes.

The cursor update is a second transaction after the batch's own: a crash between the two only
makes the next run re-read a few events, which ingest then drops as duplicates. A cursor never
names an event that was not committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from meter.collector.state import CollectStats
from meter.ingest import IngestResult, ingest_lines
from meter.store import open_store

log = logging.getLogger("agenttally.collector")

_UPSERT_CURSOR = """
    INSERT INTO collector_cursors (session_id, last_at_ms, last_event, updated_ms)
    VALUES (?, ?, ?, ?)
    ON CONFLICT (session_id) DO UPDATE SET
        last_event = CASE WHEN excluded.last_at_ms >= collector_cursors.last_at_ms
                          THEN excluded.last_event ELSE collector_cursors.last_event END,
        last_at_ms = greatest(collector_cursors.last_at_ms, excluded.last_at_ms),
        updated_ms = excluded.updated_ms
"""


def read_resume_points(db: Path) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """The cursors (session -> last stored `processed_at`) and stored (session, status,
    updated_ms) rows a run resumes from; creates the store if there is none yet."""
    with open_store(db) as con:
        cursors = {sid: int(at) for sid, at in con.execute(
            "SELECT session_id, last_at_ms FROM collector_cursors").fetchall()}
        stored = con.execute("SELECT session_id, status, updated_ms FROM sessions").fetchall()
    return cursors, stored


AfterFlush = Callable[[duckdb.DuckDBPyConnection], None]


def write_batch(db: Path, lines: list[str], cursors: dict[str, tuple[int, str]], *,
                source: str, after: AfterFlush | None = None) -> IngestResult:
    """One flush: the lines through ingest, then the cursors of what it committed, then
    `after` on the same connection (the CLI's: bring the ledger up to date, so that readers
    see current charges). A failure of `after` is logged: the batch is stored either way."""
    with open_store(db) as con:
        result = ingest_lines(con, lines, source=source)
        if cursors:
            now = int(time.time() * 1000)
            con.execute("BEGIN TRANSACTION")
            try:
                con.executemany(_UPSERT_CURSOR, [
                    (sid, at, eid, now) for sid, (at, eid) in cursors.items()])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        if after is not None:
            try:
                after(con)
            except Exception as exc:
                log.error("rating after the flush failed (the batch is stored; the next "
                          "flush rates it): %s", exc)
    return result


class BatchWriter:
    """The buffer between the network and the store; `run()` flushes it until `close()`.

    The collector appends to `events`/`records` directly (the hot path) and calls `cursor()`
    for each event with a timestamp.
    """

    def __init__(self, db: Path, *, source: str, flush_events: int, flush_interval_s: float,
                 stats: CollectStats, redact: Callable[[object], str],
                 after_flush: AfterFlush | None = None):
        # the source names where the lines came from (`collector:<base url>`) in ingest_log
        # and quarantine: never with the credentials a URL may carry
        self.db, self.source, self.after_flush = db, redact(source), after_flush
        self.flush_events, self.flush_interval_s = flush_events, flush_interval_s
        self.stats, self.redact = stats, redact
        self.events: list[str] = []
        self.records: list[str] = []
        self._cursors: dict[str, tuple[int, str]] = {}
        self._closing = False
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self.events)

    def cursor(self, session_id: str, at_ms: int, event_id: str) -> None:
        pending = self._cursors.get(session_id)
        if pending is None or at_ms >= pending[0]:
            self._cursors[session_id] = (at_ms, event_id)

    def wake(self) -> None:
        """Flush now rather than at the next interval (the batch is full)."""
        self._wake.set()

    async def run(self, on_tick: Callable[[], None] | None = None) -> None:
        """Flush every interval or when woken; after `close()`, flush once more and return."""
        while True:
            closing = self._closing
            await self.flush(final=closing)
            if closing:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            if on_tick:
                on_tick()

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def flush(self, *, final: bool = False) -> None:
        if not self.events and not self.records:
            return
        records, events, cursors = self.records, self.events, self._cursors
        self.records, self.events, self._cursors = [], [], {}
        try:
            result = await asyncio.to_thread(write_batch, self.db, records + events, cursors,
                                             source=self.source, after=self.after_flush)
        except Exception as exc:  # the store is locked or full: keep the lines, try again
            self.records[:0] = records
            self.events[:0] = events
            for sid, (at, eid) in cursors.items():
                self.cursor(sid, at, eid)
            if final:
                raise
            log.error("store write failed, %d lines kept for the next flush: %s",
                      len(records) + len(events), self.redact(exc))
            await asyncio.sleep(min(self.flush_interval_s, 1.0))
            return
        self.stats.flushes += 1
        self.stats.stored += result.new_events
        self.stats.store_duplicates += result.duplicates
        self.stats.records += result.records
        self.stats.quarantined += result.quarantined
        log.debug("flushed %s", result.summary())
        for error in result.errors:
            log.warning("quarantined: %s", self.redact(error))
