"""The ingest parser under fuzz: no line crashes an ingest, and none is lost without a word.

Hypothesis draws JSONL files line by line: valid events of every type the parser knows (and
one it does not), session, agent and environment records, with random field values (token
counts up to 10^30 and below zero, times from year 1 to 9999 with and without a zone, unknown
speeds), then mutated (a field dropped, a value of the wrong type, a huge string), mixed with
lines that are not JSON objects, bytes that are not UTF-8 (NUL and control bytes included),
blank lines and repeated lines, over a small pool of session and event ids (so duplicates and
ids shared by sessions are common). Each file goes through `ingest_path` into a fresh store
file, twice. For every example:
- the ingest raises nothing;
- every line that is not blank is either accepted or quarantined, never both, never neither:
  quarantine holds the line as read (bad bytes as U+FFFD) with a reason, and every accepted
  event's (session_id, event_id) is in `events`, every accepted record's id in its table;
- the counts add up: lines = accepted + quarantined; new events = the distinct event keys
  accepted, duplicates = the other accepted event lines, records = the distinct records
  accepted (a record given twice in a file is one record, the later version kept), and the
  store holds no event that no accepted line gave;
- re-ingesting the file adds nothing: 0 new events, the same quarantine.
The oracle reads a line's type and ids with the same JSON-to-VARCHAR transform the parser
uses (an id written as a number is its text), in a DuckDB of its own.

25 files a run (~10 s: each ingest has a fixed cost of about 0.1 s); 500 passed by hand
(max_examples=500, ~4 min).
"""

from __future__ import annotations

import json
from collections import Counter

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter.ingest import STATUS_TYPES, THREAD_STATUS_TYPES, TOOL_USE_TYPES, ingest_path
from meter.store import connect

FIRST_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
NOV_2026 = 1_793_000_000_000
RECORD_TYPES = ("session", "agent", "environment")

SESSIONS = ["sesn_1", "sesn_2", "sesn_3"]
EVENT_IDS = ["sevt_1", "sevt_2", "sevt_3", "sevt_4", "sevt_5"]

# Counts: plausible ones, the bounds and just beyond, BIGINT's and UBIGINT's edges, negatives.
counts = st.one_of(
    st.integers(0, 10**6),
    st.sampled_from([0, 10**7, 10**7 + 1, 10**9, 10**9 + 1, 10**11, 10**11 + 1, 2**53 + 1,
                     2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -1, -(2**63)]),
)


@st.composite
def instants(draw: st.DrawFn) -> str:
    """An RFC 3339 text: mostly near November 2026, or anywhere from year 1 to 9999; with Z,
    an offset, or no zone at all; sometimes with microseconds."""
    from datetime import UTC, datetime, timedelta

    at_ms = draw(st.one_of(st.integers(NOV_2026, NOV_2026 + 40 * 86_400_000),
                           st.integers(FIRST_MS, LAST_MS)))
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=at_ms)
    text = when.strftime("%Y-%m-%dT%H:%M:%S") if when.year >= 1000 else (
        f"{when.year:04d}" + when.strftime("-%m-%dT%H:%M:%S"))
    text += draw(st.sampled_from(["", f".{when.microsecond // 1000:03d}",
                                  f".{when.microsecond:06d}"]))
    return text + draw(st.sampled_from(["Z", "Z", "Z", "+02:00", "-05:30", ""]))


def _event(kind: str, draw: st.DrawFn) -> dict[str, object]:
    return {"type": kind, "id": draw(st.sampled_from(EVENT_IDS)),
            "session_id": draw(st.sampled_from(SESSIONS)), "processed_at": draw(instants())}


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, object]:
    """An event or record of any type, with random values in each field."""
    kind = draw(st.sampled_from([
        *STATUS_TYPES, *THREAD_STATUS_TYPES, *TOOL_USE_TYPES, "span.model_request_end",
        "session.usage", "session.thread_created", "session.updated", "agent.message",
        *RECORD_TYPES]))
    speed = draw(st.sampled_from(["standard", "fast", "ludicrous", None]))
    if kind == "session":
        return {"type": "session", "id": draw(st.sampled_from(SESSIONS)),
                "created_at": draw(instants()), "updated_at": draw(instants()),
                "status": draw(st.sampled_from(["idle", "running", "terminated"])),
                "environment_id": "env_1", "metadata": {"team": draw(st.text(max_size=8))},
                "agent": {"id": "agent_1", "version": draw(counts), "name": "coder",
                          "model": {"id": "claude-opus-5", "speed": speed}}}
    if kind == "agent":
        return {"type": "agent", "id": "agent_1", "version": draw(counts), "name": "coder",
                "model": {"id": "claude-opus-5", "speed": speed},
                "updated_at": draw(instants())}
    if kind == "environment":
        return {"type": "environment", "id": "env_1", "name": draw(st.text(max_size=8)),
                "updated_at": draw(instants())}
    event = _event(kind, draw)
    if kind in THREAD_STATUS_TYPES or kind == "session.thread_created":
        event["session_thread_id"] = draw(st.sampled_from(["sthr_1", "sthr_2"]))
    if kind == "session.thread_created":
        event |= {"agent_name": "coder", "model": "claude-opus-5"}
    if kind == "span.model_request_end":
        event |= {"is_error": draw(st.booleans()), "model_usage": {
            "input_tokens": draw(counts), "output_tokens": draw(counts),
            "cache_creation_input_tokens": draw(counts), "cache_read_input_tokens": draw(counts),
            **({"speed": speed} if speed else {})}}
    if kind == "session.usage":
        event["usage"] = {
            "input_tokens": draw(counts), "output_tokens": draw(counts),
            "cache_read_input_tokens": draw(counts),
            "cache_creation": {"ephemeral_5m_input_tokens": draw(counts),
                               "ephemeral_1h_input_tokens": draw(counts)},
            "server_tool_use": {"web_search_requests": draw(counts),
                                "web_fetch_requests": draw(counts)},
            "active_seconds": draw(st.one_of(st.integers(0, 10**6), st.floats(0, 1e6))),
            "list_cost": {"amount": str(draw(counts)), "currency": "USD"}}
    if kind in TOOL_USE_TYPES:
        event["name"] = draw(st.sampled_from(["bash", "web_search", "x" * 300]))
    if kind in STATUS_TYPES and draw(st.booleans()):
        event["stop_reason"] = {"type": draw(st.sampled_from(["end_turn", "requires_action"]))}
    if kind == "session.updated":
        event |= {"metadata": {"team": "platform"}, "title": draw(st.text(max_size=20))}
    return event


wrong_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=20), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just("x" * 100_000))


def _paths(value: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a JSON object, nested ones included."""
    out: list[tuple[str, ...]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            out.append((*prefix, key))
            out.extend(_paths(inner, (*prefix, key)))
    return out


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, object]:
    """A valid event with one field dropped or given a value of the wrong type."""
    event = draw(valid_events())
    path = draw(st.sampled_from(_paths(event)))
    parent: dict[str, object] = event
    for key in path[:-1]:
        parent = parent[key]  # type: ignore[assignment]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(wrong_values)
    return event


def _line(event: dict[str, object]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


# Bytes of a line that is not JSON: anything but the line ends (\n, \r), at least one byte
# that is not blank.
junk = st.binary(min_size=1, max_size=60).map(
    lambda b: b"#" + b.replace(b"\n", b"").replace(b"\r", b""))
lines = st.one_of(
    valid_events().map(_line), valid_events().map(_line), mutated_events().map(_line), junk,
    st.sampled_from([b"", b"   ", b"{oops", b"[]", b"null", b"42", b'"text"', b"{}",
                     b'{"type": null}', b'{"type": "session.status_idle"}',
                     b"\xff\xfe\x00\x00", b'{"id": "\xc3\x28"}']),
    st.text(max_size=50).map(lambda t: json.dumps({"type": t, "id": "sevt_9",
                                                   "session_id": "sesn_9"}).encode()),
)


@st.composite
def files(draw: st.DrawFn) -> list[bytes]:
    """Lines, some of them repeated later in the file."""
    drawn = draw(st.lists(lines, min_size=1, max_size=60))
    repeats = draw(st.lists(st.integers(0, len(drawn) - 1), max_size=5))
    return drawn + [drawn[i] for i in repeats]


_KEYS = '{"type": "VARCHAR", "id": "VARCHAR", "session_id": "VARCHAR"}'


def _type_and_ids(texts: list[str]) -> list[tuple[str | None, str | None, str | None]]:
    """(type, id, session_id) of each line as the parser reads them (a JSON object's
    fields as VARCHAR)."""
    if not texts:
        return []
    oracle = duckdb.connect()
    oracle.execute("CREATE TABLE t (n INTEGER, line VARCHAR)")
    oracle.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(texts)))
    rows = oracle.execute(f"""
        SELECT k.type, k.id, k.session_id FROM (
            SELECT n, json_transform(line, '{_KEYS}') AS k FROM t) ORDER BY n""").fetchall()
    oracle.close()
    return [(r[0], r[1], r[2]) for r in rows]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(given_lines=files())
def test_every_line_is_stored_counted_as_a_duplicate_or_quarantined(tmp_path_factory,
                                                                     given_lines):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "events.jsonl"
    path.write_bytes(b"\n".join(given_lines) + b"\n")
    texts = [raw.decode("utf-8", errors="replace") for raw in given_lines]
    con = connect(folder / "store.duckdb")
    try:
        result = ingest_path(con, path)
        quarantined = dict(con.execute(
            "SELECT line_no, raw FROM quarantine WHERE source = ?", [str(path)]).fetchall())
        reasons = [r[0] for r in con.execute("SELECT error FROM quarantine").fetchall()]
        assert all(reasons)
        assert set(quarantined) <= set(range(1, len(texts) + 1))
        for line_no, raw in quarantined.items():
            assert raw == texts[line_no - 1], line_no

        accepted = [n for n in range(1, len(texts) + 1)
                    if n not in quarantined and texts[n - 1].strip()]
        skipped = [n for n in range(1, len(texts) + 1)
                   if n not in quarantined and n not in accepted]
        assert all(not texts[n - 1].strip() for n in skipped)  # only blank lines are skipped
        assert result.lines == len(accepted) + len(quarantined)
        assert result.quarantined == len(quarantined)

        keys = _type_and_ids([texts[n - 1] for n in accepted])
        records = {(kind, rid) for kind, rid, _ in keys if kind in RECORD_TYPES}
        event_lines = [(sid, eid) for kind, eid, sid in keys if kind not in RECORD_TYPES]
        events = set(event_lines)
        assert None not in {k for pair in events for k in pair}
        assert result.records == len(records)
        assert (result.new_events, result.duplicates) == (len(events),
                                                          len(event_lines) - len(events))
        stored = set(con.execute("SELECT session_id, event_id FROM events").fetchall())
        assert stored == events  # every accepted event stored; nothing else
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == len(events)
        for kind, rid in records:
            table = {"session": "sessions", "agent": "agents",
                     "environment": "environments"}[kind]
            id_column = {"session": "session_id", "agent": "agent_id",
                         "environment": "environment_id"}[kind]
            assert con.execute(f"SELECT count(*) FROM {table} WHERE {id_column} = ?",
                               [rid]).fetchall()[0][0] >= 1, (kind, rid)

        again = ingest_path(con, path)
        assert (again.new_events, again.duplicates) == (0, len(event_lines))
        assert (again.lines, again.quarantined) == (result.lines, result.quarantined)
        assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == len(
            quarantined)
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == len(events)
        assert Counter(r[0] for r in con.execute(
            "SELECT status FROM ingest_log").fetchall()) == {"finished": 2}
    finally:
        con.close()


def test_a_line_longer_than_duckdbs_csv_reader_takes_is_ingested_not_a_crash(tmp_path):
    """Found by this fuzz: a line over 2 MB stopped the file with DuckDB's CSV error (the
    line quoted in it); the forgiving reader now takes over from the first line not yet
    stored."""
    event = {"type": "session.status_running", "session_id": "sesn_1",
             "processed_at": "2026-11-03T09:00:00Z"}
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join([
        *(json.dumps({**event, "id": f"sevt_{i}"}) for i in range(15_000)),
        json.dumps({**event, "id": "sevt_long", "title": "x" * 3_000_000}),
        json.dumps({**event, "id": "sevt_after"}), "{oops"]) + "\n")
    con = connect(tmp_path / "store.duckdb")
    result = ingest_path(con, path)
    assert (result.lines, result.new_events, result.quarantined) == (15_003, 15_002, 1)
    assert con.execute("SELECT line_no FROM quarantine").fetchall() == [(15_003,)]
    con.close()
