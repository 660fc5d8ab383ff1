"""The emulator's HTTP API: the documented Managed Agents read endpoints over a `Replay`.

Same paths, parameters, headers, pagination and SSE framing as the real API (reference §1-3),
so the collector runs unchanged against either. Besides the API, `/_emulator/state` reports
progress and injected faults, and `POST /_emulator/clock` moves a manual clock.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator
from typing import TypedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from meter.emulator.faults import Faults
from meter.emulator.replay import Replay
from meter.vocabulary import parse_api_time

BETA = "managed-agents-2026-04-01"
MAX_LIMIT = 1000
PING = 'event: ping\ndata: {"type":"ping"}\n\n'


class _BadRequest(ValueError):
    pass


class _Counters(TypedDict):
    """What the served app has seen: requests, streams opened and still open, and the wall
    time at which a request started the clock (None if none did)."""

    requests: int
    streams: int
    streams_open: int
    started_wall: float | None


class _InjectedAbort(Exception):
    """Raised inside a stream body to break the connection mid-response (fault `drop`)."""


class _HideInjectedAborts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is _InjectedAbort)


def _error(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}},
                        status_code=status, headers=headers)


def _encode(cursor: dict) -> str:
    raw = json.dumps(cursor, separators=(",", ":")).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str) -> dict:
    try:
        body = text.removeprefix("page_")
        cursor = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if not isinstance(cursor, dict):
            raise ValueError
        return cursor
    except (ValueError, TypeError):
        raise _BadRequest(f"page: {text[:40]!r} is not a page cursor from this API") from None


def _limit(q, default: int) -> int:
    raw = q.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"limit: expected an integer, got {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise _BadRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def _order(q, default: str) -> str:
    value = q.get("order", default)
    if value not in ("asc", "desc"):
        raise _BadRequest(f"order: expected 'asc' or 'desc', got {value!r}")
    return value


def _bounds(q) -> list[tuple[str, int]]:
    out = []
    for op in ("gt", "gte", "lt", "lte"):
        raw = q.get(f"created_at[{op}]")
        if raw is None:
            continue
        value = parse_api_time(raw)
        if value is None:
            raise _BadRequest(f"created_at[{op}]: not an RFC 3339 timestamp: {raw!r}")
        out.append((op, value))
    return out


def _in_bounds(at: int, bounds: list[tuple[str, int]]) -> bool:
    checks = {"gt": at.__gt__, "gte": at.__ge__, "lt": at.__lt__, "lte": at.__le__}
    return all(checks[op](v) for op, v in bounds)


def _page_cursor(q, order: str) -> dict | None:
    if "page" not in q:
        return None
    cursor = _decode(q["page"])
    if cursor.get("o") != order:
        raise _BadRequest(
            f"page: this cursor was made for order={cursor.get('o')}, not order={order}; "
            "keep the order you started with")
    return cursor


def create_app(
    replay: Replay,
    *,
    api_key: str | None = None,
    faults: Faults | None = None,
    ping_interval_s: float = 10.0,
    stall_s: float = 60.0,
    start_on_first_request: bool = True,
) -> Starlette:
    """The API over `replay`. `api_key=None` accepts any non-empty `x-api-key`."""
    faults = faults or Faults()
    state: _Counters = {"requests": 0, "streams": 0, "streams_open": 0, "started_wall": None}
    errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideInjectedAborts) for f in errors.filters):
        errors.addFilter(_HideInjectedAborts())
    if not start_on_first_request:
        replay.clock.start()

    async def gate(request: Request) -> Response | None:
        key = request.headers.get("x-api-key", "")
        if not key or (api_key is not None and not hmac.compare_digest(key.encode(),
                                                                       api_key.encode())):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        betas = [b.strip() for b in request.headers.get("anthropic-beta", "").split(",")]
        if BETA not in betas:
            return _error(400, "invalid_request_error",
                          f"this endpoint requires the header anthropic-beta: {BETA}")
        if not replay.clock.started:
            replay.clock.start()
            state["started_wall"] = time.time()
        state["requests"] += 1
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        status = faults.on_request()
        if status == 429:
            ra = faults.retry_after_s
            text = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
            return _error(429, "rate_limit_error", "Number of requests has exceeded your "
                          "rate limit (emulated)", headers={"retry-after": text})
        if status == 500:
            return _error(500, "api_error", "Internal server error (emulated)")
        return None

    def session_or_404(session_id: str):
        s = replay.sessions.get(session_id)
        if s is None or not s.visible(replay.clock.now_ms()):
            return None, _error(404, "not_found_error", f"session {session_id} not found")
        return s, None

    async def list_sessions(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        q = request.query_params
        try:
            limit = _limit(q, 20)
            order = _order(q, "desc")
            bounds = _bounds(q)
            cursor = _page_cursor(q, order)
        except _BadRequest as exc:
            return _error(400, "invalid_request_error", str(exc))
        statuses = set(q.getlist("statuses[]") + q.getlist("statuses"))
        archived_too = q.get("include_archived", "false").lower() == "true"
        agent_id, agent_version = q.get("agent_id"), q.get("agent_version")
        now = replay.clock.now_ms()
        rows: list[tuple[list, dict]] = []
        for s in replay.order:
            if not s.visible(now) or not _in_bounds(s.created_ms, bounds):
                continue
            obj = s.object_at(now)
            agent = obj.get("agent") or {}
            if statuses and obj.get("status") not in statuses:
                continue
            if not archived_too and obj.get("archived_at"):
                continue
            if agent_id and agent.get("id") != agent_id:
                continue
            if agent_version and str(agent.get("version")) != agent_version:
                continue
            rows.append(([s.created_ms, s.id], obj))
        if order == "desc":
            rows.reverse()
        start = 0
        if cursor is not None:
            key = cursor.get("k")
            after = (lambda k: k > key) if order == "asc" else (lambda k: k < key)
            if cursor.get("d") == "prev":
                end = sum(1 for k, _ in rows if not after(k) and k != key)
                start = max(0, end - limit)
                rows_page = rows[start:end]
            else:
                start = next((i for i, (k, _) in enumerate(rows) if after(k)), len(rows))
                rows_page = rows[start:start + limit]
        else:
            rows_page = rows[:limit]
        end = start + len(rows_page)
        return JSONResponse({
            "data": [obj for _, obj in rows_page],
            "next_page": _encode({"o": order, "k": rows_page[-1][0], "d": "next"})
            if rows_page and end < len(rows) else None,
            "prev_page": _encode({"o": order, "k": rows_page[0][0], "d": "prev"})
            if rows_page and start > 0 else None,
        })

    async def get_session(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        s, missing = session_or_404(request.path_params["session_id"])
        if missing:
            return missing
        return JSONResponse(s.object_at(replay.clock.now_ms()))

    async def list_events(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        s, missing = session_or_404(request.path_params["session_id"])
        if missing:
            return missing
        q = request.query_params
        try:
            limit = _limit(q, MAX_LIMIT)
            order = _order(q, "asc")
            bounds = _bounds(q)
            cursor = _page_cursor(q, order)
        except _BadRequest as exc:
            return _error(400, "invalid_request_error", str(exc))
        types = set(q.getlist("types[]") + q.getlist("types"))
        lo, hi = 0, s.emitted(replay.clock.now_ms())
        for op, value in bounds:
            if op == "gt":
                lo = max(lo, bisect_right(s.times, value))
            elif op == "gte":
                lo = max(lo, bisect_left(s.times, value))
            elif op == "lt":
                hi = min(hi, bisect_left(s.times, value))
            else:
                hi = min(hi, bisect_right(s.times, value))
        if cursor is not None:
            at = int(cursor.get("i", -1))
            if order == "asc":
                lo = max(lo, at + 1)
            else:
                hi = min(hi, at)
        indices = range(lo, hi) if order == "asc" else range(hi - 1, lo - 1, -1)
        picked: list[int] = []
        more = False
        for i in indices:
            if types and s.kinds[i] not in types:
                continue
            if len(picked) == limit:
                more = True
                break
            picked.append(i)
        parts = []
        for i in picked:
            parts.append(s.texts[i])
            if faults.duplicate():
                parts.append(s.texts[i])
        next_page = _encode({"o": order, "i": picked[-1]}) if more else None
        body = '{"data":[' + ",".join(parts) + '],"next_page":' + json.dumps(next_page) + "}"
        return Response(body, media_type="application/json")

    async def stream_events(request: Request) -> Response:
        if (denied := await gate(request)) is not None:
            return denied
        s, missing = session_or_404(request.path_params["session_id"])
        if missing:
            return missing
        first = s.emitted(replay.clock.now_ms())  # no replay: only what is emitted from now
        stall = faults.on_stream()
        state["streams"] += 1

        async def frames() -> AsyncIterator[str]:
            state["streams_open"] += 1
            try:
                if stall:
                    await asyncio.sleep(stall_s)
                    return
                i, sent, last = first, 0, time.monotonic()
                n = len(s.times)
                while True:
                    now = replay.clock.now_ms()
                    chunk: list[str] = []
                    drop = False
                    while i < n and s.times[i] <= now:
                        frame = f"event: {s.kinds[i]}\ndata: {s.texts[i]}\n\n"
                        chunk.append(frame)
                        if faults.duplicate():
                            chunk.append(frame)
                        i += 1
                        sent += 1
                        if faults.drop_every and sent % faults.drop_every == 0:
                            drop = True
                            break
                    if chunk:
                        yield "".join(chunk)
                        last = time.monotonic()
                    if drop:
                        if (faults.injected["drop"] + faults.injected["abort"]) % 2:
                            faults.injected["abort"] += 1
                            raise _InjectedAbort("connection dropped (emulated)")
                        faults.injected["drop"] += 1
                        return
                    if i >= n and s.deleted_ms is not None:
                        return  # session.deleted ends every stream
                    quiet = time.monotonic() - last
                    if quiet >= ping_interval_s:
                        yield PING
                        last = time.monotonic()
                        continue
                    wait = ping_interval_s - quiet
                    if i < n:
                        until = replay.clock.wall_s_until(s.times[i])
                        wait = min(wait, 0.02 if until is None else until)
                    await asyncio.sleep(max(wait, 0.0005))
            finally:
                state["streams_open"] -= 1

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    async def emulator_state(request: Request) -> Response:
        now = replay.clock.now_ms()
        return JSONResponse({
            "clock_ms": None if now == float("inf") else int(now),
            "started": replay.clock.started,
            "done": replay.done,
            "sessions": len(replay.sessions),
            "total_events": replay.total_events,
            "emitted_events": replay.emitted_events(),
            "last_event_ms": replay.last_ms,
            "requests": state["requests"],
            "streams": state["streams"],
            "streams_open": state["streams_open"],
            "faults": dict(faults.injected),
        })

    async def set_clock(request: Request) -> Response:
        body = await request.json()
        try:
            if "set_ms" in body:
                replay.clock.set(float(body["set_ms"]))
            if "advance_ms" in body:
                replay.clock.advance(float(body["advance_ms"]))
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request_error", str(exc))
        return await emulator_state(request)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not_found_error", f"{request.url.path}: no such endpoint")

    return Starlette(
        routes=[
            Route("/v1/sessions", list_sessions),
            Route("/v1/sessions/{session_id}", get_session),
            Route("/v1/sessions/{session_id}/events", list_events),
            Route("/v1/sessions/{session_id}/events/stream", stream_events),
            Route("/_emulator/state", emulator_state),
            Route("/_emulator/clock", set_clock, methods=["POST"]),
        ],
        exception_handlers={404: not_found},
    )
