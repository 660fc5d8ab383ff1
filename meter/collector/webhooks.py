"""Webhook receiver: verify the signature headers, then have the collector fetch the session.

Managed Agents webhooks (reference §8) are thin: `{"type":"event","id":..,"data":{"type":
"session.status_idled","id":"sesn_..",..}}`, signed in the Standard Webhooks style: HMAC-SHA256
over `"{webhook-id}.{webhook-timestamp}.{body}"` with the base64 key after `whsec_`, sent as
`webhook-signature: v1,<base64>` (several space-separated signatures while a secret rotates).
A webhook only says *that* a session changed; the collector then reads the session and its
events through the API, so a forged or replayed webhook can cause a read, never a write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from meter.errors import DataError

log = logging.getLogger("agenttally.collector.webhooks")

SECRET_ENV = "ANTHROPIC_WEBHOOK_SECRET"
TOLERANCE_S = 300
MAX_BODY = 1 << 20


class WebhookVerificationError(DataError):
    """The request is not a genuine, fresh webhook; the message says which check failed."""


def _key(secret: str) -> bytes:
    text = secret.strip()
    if text.startswith("whsec_"):
        text = text[len("whsec_"):]
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError(
            f"{SECRET_ENV}: expected 'whsec_' followed by base64, as the Console shows it"
        ) from None
    if not key:
        raise WebhookVerificationError(f"{SECRET_ENV}: the secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for a body: `v1,<base64 HMAC-SHA256>`."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> dict:
    """The webhook's payload, once its id, timestamp and signature headers check out."""
    h = {k.lower(): v for k, v in headers.items()}
    missing = [n for n in ("webhook-id", "webhook-timestamp", "webhook-signature") if not h.get(n)]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    try:
        timestamp = int(h["webhook-timestamp"])
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp: expected integer seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp: {timestamp} is more than {tolerance_s} s from now "
            "(a replay, or this host's clock is off)"
        )
    expected = sign(secret, h["webhook-id"], timestamp, body).split(",", 1)[1]
    for candidate in h["webhook-signature"].split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            break
    else:
        raise WebhookVerificationError("webhook-signature: no v1 signature matches this body")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("body: not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationError("body: expected a JSON object")
    return payload


def session_of(payload: dict) -> str | None:
    """The session a webhook names (`data.id` of a `session.*` event), if any."""
    data = payload.get("data")
    if not isinstance(data, dict):
        return None
    sid = data.get("id")
    kind = str(data.get("type") or "")
    if isinstance(sid, str) and (sid.startswith("sesn_") or kind.startswith("session.")):
        return sid
    return None


def create_receiver(
    secret: str,
    on_session: Callable[[str], None],
    *,
    tolerance_s: int = TOLERANCE_S,
) -> Starlette:
    """An ASGI app accepting POSTed webhooks on any path; `on_session(id)` per genuine one."""
    _key(secret)  # fail at start-up, not at the first delivery
    seen: OrderedDict[str, None] = OrderedDict()

    async def receive(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        body = await request.body()
        try:
            payload = verify(secret, request.headers, body, tolerance_s=tolerance_s)
        except WebhookVerificationError as exc:
            log.warning("webhook rejected: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=401)
        msg_id = request.headers["webhook-id"]
        if msg_id in seen:  # retried delivery (same id): already handled
            return JSONResponse({"ok": True, "duplicate": True})
        seen[msg_id] = None
        if len(seen) > 10_000:
            seen.popitem(last=False)
        sid = session_of(payload)
        if sid:
            on_session(sid)
        return JSONResponse({"ok": True, "session_id": sid})

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the collector owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def start_server(app, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task, int]:
    """Serve `app` inside the running loop; returns the server, its task and the bound port."""
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets that say so, and
    # without it each response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                    lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    return server, task, sock.getsockname()[1]
