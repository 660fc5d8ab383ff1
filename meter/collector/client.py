"""The HTTP client for the Managed Agents API: auth, pagination, retries, rate limit, SSE.

One `httpx.AsyncClient` (HTTP/1.1 keep-alive) serves every request of a collector run. The API
key is read from `ANTHROPIC_API_KEY`, attached by an `httpx.Auth` flow (so it never sits in the
client's default headers, whose repr httpx does not mask for `x-api-key`), and scrubbed from
every error message this module builds. Credentials written into a URL (`user:key@` or a
`?api_key=` parameter of the base URL) are scrubbed the same way from every message, every
log record of the collector's loggers (and httpx's) and every text the collector stores.
The usage and cost report importer uses the same client: `get_json` and `paginate` work for
any read endpoint.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from meter.errors import DataError
from meter.settings import setting
from meter.vocabulary import iso_ms

log = logging.getLogger("agenttally.collector.client")

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
BETA = "managed-agents-2026-04-01"
API_KEY_ENV = "ANTHROPIC_API_KEY"
# Reference §9: read endpoints (retrieve, list, stream) allow 1,200 requests/min per org.
DEFAULT_READ_RPM = 1200
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")


class CollectorError(DataError):
    """A problem the user must fix (configuration, credentials); the CLI prints it as is."""


class ApiError(CollectorError):
    """An HTTP error answer from the API, with the API's error type and message."""

    def __init__(self, status: int, error_type: str, message: str, *,
                 retry_after: float | None = None, path: str = ""):
        self.status, self.error_type, self.retry_after, self.path = (
            status, error_type, retry_after, path)
        super().__init__(f"{path}: HTTP {status} {error_type}: {message}".lstrip(": "))

    @property
    def retriable(self) -> bool:
        return self.status in RETRY_STATUSES


class AuthenticationError(ApiError):
    """401/403: retrying cannot help; the collector stops."""


class NotFoundError(ApiError):
    """404: the session does not exist (any more)."""


class StreamError(DataError):
    """The server sent an SSE `event: error` frame; the stream is reconnected."""


# A URL inside any text: scheme, then userinfo (up to the authority's last @), host and path,
# then the query. Quotes and brackets end it, so a URL inside a message or a repr is found.
_URL = re.compile(r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#'"<>]*@)?"""
                  r"""(?P<rest>[^\s?#'"<>]*)(?P<query>\?[^\s#'"<>]*)?"""
                  r"""(?P<fragment>#[^\s'"<>]*)?""")
# Query parameter names whose values are credentials (api_key, access_token, X-Api-Key, sig...).
_SECRET_PARAM = re.compile(r"key|token|secret|pass|pwd|auth|sig|cred", re.IGNORECASE)
REDACTED = "[REDACTED]"


def _scrub_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if eq and _SECRET_PARAM.search(name) else pair)
    return "&".join(pairs)


def redact_urls(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by [REDACTED]: the whole
    userinfo (`https://user:sk-ant-...@host/` -> `https://[REDACTED]@host/`) and the values of
    query parameters named like a credential (`?api_key=...`, `?access_token=...`)."""
    def scrub(match: re.Match[str]) -> str:
        out = match["scheme"] + (f"{REDACTED}@" if match["userinfo"] else "") + match["rest"]
        for part in ("query", "fragment"):  # `#access_token=...` is a query of its own
            if match[part]:
                out += match[part][0] + _scrub_query(match[part][1:])
        return out

    return _URL.sub(scrub, text)


class Redactor:
    """Scrubs secrets out of text: the ones given, anything shaped like an Anthropic key, and
    the credentials of any URL (`redact_urls`)."""

    def __init__(self, *secrets: str | None):
        self._secrets = [s for s in secrets if s]

    def add(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def __call__(self, text: object) -> str:
        out = redact_urls(str(text))
        for secret in self._secrets:
            out = out.replace(secret, REDACTED)
        return _KEY_PATTERN.sub(f"sk-ant-{REDACTED}", out)


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record with its message (and traceback) scrubbed
    by a `Redactor`: what a log line says of a URL or a key never carries the credential,
    whoever wrote the line (our code, a caller's `log.info("... %s", base_url)`, httpx)."""

    def __init__(self, redact: Redactor):
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


# Every logger that may see a URL or a key during a collector run; each client adds its key.
LOG_REDACTOR = Redactor()
_LOG_FILTER = RedactingFilter(LOG_REDACTOR)
REDACTED_LOGGERS = ("agenttally.collector", "agenttally.collector.client",
                    "agenttally.collector.webhooks", "httpx", "httpcore")
for _name in REDACTED_LOGGERS:
    if _LOG_FILTER not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_LOG_FILTER)


def split_base_url(base_url: str) -> tuple[str, tuple[tuple[str, str], ...], bool]:
    """The API root as requests use it: (scheme://host[:port]/path without userinfo or query,
    the query's parameters, sent with every request, whether a userinfo was dropped). httpx
    would send the query in place of each request's own path, and never uses a userinfo
    beside the key's own auth."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise CollectorError(f"base URL {redact_urls(base_url)!r} is not a URL: "
                             f"{redact_urls(str(exc))}") from None
    params = tuple(url.params.multi_items())
    had_userinfo = bool(url.userinfo)
    root = url.copy_with(username=None, password=None, query=None, fragment=None)
    return str(root).rstrip("/"), params, had_userinfo


class _ApiKeyAuth(httpx.Auth):
    """Adds `x-api-key` per request; the key is never part of any repr."""

    def __init__(self, key: str):
        self._key = key

    def auth_flow(self, request: httpx.Request):
        request.headers["x-api-key"] = self._key
        yield request

    def __repr__(self) -> str:
        return "<ApiKeyAuth [REDACTED]>"


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; `retry-after` wins when the server sends one."""

    max_attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return retry_after + random.uniform(0, 0.1 * max(retry_after, 0.1))
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0)))


class RateLimiter:
    """A token bucket that keeps any 60 s window at or under `per_minute` requests.

    The bucket holds one second's worth of requests; it refills at (per_minute - burst)/60 per
    second, so burst + 60 s of refill never exceeds the limit. A 429 pauses every caller for
    the server's `retry-after`, since the limit is per organisation, not per request.
    """

    def __init__(self, per_minute: float = DEFAULT_READ_RPM):
        if per_minute <= 1:
            raise CollectorError(f"read rate limit must be above 1 request/min, got {per_minute}")
        self.per_minute = per_minute
        self.burst = max(1.0, per_minute / 60)
        self.rate = (per_minute - self.burst) / 60 if per_minute > 60 else per_minute / 120
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                wait = self._paused_until - now
                if wait <= 0 and self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep(max(wait, (1 - self._tokens) / self.rate, 0.001))


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class SseFrame:
    """One server-sent event: the `event:` name and the joined `data:` lines."""

    event: str
    data: str


def describe(exc: BaseException, redact: Callable[[object], str] = str) -> str:
    """One line for a connection-level error (httpx's timeouts have empty messages)."""
    if isinstance(exc, httpx.TimeoutException) and not str(exc):
        return f"{type(exc).__name__} (no data within the timeout: dead connection?)"
    if isinstance(exc, ApiError):
        return redact(exc)
    return f"{type(exc).__name__}: {redact(exc)}"


def _retry_after(resp: httpx.Response) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or HTTP date), else None."""
    ms = resp.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class ApiClient:
    """Reads the Managed Agents API: JSON endpoints with retries, listings, event streams.

    Every request passes the read rate limiter, including each stream (re)connect.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        read_rpm: float = DEFAULT_READ_RPM,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        heartbeat_timeout_s: float = 60.0,
        max_connections: int = 32,
        max_streams: int = 128,
        beta: str = BETA,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        key = api_key if api_key is not None else (setting(API_KEY_ENV) or "")
        if not key.strip():
            raise CollectorError(
                f"{API_KEY_ENV} is not set: export your API key in the environment "
                "(it is never read from the command line, printed or stored)"
            )
        self.redact = Redactor(key)
        LOG_REDACTOR.add(key.strip())
        root, base_params, had_userinfo = split_base_url(base_url)
        self.base_url = root
        if had_userinfo:
            log.warning("the user:password@ part of the base URL %s is not used: the API key "
                        "is read from %s", self.redact(base_url), API_KEY_ENV)
        self.limiter = RateLimiter(read_rpm)
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.stats = ClientStats()
        # Two pools: httpcore scans every connection of a pool per request, and a hundred
        # long-lived streams would make each listing pay for them. Both share everything
        # but their size.
        auth = _ApiKeyAuth(key.strip())
        headers = {
            "anthropic-version": API_VERSION,
            "anthropic-beta": beta,
            "accept": "application/json",
            "user-agent": "agenttally-collector/0.1",
        }
        timeout = httpx.Timeout(timeout_s)

        def pool(size: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=self.base_url, auth=auth, headers=headers, params=base_params,
                timeout=timeout, transport=transport,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size))

        self._http = pool(max_connections)
        self._streams = pool(max_streams)

    def __repr__(self) -> str:
        return f"<ApiClient {self.redact(self.base_url)}>"

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._streams.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- errors ------------------------------------------------------------------------------

    def _error(self, resp: httpx.Response, path: str) -> ApiError:
        error_type, message = "http_error", resp.reason_phrase or ""
        try:
            body = resp.json()
            error_type = body["error"]["type"]
            message = body["error"].get("message", "")
        except (ValueError, KeyError, TypeError):
            message = resp.text[:200] if resp.text else message
        cls = {401: AuthenticationError, 403: AuthenticationError, 404: NotFoundError}.get(
            resp.status_code, ApiError)
        if cls is AuthenticationError:
            message += f" (check {API_KEY_ENV} and that the org has Managed Agents access)"
        return cls(resp.status_code, error_type, self.redact(message),
                   retry_after=_retry_after(resp), path=path)

    def _count(self, resp: httpx.Response) -> None:
        self.stats.requests += 1
        self.stats.by_status[resp.status_code] = self.stats.by_status.get(resp.status_code, 0) + 1
        if resp.status_code == 429:
            self.stats.rate_limited += 1
        elif resp.status_code >= 500:
            self.stats.server_errors += 1

    def backoff(self, attempt: int, exc: BaseException | None = None) -> float:
        """The wait before attempt `attempt + 1`; a 429 also pauses the shared limiter."""
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        delay = self.retry.delay(attempt, retry_after)
        if isinstance(exc, ApiError) and exc.status == 429:
            self.limiter.pause(delay)
        return delay

    # -- JSON endpoints ------------------------------------------------------------------------

    async def get_json(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET a JSON endpoint, retrying connection errors, 429 and 5xx with backoff."""
        attempt = 0
        while True:
            await self.limiter.acquire()
            try:
                resp = await self._http.get(path, params=[*params, ("beta", "true")])
            except httpx.TransportError as exc:
                self.stats.requests += 1
                self.stats.transport_errors += 1
                err: BaseException = exc
                reason = f"GET {path}: {describe(exc, self.redact)}"
            else:
                self._count(resp)
                if resp.status_code < 400:
                    return resp.json()
                err = self._error(resp, path)
                if not err.retriable:
                    raise err
                reason = str(err)
            attempt += 1
            if attempt >= self.retry.max_attempts:
                raise CollectorError(f"gave up after {attempt} attempts: {reason}") from err
            delay = self.backoff(attempt, err)
            self.stats.retries += 1
            log.info("%s; retry %d in %.2f s", reason, attempt, delay)
            await asyncio.sleep(delay)

    async def paginate(
        self, path: str, params: Sequence[tuple[str, str]] = ()
    ) -> AsyncIterator[dict]:
        """Every item of a `{data, next_page}` listing, following the opaque page cursors."""
        page: str | None = None
        while True:
            body = await self.get_json(path, [*params, *([("page", page)] if page else [])])
            for item in body.get("data") or []:
                yield item
            page = body.get("next_page")
            if not page:
                return

    # -- Managed Agents sessions -------------------------------------------------------------

    def list_sessions(
        self,
        *,
        created_gte: int | None = None,
        created_lt: int | None = None,
        statuses: Iterable[str] = (),
        include_archived: bool = False,
        order: str = "asc",
        limit: int = 100,
    ) -> AsyncIterator[dict]:
        """Sessions (`GET /v1/sessions`), oldest first unless `order="desc"`."""
        params: list[tuple[str, str]] = [("limit", str(limit)), ("order", order)]
        if created_gte is not None:
            params.append(("created_at[gte]", iso_ms(created_gte)))
        if created_lt is not None:
            params.append(("created_at[lt]", iso_ms(created_lt)))
        params += [("statuses[]", s) for s in statuses]
        if include_archived:
            params.append(("include_archived", "true"))
        return self.paginate("/v1/sessions", params)

    async def get_session(self, session_id: str) -> dict:
        return await self.get_json(f"/v1/sessions/{session_id}")

    def list_events(
        self,
        session_id: str,
        *,
        after_gte: int | None = None,
        types: Iterable[str] = (),
        limit: int = 1000,
    ) -> AsyncIterator[dict]:
        """A session's persisted events in `processed_at` order, from `after_gte` (epoch ms)."""
        params: list[tuple[str, str]] = [("limit", str(limit)), ("order", "asc")]
        if after_gte is not None:
            params.append(("created_at[gte]", iso_ms(after_gte)))
        params += [("types[]", t) for t in types]
        return self.paginate(f"/v1/sessions/{session_id}/events", params)

    @asynccontextmanager
    async def stream_events(self, session_id: str) -> AsyncIterator[AsyncIterator[SseFrame]]:
        """Open `GET /v1/sessions/{id}/events/stream`; yields the frame iterator once connected.

        The server has registered the stream when the headers arrive, so a history listing
        made after this returns covers everything the stream will not replay. A read timeout
        of `heartbeat_timeout_s` turns a silent connection (no events, no pings) into
        `httpx.ReadTimeout`. Not retried here: the caller reconnects and back-fills.
        """
        path = f"/v1/sessions/{session_id}/events/stream"
        await self.limiter.acquire()
        request = self._streams.build_request(
            "GET", path, params=[("beta", "true")], headers={"accept": "text/event-stream"},
            timeout=httpx.Timeout(self.timeout_s, read=self.heartbeat_timeout_s),
        )
        try:
            resp = await self._streams.send(request, stream=True)
        except httpx.TransportError:
            self.stats.requests += 1
            self.stats.transport_errors += 1
            raise
        try:
            self._count(resp)
            if resp.status_code >= 400:
                await resp.aread()
                raise self._error(resp, path)
            yield _sse_frames(resp)
        finally:
            await resp.aclose()


def _sse_block(block: str) -> SseFrame | None:
    """One frame's lines: `event:` and `data:` fields; comments and other fields ignored."""
    event: str | None = None
    data: list[str] = []
    for line in block.split("\n"):
        if not line or line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data or event:
        return SseFrame(event or "message", "\n".join(data))
    return None


async def _sse_frames(resp: httpx.Response) -> AsyncIterator[SseFrame]:
    """Parse `text/event-stream`; frames end at a blank line (any of \\n, \\r\\n, \\r).

    Splits whole chunks on the frame separator rather than going line by line: the stream
    parser is the collector's hot loop.
    """
    buf = ""
    async for chunk in resp.aiter_text():
        buf += chunk
        if "\r" in buf:  # keep a trailing \r: its \n may be in the next chunk
            tail = "\r" if buf.endswith("\r") else ""
            buf = buf[: len(buf) - len(tail)].replace("\r\n", "\n").replace("\r", "\n") + tail
        if "\n\n" not in buf:
            continue
        *blocks, buf = buf.split("\n\n")
        for block in blocks:
            frame = _sse_block(block)
            if frame is not None:
                yield frame
    # A frame cut off by the end of the body is not dispatched (as the SSE spec says): it
    # would be a truncated event, and the reconnect's back-fill brings it whole.
