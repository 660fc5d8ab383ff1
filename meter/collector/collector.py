"""Follow every session of an organisation into the store, live, losing and doubling nothing.

How nothing is lost: the event stream does not replay, so every (re)connect first opens the
stream and only then lists the session's history from the last event received (minus a small
overlap); whatever the listing cannot see yet, the already-open stream will deliver. Sessions
that are not followed (idle, terminated, beyond `max_streams`) are back-filled whenever a
listing shows their `updated_at` moved. Cursors only ever name events that were committed.

How nothing is doubled: each event id is taken once in memory (a small per-session window)
and the store de-duplicates by event id on ingest, across restarts.

Writes go through `meter.collector.writer.BatchWriter`: batches through `meter.ingest`, then
the cursors of what each batch committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from meter.collector.client import (
    ApiClient,
    ApiError,
    AuthenticationError,
    CollectorError,
    NotFoundError,
    StreamError,
    describe,
)
from meter.collector.state import CollectorConfig, CollectStats, SessionState
from meter.collector.writer import AfterFlush, BatchWriter, read_resume_points
from meter.store import default_db_path
from meter.vocabulary import parse_api_time

log = logging.getLogger("agenttally.collector")

ACTIVE_STATUSES = ("running", "rescheduling")
TERMINAL_EVENTS = frozenset({"session.status_terminated", "session.deleted"})
STREAM_ONLY_EVENTS = frozenset({"event_start", "event_delta"})
# Events after which the session object (status, usage, metadata) is fetched again.
REFETCH_EVENTS = frozenset({
    "session.status_running", "session.status_idle", "session.status_rescheduled",
    "session.status_terminated", "session.updated",
})

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode



class Collector:
    """Collects sessions and events from the API into the store until stopped.

    `run()` is a coroutine; `stop()` may be called from any thread or a signal handler and
    makes `run()` flush what it holds and return.
    """

    def __init__(
        self,
        client: ApiClient,
        db: str | Path | None = None,
        config: CollectorConfig | None = None,
        *,
        webhook_listen: tuple[str, int] | None = None,
        webhook_secret: str | None = None,
        after_flush: AfterFlush | None = None,
    ):
        self.client = client
        self.db = Path(db) if db else default_db_path()
        self.config = config or CollectorConfig()
        self.stats = CollectStats()
        self.webhook_listen = webhook_listen
        self._webhook_secret = webhook_secret
        self.webhook_port: int | None = None
        self._sessions: dict[str, SessionState] = {}
        self._out = BatchWriter(self.db, source=self.config.source,
                                flush_events=self.config.flush_events,
                                flush_interval_s=self.config.flush_interval_s,
                                stats=self.stats, redact=client.redact,
                                after_flush=after_flush)
        self._last_progress = time.monotonic()
        self._max_created: int | None = None
        self._initial_sweep_done = False
        self._once = False
        self._stopping = False
        self._stop_requested = threading.Event()
        self._fatal: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stop_event: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._requests: asyncio.Semaphore | None = None

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to flush and return; safe from other threads and signal handlers."""
        self._stop_requested.set()
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass

    def poke(self, session_id: str) -> None:
        """Fetch one session now and follow or back-fill it (a webhook said it changed)."""
        if self._loop is None or self._stopping:
            return
        self._spawn(self._poke(self._session(session_id)))

    async def run(self, *, once: bool = False, handle_signals: bool = False) -> CollectStats:
        """Collect until `stop()` (or, with `once`, until every session is back-filled)."""
        self._loop = asyncio.get_running_loop()
        self._once = once
        self._stop_event = asyncio.Event()
        self._slots = asyncio.Semaphore(self.config.max_streams)
        self._requests = asyncio.Semaphore(self.config.max_requests)
        self.stats.started = time.monotonic()
        if self._stop_requested.is_set():
            self._stop_event.set()
        await asyncio.to_thread(self._load_state)
        signals = self._install_signals(self._loop) if handle_signals else []
        flusher = asyncio.create_task(self._out.run(on_tick=self._progress))
        loops: list[asyncio.Task] = []
        receiver = None
        try:
            if once:
                await self._sweep()
                await self._drain()
            else:
                if self.webhook_listen:
                    receiver = await self._start_receiver()
                loops = [asyncio.create_task(self._guard(self._sweep_loop())),
                         asyncio.create_task(self._guard(self._discover_loop()))]
                await self._stop_event.wait()
        finally:
            self._stopping = True
            if receiver is not None:
                receiver.should_exit = True
            pending = loops + list(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if receiver is not None:
                await self._receiver_task
            self._out.close()
            await flusher
            for sig in signals:
                self._loop.remove_signal_handler(sig)
        log.info("collector stopped: %s", self.stats.summary())
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    def _progress(self) -> None:
        if time.monotonic() - self._last_progress >= self.config.progress_interval_s:
            self._last_progress = time.monotonic()
            following = sum(1 for x in self._sessions.values() if x.connected)
            log.info("collecting: streaming %d sessions; %s", following, self.stats.summary())

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        return installed

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("%s", self.client.redact(exc))
        self.stop()

    async def _guard(self, coro: Awaitable[Any]) -> None:
        """Run a background job: a credentials error stops the run, others are logged."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except AuthenticationError as exc:
            self._fail(exc)
        except CollectorError as exc:
            if self._once:
                self._fail(exc)
            else:
                log.warning("%s", self.client.redact(exc))
        except Exception as exc:  # a bug must not take the other sessions down with it
            log.exception("collector job failed: %s", self.client.redact(exc))
            if self._once:
                self._fail(exc)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drain(self) -> None:
        while self._tasks and not self._running_stop_event.is_set():
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped first; True when the run is stopping."""
        try:
            await asyncio.wait_for(self._running_stop_event.wait(), timeout=max(seconds, 0))
            return True
        except TimeoutError:
            return self._stopping

    # The stop event and the semaphores belong to the event loop of `run()`, so `run()` makes
    # them; the jobs it then starts reach them through these properties.

    @property
    def _running_stop_event(self) -> asyncio.Event:
        assert self._stop_event is not None, "only while run() runs"
        return self._stop_event

    @property
    def _request_slots(self) -> asyncio.Semaphore:
        assert self._requests is not None, "only while run() runs"
        return self._requests

    @property
    def _stream_slots(self) -> asyncio.Semaphore:
        assert self._slots is not None, "only while run() runs"
        return self._slots

    # -- state -------------------------------------------------------------------------------

    def _load_state(self) -> None:
        """Cursors and stored session heads, so that a restart resumes where it stopped."""
        cursors, stored = read_resume_points(self.db)
        for sid, at in cursors.items():
            self._session(sid).cursor_ms = at
        for sid, status, updated in stored:
            s = self._session(sid)
            s.stored_key = (status, updated)
            # A terminated session whose events reach its last update needs no back-fill.
            if status == "terminated" and s.cursor_ms is not None and updated is not None \
                    and s.cursor_ms >= updated:
                s.synced_updated_ms = updated
        if cursors:
            log.info("resuming from cursors of %d sessions", len(cursors))

    def _session(self, session_id: str) -> SessionState:
        s = self._sessions.get(session_id)
        if s is None:
            s = self._sessions[session_id] = SessionState(session_id, new=self._initial_sweep_done)
        return s

    def _accept_record(self, obj: dict) -> SessionState | None:
        """Take a session object from a listing or retrieval; buffer it if it changed."""
        sid = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(sid, str) or not sid:
            self._out.records.append(json.dumps(obj))  # ingest quarantines it with the reason
            return None
        if obj.get("type") != "session":
            obj = {**obj, "type": "session"}
        s = self._session(sid)
        updated = parse_api_time(obj.get("updated_at")) or parse_api_time(obj.get("created_at"))
        text = _encode(obj)
        if text != s.record_text:
            unchanged = s.record_text is None and s.stored_key == (obj.get("status"), updated)
            if not unchanged:
                self._out.records.append(text)
            if s.record_text is None:
                self.stats.sessions += 1
            s.record_text = text
        s.status = obj.get("status")
        s.updated_ms = updated
        s.created_ms = parse_api_time(obj.get("created_at"))
        s.archived = obj.get("archived_at") is not None
        if s.created_ms is not None and (self._max_created is None
                                         or s.created_ms > self._max_created):
            self._max_created = s.created_ms
        return s

    def _accept(self, s: SessionState, event: Any, via: str, raw: str | None = None) -> None:
        """Take one event (stream or listing): de-duplicate, buffer, move the cursor.

        `raw` is the event's JSON text when there is one (a stream frame): the line is then
        spliced rather than re-encoded, which is most of the per-event cost.
        """
        if not isinstance(event, dict):
            self._out.events.append(json.dumps(event))  # quarantined by ingest with the reason
            return
        kind = event.get("type")
        if kind in STREAM_ONLY_EVENTS or event.get("processed_at") is None:
            return  # never persisted, or still queued: it comes back with a processed_at
        eid = event.get("id")
        at = parse_api_time(event.get("processed_at"))
        if isinstance(eid, str):
            if eid in s.seen:
                self.stats.skipped_duplicates += 1
                return
            s.seen[eid] = at if at is not None else 0
        if raw is not None and raw.startswith("{\"") and '"session_id"' not in raw:
            self._out.events.append(s.json_prefix + raw[1:])
        else:
            line = {"session_id": s.id}
            line.update(event)
            line["session_id"] = s.id
            self._out.events.append(_encode(line))
        self.stats.received += 1
        if via == "stream":
            self.stats.from_stream += 1
        else:
            self.stats.from_backfill += 1
        if at is not None:
            if s.cursor_ms is None or at >= s.cursor_ms:
                s.cursor_ms = at
            self._out.cursor(s.id, at, eid if isinstance(eid, str) else "")
            self._prune_seen(s)
        if kind == "session.status_idle":
            s.idle_since = time.monotonic()
        elif kind in ("session.status_running", "session.status_rescheduled"):
            s.idle_since = None
        if kind == "session.deleted":
            s.gone = True
        if kind in REFETCH_EVENTS and not self._once and not s.gone:
            self._schedule_refetch(s)
        if len(self._out.events) >= self.config.flush_events:
            self._out.wake()

    def _prune_seen(self, s: SessionState) -> None:
        """Forget ids older than any listing can return again (cursor minus 2x overlap)."""
        if len(s.seen) < 512 or s.cursor_ms is None:
            return
        horizon = s.cursor_ms - 2 * self.config.backfill_overlap_ms
        while s.seen and next(iter(s.seen.values())) < horizon:
            s.seen.popitem(last=False)

    async def _room(self) -> None:
        """Back-pressure: wait while the buffer is over `max_buffer_events`."""
        while len(self._out.events) > self.config.max_buffer_events and not self._stopping:
            self._out.wake()
            await asyncio.sleep(0.05)

    # -- discovery -------------------------------------------------------------------------

    def _activate(self, s: SessionState, *, forced: bool = False) -> None:
        """Decide how a listed session is kept up to date: follow, back-fill once, or not.

        Running sessions (and new ones, from birth) are followed; a follower still waiting
        for a stream slot does not stop listings from back-filling the session meanwhile.
        """
        if self._stopping or s.gone:
            return
        follow = not self._once and not s.terminal and (s.status in ACTIVE_STATUSES or s.new)
        if follow and s.follower is None:
            s.follower = self._spawn(self._follow(s))
        elif s.follower is not None and s.connected:
            return
        elif forced or s.synced_updated_ms is None or s.synced_updated_ms != s.updated_ms:
            if s.backfill is None:
                s.backfill = self._spawn(self._backfill_once(s))

    async def _sweep(self, *, full: bool = False) -> None:
        """List every session (archived too) since `since`; back-fill what moved.

        "Moved" means `updated_at` changed. A `full` sweep also back-fills every session that
        is not terminated, in case the API appends events without touching `updated_at` [U].
        """
        async for obj in self.client.list_sessions(
            created_gte=self.config.since_ms, include_archived=True, order="asc",
            limit=self.config.sessions_page_limit,
        ):
            s = self._accept_record(obj)
            if s is not None:
                self._activate(s, forced=full and not s.terminal)
        self._initial_sweep_done = True

    async def _sweep_loop(self) -> None:
        sweeps = 0
        while True:
            try:
                every = self.config.full_sweep_every
                await self._sweep(full=sweeps > 0 and every > 0 and sweeps % every == 0)
                sweeps += 1
            except AuthenticationError:
                raise
            except CollectorError as exc:  # the API is down for longer than the retries
                log.warning("listing sessions failed; trying again: %s", self.client.redact(exc))
            interval = self.config.sweep_interval_s
            if await self._sleep(interval if self._initial_sweep_done else min(interval, 5.0)):
                return

    async def _discover(self) -> None:
        """New sessions (followed from birth) and running ones (followed while running)."""
        since = self.config.since_ms
        gte = since if self._max_created is None else self._max_created - \
            self.config.discovery_overlap_ms
        if since is not None and gte is not None:
            gte = max(gte, since)
        listings = ({"created_gte": gte, "include_archived": True},
                    {"created_gte": since, "statuses": ACTIVE_STATUSES})
        for filters in listings:
            async for obj in self.client.list_sessions(
                order="asc", limit=self.config.sessions_page_limit, **filters,
            ):
                s = self._accept_record(obj)
                if s is not None:
                    self._activate(s)

    async def _discover_loop(self) -> None:
        while not self._initial_sweep_done:
            if await self._sleep(0.05):
                return
        while True:
            if await self._sleep(self.config.poll_interval_s):
                return
            try:
                await self._discover()
            except AuthenticationError:
                raise
            except CollectorError as exc:
                log.warning("listing new sessions failed; trying again: %s",
                            self.client.redact(exc))

    async def _fetch_record(self, s: SessionState) -> bool:
        """Fetch the session object and store it; False (the session marked gone) on a 404."""
        try:
            async with self._request_slots:
                obj = await self.client.get_session(s.id)
        except NotFoundError:
            s.gone = True
            return False
        self._accept_record(obj)
        return True

    async def _poke(self, s: SessionState) -> None:
        if await self._fetch_record(s):
            self._activate(s, forced=True)

    def _schedule_refetch(self, s: SessionState) -> None:
        if s.refetch is not None and not s.refetch.done():
            s.refetch_again = True
        else:
            s.refetch = self._spawn(self._refetch(s))

    async def _refetch(self, s: SessionState) -> None:
        """Fetch the session object again; one request in flight per session, in order."""
        while True:
            s.refetch_again = False
            if not await self._fetch_record(s) or not s.refetch_again:
                return

    # -- events --------------------------------------------------------------------------------

    async def _backfill(self, s: SessionState) -> None:
        """List the session's history from its cursor (minus the overlap) into the buffer."""
        start = None if s.cursor_ms is None else s.cursor_ms - self.config.backfill_overlap_ms
        async with self._request_slots:
            async for event in self.client.list_events(
                s.id, after_gte=start, limit=self.config.events_page_limit
            ):
                self._accept(s, event, "backfill")
                if len(self._out.events) > self.config.max_buffer_events:
                    await self._room()
        self.stats.backfills += 1

    async def _backfill_once(self, s: SessionState) -> None:
        try:
            updated = s.updated_ms
            await self._backfill(s)
            s.synced_updated_ms = updated
        except NotFoundError:
            s.gone = True
        finally:
            s.backfill = None

    def _evict_idle(self) -> bool:
        """Free a stream slot: stop following the session that has been idle the longest."""
        # Each followed idle session with the time it went idle and its follower.
        idle = [(x.idle_since, x.follower, x) for x in self._sessions.values()
                if x.follower is not None and x.connected and x.idle_since is not None]
        if not idle:
            return False
        _, follower, victim = min(idle, key=lambda item: item[0])
        self._caught_up(victim)
        victim.connected = False
        follower.cancel()
        self.stats.evictions += 1
        return True

    async def _follow(self, s: SessionState) -> None:
        """Stream one session's events, reconnecting (and back-filling) until it settles.

        With every slot taken, an idle follower makes room; if none is idle, a running
        session waits for a slot while an idle one is back-filled instead of followed.
        """
        acquired = False
        try:
            while not self._stopping:
                if not self._stream_slots.locked():
                    await self._stream_slots.acquire()  # free: returns without yielding
                    acquired = True
                    break
                if not self._evict_idle() and s.status not in ACTIVE_STATUSES:
                    s.new = False  # no room to follow it from birth: listings take over
                    s.follower = None
                    if s.backfill is None:
                        s.backfill = self._spawn(self._backfill_once(s))
                    return
                await asyncio.sleep(0.1)  # an evicted follower releases its slot as it ends
            if acquired:
                await self._follow_connected(s)
        finally:
            if acquired:
                self._stream_slots.release()
            s.connected = False
            if s.follower is asyncio.current_task():
                s.follower = None

    async def _follow_connected(self, s: SessionState) -> None:
        cfg = self.config
        attempt = 0
        s.idle_since = time.monotonic() if s.status == "idle" else None
        first = True
        while not self._stopping:
            if not first and self._settled(s):  # do not reconnect just to linger
                return
            first, got = False, 0
            try:
                async with self.client.stream_events(s.id) as frames:
                    self.stats.streams_opened += 1
                    await self._backfill(s)
                    s.connected = True
                    async for frame in frames:
                        if frame.event == "ping":
                            if self._settled(s):
                                return
                            continue
                        if frame.event == "error":
                            raise StreamError(self.client.redact(frame.data[:200]))
                        try:
                            event = json.loads(frame.data)
                        except ValueError:
                            self._out.events.append(frame.data)  # quarantined with the reason
                            continue
                        if isinstance(event, dict) and "type" not in event:
                            event["type"] = frame.event
                        self._accept(s, event, "stream", frame.data)
                        got += 1
                        if isinstance(event, dict) and event.get("type") in TERMINAL_EVENTS:
                            self._caught_up(s)
                            return
                        if self._settled(s):
                            return
                        if len(self._out.events) > cfg.max_buffer_events:
                            await self._room()
                reason: BaseException | str = "stream closed by the server"
            except NotFoundError:
                s.gone = True
                return
            except AuthenticationError:
                raise
            except (httpx.TransportError, ApiError, StreamError, CollectorError) as exc:
                if isinstance(exc, ApiError) and not exc.retriable:
                    raise
                reason = exc
            finally:
                s.connected = False
            self.stats.reconnects += 1
            if isinstance(reason, str):  # a clean close: reconnect at once unless it repeats
                attempt = 0 if got else attempt + 1
                delay = self.client.backoff(attempt) if attempt else 0.0
                text = reason
            else:
                attempt = 1 if got else attempt + 1
                delay = self.client.backoff(attempt, reason)
                text = describe(reason)
            log.info("stream %s: %s; reconnecting in %.2f s", s.id, self.client.redact(text),
                     delay)
            if await self._sleep(delay):
                return

    def _settled(self, s: SessionState) -> bool:
        """Idle past the linger time: stop following; listings pick the session up again."""
        if s.idle_since is not None and time.monotonic() - s.idle_since > \
                self.config.idle_linger_s:
            self._caught_up(s)
            return True
        return False

    @staticmethod
    def _caught_up(s: SessionState) -> None:
        """A follower stops: the session needs no back-fill only if the events received
        reach its last known `updated_at`; otherwise the next listing back-fills it (the
        record may be newer than what the stream had delivered)."""
        if s.cursor_ms is not None and s.updated_ms is not None and s.cursor_ms >= s.updated_ms:
            s.synced_updated_ms = s.updated_ms

    # -- webhooks ------------------------------------------------------------------------------

    async def _start_receiver(self):
        from meter.collector.webhooks import create_receiver, start_server

        assert self.webhook_listen is not None  # started only when webhooks are asked for
        host, port = self.webhook_listen
        app = create_receiver(self._webhook_secret or "", self.poke)
        server, task, bound = await start_server(app, host, port)
        self._receiver_task = task
        self.webhook_port = bound
        log.info("webhook receiver listening on http://%s:%d/", host, bound)
        return server


def collect(
    db: str | Path | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    config: CollectorConfig | None = None,
    once: bool = False,
    read_rpm: float | None = None,
    heartbeat_timeout_s: float = 60.0,
    webhook_listen: tuple[str, int] | None = None,
    webhook_secret: str | None = None,
    on_start: Callable[[Collector], None] | None = None,
    after_flush: AfterFlush | None = None,
) -> CollectStats:
    """Run a collector to completion (`once`) or until SIGINT/SIGTERM; the CLI's entry.
    `after_flush(con)` runs after each stored batch on its connection (the CLI rates)."""
    from meter.collector.client import DEFAULT_BASE_URL, DEFAULT_READ_RPM

    cfg = config or CollectorConfig()

    async def main() -> CollectStats:
        client = ApiClient(base_url or DEFAULT_BASE_URL, api_key=api_key,
                           read_rpm=read_rpm or DEFAULT_READ_RPM,
                           heartbeat_timeout_s=heartbeat_timeout_s,
                           max_connections=cfg.max_requests + 4, max_streams=cfg.max_streams + 4)
        async with client:
            collector = Collector(client, db, cfg, webhook_listen=webhook_listen,
                                  webhook_secret=webhook_secret, after_flush=after_flush)
            if on_start:
                on_start(collector)
            return await collector.run(
                once=once, handle_signals=threading.current_thread() is threading.main_thread())

    return asyncio.run(main())
