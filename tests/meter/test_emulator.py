"""The API emulator speaks the documented wire format: listings, cursors, filters, SSE, faults.

Every test talks to a real uvicorn server on 127.0.0.1 with httpx; the emulator's clock is
manual (speed 0) so that what is "emitted" is exact.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from meter.emulator import EmulatorServer, Faults, Replay, create_app, sample_day
from meter.vocabulary import iso_ms, parse_api_time

KEY = "sk-ant-emulator-test-key"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01",
           "anthropic-beta": "managed-agents-2026-04-01"}
LINES = sample_day(sessions=24)
EVENTS = [x for x in LINES if x["type"] != "session"]
RECORDS = {x["id"]: x for x in LINES if x["type"] == "session"}
END_MS = max(parse_api_time(e["processed_at"]) for e in EVENTS)


@pytest.fixture
def serve():
    """serve(speed=0, faults=None, **app_kwargs) -> (base url, replay); stopped at teardown."""
    servers = []

    def _serve(speed=0, faults=None, lines=LINES, **kwargs):
        replay = Replay.from_lines(lines, speed=speed)
        server = EmulatorServer(create_app(replay, api_key=KEY, faults=faults, **kwargs))
        servers.append(server.start())
        return server.url, replay

    yield _serve
    for server in servers:
        server.stop()


def _events_of(session_id: str, upto_ms: float = float("inf")) -> list[dict]:
    rows = [e for e in EVENTS if e["session_id"] == session_id
            and parse_api_time(e["processed_at"]) <= upto_ms]
    return sorted(rows, key=lambda e: parse_api_time(e["processed_at"]))


def _wire(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "session_id"}


def _walk(client: httpx.Client, path: str, params: dict) -> list[dict]:
    out, page = [], None
    for _ in range(100):
        body = client.get(path, params={**params, **({"page": page} if page else {})}).json()
        out += body["data"]
        page = body["next_page"]
        if not page:
            return out
    raise AssertionError("pagination did not end")


def test_requests_without_the_key_or_beta_header_are_refused(serve):
    url, _ = serve(speed=None)
    with httpx.Client(base_url=url) as client:
        assert client.get("/v1/sessions").status_code == 401
        wrong = client.get("/v1/sessions", headers={**HEADERS, "x-api-key": "sk-ant-nope"})
        assert wrong.status_code == 401
        assert wrong.json() == {"type": "error", "error": {
            "type": "authentication_error", "message": "invalid x-api-key"}}
        no_beta = {k: v for k, v in HEADERS.items() if k != "anthropic-beta"}
        resp = client.get("/v1/sessions", headers=no_beta)
        assert resp.status_code == 400
        assert "managed-agents-2026-04-01" in resp.json()["error"]["message"]


def test_session_listing_pages_through_every_session_in_both_orders(serve):
    url, _ = serve(speed=None)
    ordered = sorted(RECORDS.values(), key=lambda r: (parse_api_time(r["created_at"]), r["id"]))
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        desc = _walk(client, "/v1/sessions", {"limit": 5})
        asc = _walk(client, "/v1/sessions", {"limit": 7, "order": "asc"})
        first = client.get("/v1/sessions", params={"limit": 5}).json()
        second = client.get("/v1/sessions", params={"limit": 5,
                                                     "page": first["next_page"]}).json()
        back = client.get("/v1/sessions", params={"limit": 5,
                                                  "page": second["prev_page"]}).json()
        mixed = client.get("/v1/sessions", params={"order": "asc", "page": first["next_page"]})
    assert [s["id"] for s in asc] == [r["id"] for r in ordered]
    assert [s["id"] for s in desc] == [r["id"] for r in reversed(ordered)]
    assert first["prev_page"] is None
    assert [s["id"] for s in back["data"]] == [s["id"] for s in first["data"]]
    assert mixed.status_code == 400 and "order=desc" in mixed.json()["error"]["message"]
    assert asc[0] == ordered[0]  # after the replay, the record is served verbatim


def test_session_listing_filters_by_created_at_and_status(serve):
    url, _ = serve(speed=None)
    ordered = sorted(RECORDS.values(), key=lambda r: (parse_api_time(r["created_at"]), r["id"]))
    pivot = ordered[10]["created_at"]
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        gte = _walk(client, "/v1/sessions", {"created_at[gte]": pivot, "order": "asc"})
        gt = _walk(client, "/v1/sessions", {"created_at[gt]": pivot, "order": "asc"})
        lt = _walk(client, "/v1/sessions", {"created_at[lt]": pivot, "order": "asc"})
        term = _walk(client, "/v1/sessions", {"statuses[]": "terminated"})
        bad = client.get("/v1/sessions", params={"created_at[gt]": "yesterday"})
    assert [s["id"] for s in gte] == [r["id"] for r in ordered[10:]]
    assert [s["id"] for s in gt] == [r["id"] for r in ordered[11:]]
    assert [s["id"] for s in lt] == [r["id"] for r in ordered[:10]]
    assert {s["id"] for s in term} == {r["id"] for r in RECORDS.values()
                                      if r["status"] == "terminated"}
    assert bad.status_code == 400


def test_events_listing_shows_only_emitted_events_with_filters_and_cursors(serve):
    url, replay = serve(speed=0)
    sid = max(RECORDS, key=lambda s: len(_events_of(s)))
    everything = _events_of(sid)
    middle = parse_api_time(everything[len(everything) // 2]["processed_at"])
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        client.get("/v1/sessions")
        replay.clock.set(middle)
        paged = _walk(client, f"/v1/sessions/{sid}/events", {"limit": 3})
        assert paged == [_wire(e) for e in _events_of(sid, middle)]
        replay.clock.set(END_MS)
        at = everything[5]["processed_at"]
        gt = _walk(client, f"/v1/sessions/{sid}/events", {"created_at[gt]": at})
        gte = _walk(client, f"/v1/sessions/{sid}/events", {"created_at[gte]": at})
        lte = _walk(client, f"/v1/sessions/{sid}/events", {"created_at[lte]": at})
        typed = client.get(f"/v1/sessions/{sid}/events", params=[
            ("types[]", "session.status_idle"), ("types[]", "session.usage")]).json()
        desc = _walk(client, f"/v1/sessions/{sid}/events", {"order": "desc", "limit": 4})
    at_ms = parse_api_time(at)
    assert gt == [_wire(e) for e in everything if parse_api_time(e["processed_at"]) > at_ms]
    assert gte == [_wire(e) for e in everything if parse_api_time(e["processed_at"]) >= at_ms]
    assert lte == [_wire(e) for e in everything if parse_api_time(e["processed_at"]) <= at_ms]
    assert [e["type"] for e in typed["data"]] == [
        e["type"] for e in everything if e["type"] in ("session.status_idle", "session.usage")]
    assert desc == [_wire(e) for e in reversed(everything)]
    assert all("session_id" not in e for e in paged)


def test_session_object_follows_the_emitted_status_then_the_final_record(serve):
    url, replay = serve(speed=0)
    sid = next(s for s, r in RECORDS.items() if r["status"] == "terminated")
    events = _events_of(sid)
    running = next(e for e in events if e["type"] == "session.status_running")
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        replay.clock.set(parse_api_time(RECORDS[sid]["created_at"]) - 1)
        assert client.get(f"/v1/sessions/{sid}").status_code == 404
        replay.clock.set(parse_api_time(running["processed_at"]))
        mid = client.get(f"/v1/sessions/{sid}").json()
        replay.clock.set(END_MS)
        final = client.get(f"/v1/sessions/{sid}").json()
    assert mid["status"] == "running" and mid["updated_at"] == running["processed_at"]
    assert final == RECORDS[sid]


def test_stream_sends_only_events_emitted_after_connecting_then_pings(serve):
    url, replay = serve(speed=0, ping_interval_s=0.1)
    sid = max(RECORDS, key=lambda s: len(_events_of(s)))
    events = _events_of(sid)
    t1 = parse_api_time(events[3]["processed_at"])
    t2 = parse_api_time(events[-4]["processed_at"])
    expected = [e for e in events if t1 < parse_api_time(e["processed_at"]) <= t2]
    frames: list[tuple[str, str]] = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=5) as client:
        replay.clock.start()
        replay.clock.set(t1)
        with client.stream("GET", f"/v1/sessions/{sid}/events/stream") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            replay.clock.set(t2)
            name, deadline = None, time.monotonic() + 5
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    frames.append((name, line[6:]))
                if name == "ping" and len(frames) > len(expected):
                    break
                assert time.monotonic() < deadline
    got = [(n, json.loads(d)) for n, d in frames if n != "ping"]
    assert got == [(e["type"], _wire(e)) for e in expected]
    assert frames[-1][0] == "ping"


def test_faults_answer_429_with_retry_after_500_and_duplicates(serve):
    url, _ = serve(speed=None, faults=Faults.parse("429=3,retry_after=2,500=5,dup=4"))
    sid = next(iter(RECORDS))
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        codes = [client.get(f"/v1/sessions/{sid}").status_code for _ in range(10)]
        limited = client.get(f"/v1/sessions/{sid}")  # request 11: 2nd... find a 429 below
        for _ in range(3):
            if limited.status_code == 429:
                break
            limited = client.get(f"/v1/sessions/{sid}")
        listing = None
        while listing is None or listing.status_code != 200:
            listing = client.get(f"/v1/sessions/{sid}/events")
    assert codes == [200, 200, 429, 200, 500, 429, 200, 200, 429, 500]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    ids = [e["id"] for e in listing.json()["data"]]
    assert len(ids) > len(set(ids)) and set(ids) == {e["id"] for e in _events_of(sid)}


def test_fault_specs_parse_and_refuse_unknown_names():
    faults = Faults.parse(["drop=50", "429=7,retry_after=0.5", "dup=10"])
    assert (faults.drop_every, faults.rate_limit_every, faults.retry_after_s,
            faults.duplicate_every) == (50, 7, 0.5, 10)
    with pytest.raises(ValueError, match="expected name=value"):
        Faults.parse("explode=1")
    with pytest.raises(ValueError, match="not a number"):
        Faults.parse("drop=often")


def test_iso_round_trip_keeps_milliseconds():
    assert iso_ms(parse_api_time("2026-11-03T09:00:00.123Z")) == "2026-11-03T09:00:00.123Z"
