"""The live collector against the emulator on 127.0.0.1: nothing lost, nothing doubled, no leak.

Real sockets throughout: the emulator runs under uvicorn in a thread, the collector uses its
own httpx client (and, for the kill -9 and SIGTERM restarts, runs as a separate process).
What the collector stores is compared, table by table, with the same JSONL ingested directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from meter.collector import ApiClient, AuthenticationError, Collector, CollectorConfig
from meter.collector.client import RateLimiter, RetryPolicy
from meter.collector.webhooks import WebhookVerificationError, sign, verify
from meter.emulator import EmulatorServer, Faults, Replay, create_app, sample_day, write_jsonl
from meter.ingest import ingest_path
from meter.store import open_store
from meter.vocabulary import parse_api_time
from tests.conftest import stored_tables as _tables

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-api03-collector-TEST-must-never-leak-0123456789"
DAY = sample_day(sessions=24, seed=11)
EVENT_IDS = {x["id"] for x in DAY if x["type"] != "session"}
N_EVENTS = len(EVENT_IDS)
START_MS = min(parse_api_time(x["created_at"]) for x in DAY if x["type"] == "session")
END_MS = max(parse_api_time(x["processed_at"]) for x in DAY if x["type"] != "session")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def day_file(tmp_path_factory) -> Path:
    return write_jsonl(DAY, tmp_path_factory.mktemp("day") / "day.jsonl")


@pytest.fixture(scope="module")
def direct(day_file, tmp_path_factory) -> dict:
    """The tables of the day ingested straight from the file: the reference."""
    db = tmp_path_factory.mktemp("direct") / "direct.duckdb"
    with open_store(db) as con:
        result = ingest_path(con, day_file)
    assert result.new_events == N_EVENTS and result.quarantined == 0
    return _tables(db)


@pytest.fixture
def emulator():
    """emulator(speed, faults=None, **kw) -> (server, replay); stopped at teardown."""
    servers = []

    def _start(speed, faults=None, **kwargs):
        replay = Replay.from_lines(DAY, speed=speed)
        kwargs.setdefault("ping_interval_s", 0.2)
        server = EmulatorServer(create_app(replay, api_key=KEY, faults=faults, **kwargs))
        servers.append(server.start())
        return server, replay

    yield _start
    for server in servers:
        server.stop()


def _stored_ids(db: Path) -> list[str]:
    with open_store(db, read_only=True) as con:
        return [r[0] for r in con.execute("SELECT event_id FROM events").fetchall()]


def _client(url: str, key: str = KEY) -> ApiClient:
    return ApiClient(url, api_key=key, read_rpm=60_000, heartbeat_timeout_s=1.0,
                     retry=RetryPolicy(base_s=0.05, cap_s=0.5))


def _config(**overrides) -> CollectorConfig:
    base = dict(poll_interval_s=0.1, sweep_interval_s=0.5, flush_interval_s=0.2)
    return CollectorConfig(**{**base, **overrides})


def _collect(url, db, *, until=None, timeout_s=20.0, once=False, after=None,
             after_flush=None, **overrides):
    """Run a collector in this thread until `until(collector)` holds (or `once` ends)."""

    async def main():
        async with _client(url) as client:
            collector = Collector(client, db, _config(**overrides), after_flush=after_flush)

            async def watch():
                deadline = time.monotonic() + timeout_s
                while not until(collector) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if after:
                    await after(collector)
                collector.stop()

            if not once:
                asyncio.get_running_loop().create_task(watch())
            return await collector.run(once=once)

    return asyncio.run(main())


@pytest.mark.slow
def test_a_day_collected_live_equals_the_day_ingested_directly(emulator, direct, tmp_path):
    """~4 s: the day is replayed in 3 s of wall time so that it is collected live; only 4
    streams for 24 sessions, so that followers must make room for each other."""
    server, replay = emulator(speed=(END_MS - START_MS) / 3000)  # the day in ~3 s
    db = tmp_path / "live.duckdb"

    async def settle(_):
        await asyncio.sleep(0.6)  # final session objects: one refetch + one flush

    # 4 streams for 24 sessions: new sessions are followed from birth, idle ones give way
    stats = _collect(server.url, db, until=lambda c: c.stats.stored >= N_EVENTS and replay.done,
                     after=settle, max_streams=4)
    assert stats.stored == N_EVENTS
    assert stats.from_stream > 0 and stats.streams_opened > 0  # live, not only back-filled
    assert stats.evictions > 0
    assert _tables(db) == direct


@pytest.mark.slow
def test_faults_and_restarts_lose_nothing_and_double_nothing(
    emulator, direct, tmp_path, caplog
):
    """Faults on every path, 6 streams for 24 sessions, a kill -9 and a SIGTERM mid-run, then
    a third run to the end.

    Slowest test here (~10 s): two collector processes start (imports) while the day replays.
    """
    faults = Faults.parse("drop=5,stall=9,429=11,retry_after=0.05,500=13,dup=6,slow=0.002")
    server, replay = emulator(speed=(END_MS - START_MS) / 8000, faults=faults, stall_s=5)
    db = tmp_path / "faults.duckdb"
    logs = []

    killed = _run_process(server.url, db, signal.SIGKILL, logs)
    assert killed.returncode == -signal.SIGKILL
    stopped = _run_process(server.url, db, signal.SIGTERM, logs)
    assert stopped.returncode == 0, logs[-1]
    assert "collector stopped" in logs[-1]
    before = len(_stored_ids(db))
    assert 0 < before < N_EVENTS, "the restarts should fall mid-run"

    caplog.set_level(logging.DEBUG)
    stats = _collect(server.url, db, timeout_s=25, max_streams=6,
                     until=lambda c: c.stats.stored >= N_EVENTS - before and replay.done,
                     after=lambda _: asyncio.sleep(0.6))
    ids = _stored_ids(db)
    assert len(ids) == N_EVENTS and set(ids) == EVENT_IDS  # zero lost, zero doubled
    assert _tables(db) == direct
    assert all(faults.injected[k] > 0 for k in ("429", "500", "drop", "abort", "stall", "dup"))
    with open_store(db, read_only=True) as con:
        refused = con.execute("SELECT sum(duplicates) FROM ingest_log").fetchone()[0]
    assert stats.skipped_duplicates + refused > 0  # duplicates did arrive, and were dropped

    logs.append(caplog.text)
    assert caplog.text and all(KEY not in text for text in logs)
    _assert_key_not_stored(db)


def _run_process(url: str, db: Path, sig: int, logs: list[str]) -> subprocess.CompletedProcess:
    """The CLI collector as its own process, sent `sig` right after its first stored batch."""
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "agenttally.cli.collect", "--db", str(db), "collect",
           "--base-url", url, "--poll-interval", "0.1", "--sweep-interval", "0.5",
           "--flush-interval", "0.2", "--heartbeat-timeout", "1", "--read-rpm", "60000",
           "--max-streams", "6", "-v"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 15
    try:
        while not any(re.search(r"flushed \d+ lines: [1-9][\d,]* new", x) for x in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.02)
    except BaseException:
        proc.kill()
        raise
    proc.send_signal(sig)
    proc.wait(timeout=15)
    reader.join(5)  # the reader owns stderr; communicate() would race it for lines
    out = proc.stdout.read()
    logs.append("".join(lines) + out)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, logs[-1])


def _assert_key_not_stored(db: Path) -> None:
    for path in db.parent.glob(db.name + "*"):
        assert KEY.encode() not in path.read_bytes(), path
    with open_store(db, read_only=True) as con:
        tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
        for table in tables:
            text = str(con.execute(f"SELECT * FROM {table}").fetchall())
            assert KEY not in text and "sk-ant" not in text, table


def test_once_back_fills_every_session_and_a_second_run_adds_nothing(
    emulator, direct, tmp_path
):
    server, _ = emulator(speed=None)  # instant: the whole day has happened
    db = tmp_path / "once.duckdb"
    first = _collect(server.url, db, once=True)
    assert (first.stored, first.quarantined) == (N_EVENTS, 0)
    assert _tables(db) == direct
    second = _collect(server.url, db, once=True)
    assert second.stored == 0
    terminated = sum(1 for x in DAY if x["type"] == "session" and x["status"] == "terminated")
    assert second.backfills == 24 - terminated  # finished sessions are not read again
    assert _tables(db) == direct


def test_a_rejected_key_stops_the_run_without_echoing_the_key(emulator, tmp_path, caplog):
    server, _ = emulator(speed=None)
    wrong = "sk-ant-api03-WRONG-key-that-must-not-be-echoed-999"
    caplog.set_level(logging.DEBUG)

    async def main():
        async with _client(server.url, key=wrong) as client:
            await Collector(client, tmp_path / "x.duckdb", _config()).run(once=True)

    with pytest.raises(AuthenticationError) as info:
        asyncio.run(main())
    assert info.value.status == 401 and "ANTHROPIC_API_KEY" in str(info.value)
    assert wrong not in str(info.value) and wrong not in caplog.text


def test_collector_refuses_to_start_without_a_key(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(Exception, match="ANTHROPIC_API_KEY is not set"):
        ApiClient("http://127.0.0.1:9")


def test_rate_limiter_keeps_any_minute_under_the_limit():
    async def burst(n):
        limiter = RateLimiter(per_minute=600)  # 10/s: a bucket of 10, refilled at 9.83/s
        t0 = time.monotonic()
        for _ in range(n):
            await limiter.acquire()
        return time.monotonic() - t0

    elapsed = asyncio.run(burst(20))
    assert 0.95 < elapsed < 3.0  # 10 at once, the next 10 at the refill rate (~1.02 s)


def test_webhook_signature_accepts_the_genuine_and_rejects_the_tampered():
    body = json.dumps({"type": "event", "id": "event_01", "created_at": "2026-11-03T09:00:00Z",
                       "data": {"type": "session.status_idled", "id": "sesn_01"}}).encode()
    now = 1_793_700_000
    headers = {"webhook-id": "msg_01", "webhook-timestamp": str(now),
               "webhook-signature": sign(SECRET, "msg_01", now, body)}
    assert verify(SECRET, headers, body, now=now)["data"]["id"] == "sesn_01"
    rotated = {**headers, "webhook-signature": "v1,b2xk " + headers["webhook-signature"]}
    assert verify(SECRET, rotated, body, now=now)["id"] == "event_01"
    cases = {
        "no v1 signature matches": (headers, body.replace(b"sesn_01", b"sesn_02")),
        "no v1 signature matches ": ({**headers, "webhook-id": "msg_02"}, body),
        "more than 300 s": (headers, body, now + 301),
        "missing header": ({"webhook-id": "msg_01"}, body),
    }
    for expected, (h, b, *at) in cases.items():
        with pytest.raises(WebhookVerificationError, match=expected.strip()):
            verify(SECRET, h, b, now=at[0] if at else now)
    forged = sign("whsec_" + "QUFB" * 8, "msg_01", now, body)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, {**headers, "webhook-signature": forged}, body, now=now)


def test_a_signed_webhook_makes_the_collector_fetch_that_session(emulator, tmp_path):
    server, _ = emulator(speed=None)
    db = tmp_path / "hook.duckdb"
    target = next(x["id"] for x in DAY if x["type"] == "session" and x["status"] == "terminated")
    wanted = {x["id"] for x in DAY if x.get("session_id") == target}
    answers = {}

    async def main():
        async with _client(server.url) as client:
            # `since` lies after the day: listings find nothing, only the webhook names a session
            collector = Collector(client, db, _config(since_ms=END_MS + 1),
                                  webhook_listen=("127.0.0.1", 0), webhook_secret=SECRET)
            run = asyncio.create_task(collector.run())
            while collector.webhook_port is None:
                await asyncio.sleep(0.02)
            hook = f"http://127.0.0.1:{collector.webhook_port}/webhooks"
            body = json.dumps({"type": "event", "id": "event_07", "data": {
                "type": "session.status_idled", "id": target}}).encode()
            ts = int(time.time())
            good = {"webhook-id": "msg_07", "webhook-timestamp": str(ts),
                    "webhook-signature": sign(SECRET, "msg_07", ts, body)}
            async with httpx.AsyncClient() as http:
                answers["tampered"] = (await http.post(hook, content=body.replace(b"event_07",
                                       b"event_08"), headers=good)).status_code
                answers["good"] = (await http.post(hook, content=body, headers=good)).status_code
            deadline = time.monotonic() + 10
            while collector.stats.stored < len(wanted) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            collector.stop()
            return await run

    stats = asyncio.run(main())
    assert answers == {"tampered": 401, "good": 200}
    assert stats.stored == len(wanted) and set(_stored_ids(db)) == wanted
    with open_store(db, read_only=True) as con:
        assert con.execute("SELECT session_id FROM sessions").fetchall() == [(target,)]


def test_the_collector_never_imports_the_emulator():
    code = ("import sys, meter.collector, meter.collector.webhooks; "
            "sys.exit(any(m.startswith('meter.emulator') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0


def test_sse_frames_parse_across_chunk_boundaries_and_line_endings():
    from meter.collector.client import _sse_frames

    wire = (b": comment\r\nevent: session.status_idle\r\ndata: {\"a\":\r\n"
            b"data: 1}\r\n\r\nevent: ping\ndata: {}\n\n\n"
            b"data: {\"type\":\"agent.message\"}\r\r"
            b"event: session.usage\ndata: {\"cut\"")  # cut off: never dispatched
    chunks = [wire[i:i + 5] for i in range(0, len(wire), 5)]

    async def body():
        for chunk in chunks:
            yield chunk

    async def frames():
        resp = httpx.Response(200, content=body())
        return [(f.event, f.data) async for f in _sse_frames(resp)]

    assert asyncio.run(frames()) == [
        ("session.status_idle", '{"a":\n1}'), ("ping", "{}"),
        ("message", '{"type":"agent.message"}')]


def test_cli_takes_db_before_or_after_the_verb_and_reads_since():
    import argparse

    from agenttally.cli.collect import parse_since, register

    parser = argparse.ArgumentParser(prog="agenttally")
    parser.add_argument("--db", default=None)
    register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["--db", "a.duckdb", "collect", "--once"]).db == "a.duckdb"
    assert parser.parse_args(["collect", "--db", "b.duckdb"]).db == "b.duckdb"
    args = parser.parse_args(["emulate", "--sample", "--speed", "instant", "--fault", "dup=3"])
    assert (args.speed, args.fault, args.port) == (None, ["dup=3"], 8765)
    assert parse_since("2026-11-01") == parse_api_time("2026-11-01T00:00:00.000Z")
    assert parse_since("2026-11-01T09:00:00Z") == parse_api_time("2026-11-01T09:00:00.000Z")
    assert parse_since("36h", now=1_000_000) == (1_000_000 - 36 * 3600) * 1000
    with pytest.raises(argparse.ArgumentTypeError, match="expected a date"):
        parse_since("last tuesday")


def test_the_collector_keeps_the_ledger_current_after_each_batch(emulator, tmp_path):
    """`agenttally collect` rates after every flush: only what changed, on the flush's own
    connection; the charges it leaves equal a full rating of what it stored."""
    from agenttally._collection import rate_after_flush
    from pricing.pricebook import load_pricebooks
    from pricing.rating import RatingOptions, rate

    server, replay = emulator(speed=(END_MS - START_MS) / 2000)  # the day in ~2 s, live
    db = tmp_path / "rated.duckdb"
    after_flush = rate_after_flush(db)
    stats = _collect(server.url, db, after_flush=after_flush,
                     until=lambda c: c.stats.stored >= N_EVENTS and replay.done)
    assert stats.stored == N_EVENTS and stats.flushes > 2
    with open_store(db) as con:
        runs = con.execute("SELECT kind, as_of_ms FROM rating_runs ORDER BY rated_ms").fetchall()
        assert len(runs) == stats.flushes
        assert runs[0][0] == "full" and {k for k, _ in runs[1:]} == {"incremental"}
        ledger = con.execute("SELECT * FROM main.charges ORDER BY ALL").fetchall()
        rate(con, load_pricebooks(), RatingOptions(as_of_ms=runs[-1][1]))
        assert ledger and ledger == con.execute(
            "SELECT * FROM temp.main.charges ORDER BY ALL").fetchall()


# --- credentials written into a URL -------------------------------------------------------

@pytest.mark.parametrize(("text", "clean"), [
    ("collector:https://user:sk-ant-secret-1@api.example.com/",
     "collector:https://[REDACTED]@api.example.com/"),
    ("GET http://tok3n@127.0.0.1:8/v1?api_key=abc&limit=2&X-Api-Key=q ok",
     "GET http://[REDACTED]@127.0.0.1:8/v1?api_key=[REDACTED]&limit=2&X-Api-Key=[REDACTED] ok"),
    ("URL('https://u:p@ss@gw.example/x#access_token=t&y=1')",
     "URL('https://[REDACTED]@gw.example/x#access_token=[REDACTED]&y=1')"),
    ("https://gw.example/?order=asc&signature=s1&password=pw",
     "https://gw.example/?order=asc&signature=[REDACTED]&password=[REDACTED]"),
    ("no URL here: api_key=abc", "no URL here: api_key=abc"),
])
def test_credentials_in_any_url_of_a_text_are_redacted(text, clean):
    from meter.collector.client import redact_urls

    assert redact_urls(text) == clean


def _requiring_query(app, pair: str):
    """`app` behind a gateway that answers 401 to any request whose query lacks `pair`."""
    refusal = json.dumps({"type": "error", "error": {"type": "authentication_error",
                                                     "message": "gateway: no api_key"}})

    async def gateway(scope, receive, send):
        if scope["type"] == "http" and pair not in scope["query_string"].decode().split("&"):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": refusal.encode()})
            return
        await app(scope, receive, send)

    return gateway


def test_a_base_url_carrying_credentials_is_used_without_them(tmp_path, caplog):
    """A key in the URL's userinfo and another in its query: the query still reaches the API
    (a gateway refuses any request without it) and the paths stay the API's, while no log
    record, no stored row and no repr carries either credential."""
    in_userinfo, in_query = "sk-ant-api03-in-the-userinfo-77", "query-token-never-shown-31"
    app = create_app(Replay.from_lines(DAY, speed=None), api_key=KEY)
    server = EmulatorServer(_requiring_query(app, f"api_key={in_query}")).start()
    host = server.url.removeprefix("http://")
    url = f"http://admin:{in_userinfo}@{host}/?api_key={in_query}"
    db = tmp_path / "url.duckdb"
    caplog.set_level(logging.DEBUG)

    async def main():
        async with _client(url) as client:
            logging.getLogger("agenttally.collector").info("collecting from %s", url)
            assert in_query not in repr(client) and in_userinfo not in repr(client)
            return await Collector(client, db, _config(source=f"collector:{url}")).run(once=True)

    try:
        stats = asyncio.run(main())
    finally:
        server.stop()
    assert stats.stored == N_EVENTS
    assert f"collecting from http://[REDACTED]@{host}/?api_key=[REDACTED]" in caplog.text
    assert "user:password@ part of the base URL" in caplog.text
    assert in_userinfo not in caplog.text and in_query not in caplog.text
    with open_store(db, read_only=True) as con:
        sources = {r[0] for r in con.execute("SELECT source FROM ingest_log").fetchall()}
    assert sources == {f"collector:http://[REDACTED]@{host}/?api_key=[REDACTED]"}
    for path in tmp_path.glob("url.duckdb*"):
        data = path.read_bytes()
        assert in_userinfo.encode() not in data and in_query.encode() not in data, path


def test_a_malformed_base_url_is_refused_without_its_credentials():
    from meter.collector import CollectorError

    with pytest.raises(CollectorError) as info:
        ApiClient("http://me:sk-ant-api03-secret-in-bad-url@host:port/", api_key=KEY)
    assert str(info.value) == ("base URL 'http://[REDACTED]@host:port/' is not a URL: "
                               "Invalid port: 'port'")
