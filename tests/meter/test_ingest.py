"""Ingest: idempotent, bulk, and every bad line quarantined with the field named."""

from __future__ import annotations

import gzip
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter.ingest import ingest_path
from meter.intervals import running_ms_by_session
from meter.store import connect
from tests.conftest import iso, ms, session_record, status

T0 = ms("2026-11-03T09:00:00.000Z")


def span(session_id, event_id, at, input_tokens=100, output_tokens=20, cache_write=0,
         cache_read=0, **extra):
    return {"session_id": session_id, "type": "span.model_request_end", "id": event_id,
            "processed_at": at, "is_error": False, "model_request_start_id": "sevt_x",
            "model_usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                            "cache_creation_input_tokens": cache_write,
                            "cache_read_input_tokens": cache_read, "speed": "standard"},
            **extra}


def usage(session_id, event_id, at, **fields):
    body = {"input_tokens": 5000, "output_tokens": 3200, "cache_read_input_tokens": 20000,
            "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 0},
            "list_cost": {"amount": "187", "currency": "USD"}, "active_seconds": 342.5,
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0}}
    body.update(fields)
    return {"session_id": session_id, "type": "session.usage", "id": event_id,
            "processed_at": at, "usage": body}


def test_each_billing_event_lands_in_its_typed_table(store, feed):
    result = feed([
        session_record("sesn_01"),
        status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running"),
        span("sesn_01", "sevt_02", "2026-11-03T09:00:01.000Z", 3571, 727, 0, 6656),
        usage("sesn_01", "sevt_03", "2026-11-03T09:00:02.000Z"),
        status("sesn_01", "sevt_04", "2026-11-03T09:00:02.001Z", "idle",
               stop_reason={"type": "end_turn"}),
        {"session_id": "sesn_01", "type": "agent.tool_use", "id": "sevt_05",
         "processed_at": "2026-11-03T09:00:01.500Z", "name": "bash", "input": {}},
        {"session_id": "sesn_01", "type": "agent.message", "id": "sevt_06",
         "processed_at": "2026-11-03T09:00:01.600Z", "content": [{"type": "text", "text": "hi"}]},
    ])
    assert (result.new_events, result.records, result.quarantined) == (6, 1, 0)
    assert store.sql("SELECT input_tokens, output_tokens, cache_write_tokens, cache_read_tokens "
                     "FROM model_requests").fetchall() == [(3571, 727, 0, 6656)]
    assert store.sql("SELECT input_tokens, cache_write_5m_tokens, web_search_requests, active_ms,"
                     " list_cost_cents FROM usage_snapshots").fetchall() == [
        (5000, 2000, 3, 342_500, 187)]
    assert store.sql("SELECT status, stop_reason FROM status_events ORDER BY at_ms").fetchall() == [
        ("running", None), ("idle", "end_turn")]
    assert store.sql("SELECT kind, name FROM tool_uses").fetchall() == [("builtin", "bash")]
    other = store.sql("SELECT type, payload->>'$.content[0].text' FROM other_events").fetchall()
    assert other == [("agent.message", "hi")]
    assert store.sql("SELECT model_id, metadata->>'$.team' FROM sessions").fetchall() == [
        ("claude-opus-5", "platform")]


def test_ingesting_the_same_file_twice_changes_nothing(store, tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [session_record("sesn_01"), "not json at all"] + [
        status("sesn_01", f"sevt_{i:03d}", iso(T0 + i * 1000), "running" if i % 2 else "idle")
        for i in range(50)]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    first = ingest_path(store, path)
    snapshot = {t: store.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                for t in ("events", "status_events", "quarantine", "sessions")}
    second = ingest_path(store, path)
    assert (first.new_events, first.duplicates, first.quarantined) == (50, 0, 1)
    assert (second.new_events, second.duplicates) == (0, 50)
    assert snapshot == {t: store.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                        for t in snapshot}
    assert store.execute("SELECT count(*) FROM ingest_log").fetchall()[0][0] == 2


def test_gzip_and_blank_lines_keep_true_line_numbers(store, tmp_path):
    path = tmp_path / "events.jsonl.gz"
    good = json.dumps(status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running"))
    with gzip.open(path, "wt") as f:
        f.write(good + "\n\n   \n{broken\n")
    result = ingest_path(store, path)
    assert (result.new_events, result.quarantined) == (1, 1)
    assert store.sql("SELECT line_no, error FROM quarantine").fetchall() == [
        (4, "not valid JSON")]


def test_line_numbers_are_exact_in_a_large_file(store, tmp_path):
    """Files are split by DuckDB in parallel; quarantine must still name the true line."""
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(1, 300_001):
            if i in (7, 123_457, 299_999):
                f.write(f'{{"broken line {i}"\n')
            else:
                f.write(json.dumps(status("sesn_01", f"sevt_{i:07d}", iso(T0 + i),
                                          "running")) + "\n")
    result = ingest_path(store, path, batch_lines=100_000)
    assert result.quarantined == 3
    assert store.sql("SELECT line_no, raw FROM quarantine ORDER BY line_no").fetchall() == [
        (n, f'{{"broken line {n}"') for n in (7, 123_457, 299_999)]


BAD_LINES = [
    ('{"type": "session.status_running"', "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got array"),
    ('{"id": "sevt_1", "session_id": "s", "processed_at": "2026-11-03T09:00:00Z"}',
     "event sevt_1: type: missing"),
    (json.dumps({"type": "session.status_idle", "session_id": "s",
                 "processed_at": "2026-11-03T09:00:00Z"}), "id: missing"),
    (json.dumps({"type": "session.status_idle", "id": "sevt_1",
                 "processed_at": "2026-11-03T09:00:00Z"}), "event sevt_1: session_id: missing"),
    (json.dumps({"type": "session.status_idle", "id": "sevt_1", "session_id": "s",
                 "processed_at": "yesterday"}),
     "event sevt_1: processed_at: not an RFC 3339 timestamp: yesterday"),
    (json.dumps({"type": "session.status_idle", "id": "sevt_1", "session_id": "s",
                 "processed_at": "2099-01-01T00:00:00.000Z"}),
     "event sevt_1: processed_at: lies in the future beyond the allowed skew: "
     "2099-01-01T00:00:00.000Z"),
    (json.dumps(span("s", "sevt_1", "2026-11-03T09:00:00Z", input_tokens=-5)),
     "event sevt_1: model_usage.input_tokens: must be >= 0, got -5"),
    (json.dumps(span("s", "sevt_1", "2026-11-03T09:00:00Z", output_tokens=3.5)),
     "event sevt_1: model_usage.output_tokens: expected an integer, got 3.5"),
    (json.dumps(span("s", "sevt_1", "2026-11-03T09:00:00Z", cache_read="many")),
     'event sevt_1: model_usage.cache_read_input_tokens: expected an integer, got "many"'),
    (json.dumps({**span("s", "sevt_1", "2026-11-03T09:00:00Z"), "model_usage": {}}),
     "event sevt_1: model_usage.input_tokens: missing"),
    (json.dumps(usage("s", "sevt_1", "2026-11-03T09:00:00Z",
                      cache_creation={"ephemeral_5m_input_tokens": 1})),
     "event sevt_1: usage.cache_creation.ephemeral_1h_input_tokens: missing"),
    (json.dumps(usage("s", "sevt_1", "2026-11-03T09:00:00Z",
                      list_cost={"amount": "1.87", "currency": "USD"})),
     "event sevt_1: usage.list_cost.amount: expected whole cents as a string, got 1.87"),
    (json.dumps(usage("s", "sevt_1", "2026-11-03T09:00:00Z", active_seconds=-1)),
     "event sevt_1: usage.active_seconds: expected a number >= 0, got -1"),
    (json.dumps({"type": "session.thread_created", "id": "sevt_1", "session_id": "s",
                 "processed_at": "2026-11-03T09:00:00Z"}),
     "event sevt_1: session_thread_id: missing"),
    (json.dumps(span("s", "sevt_1", "2026-11-03T09:00:00Z", input_tokens=2**63 - 1)),
     "event sevt_1: model_usage.input_tokens: 9223372036854775807 exceeds the plausible bound "
     "1000000000 (AGENTTALLY_MAX_REQUEST_TOKENS)"),
    (json.dumps(usage("s", "sevt_1", "2026-11-03T09:00:00Z", output_tokens=10**12)),
     "event sevt_1: usage.output_tokens: 1000000000000 exceeds the plausible bound "
     "100000000000 (AGENTTALLY_MAX_SESSION_TOKENS)"),
    (json.dumps(usage("s", "sevt_1", "2026-11-03T09:00:00Z",
                      server_tool_use={"web_search_requests": 10**8})),
     "event sevt_1: usage.server_tool_use.web_search_requests: 100000000 exceeds the "
     "plausible bound 10000000 (AGENTTALLY_MAX_WEB_REQUESTS)"),
    (json.dumps({**span("s", "sevt_1", "2026-11-03T09:00:00Z"),
                 "model_usage": {"input_tokens": 1, "output_tokens": 1,
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                 "speed": "warp"}}),
     "event sevt_1: model_usage.speed: unknown speed warp (expected standard or fast; it "
     "would be billed at a guess)"),
    (json.dumps({"type": "session.status_idle", "id": "sevt_1", "session_id": "s",
                 "processed_at": "2026-11-03T09:00:00"}),
     "event sevt_1: processed_at: no time zone (expected e.g. 2026-11-03T09:00:00Z, a zone is "
     "never guessed): 2026-11-03T09:00:00"),
    (json.dumps({"type": "session.status_idle", "id": "sevt_1", "session_id": "s",
                 "processed_at": "1850-01-01T00:00:00Z"}),
     "event sevt_1: processed_at: 1850-01-01T00:00:00Z is before the earliest plausible time "
     "1900-01-01T00:00:00.000Z (AGENTTALLY_EARLIEST_TIME)"),
    (json.dumps({"type": "session", "id": "sesn_1", "created_at": "2026-11-01 00:00:00"}),
     "session sesn_1: created_at: no time zone (expected e.g. 2026-11-03T09:00:00Z, a zone is "
     "never guessed): 2026-11-01 00:00:00"),
    (json.dumps({"type": "session", "id": "sesn_1"}), "session sesn_1: created_at: missing"),
    (json.dumps({"type": "session", "id": "sesn_1", "created_at": "2026-11-01T00:00:00Z",
                 "metadata": ["team"]}), "session sesn_1: metadata: expected an object"),
]


@pytest.mark.parametrize(("line", "error"), BAD_LINES, ids=[e for _, e in BAD_LINES])
def test_bad_line_is_quarantined_with_the_field_named(store, feed, line, error):
    result = feed(["", json.dumps(status("s", "sevt_ok", "2026-11-03T09:00:00Z", "idle")), line])
    assert (result.new_events, result.quarantined) == (1, 1)
    assert store.sql("SELECT source, line_no, raw, error FROM quarantine").fetchall() == [
        ("test.jsonl", 3, line, error)]


def test_unknown_event_types_are_stored_raw_never_rejected(store, feed):
    result = feed([{"session_id": "s", "type": "span.outcome_evaluation_end", "id": "sevt_1",
                    "processed_at": "2026-11-03T09:00:00Z", "result": "satisfied"},
                   {"session_id": "s", "type": "brand.new_type", "id": "sevt_2",
                    "processed_at": "2026-11-03T09:00:00Z"}])
    assert (result.new_events, result.quarantined) == (2, 0)
    assert store.execute("SELECT count(*) FROM other_events").fetchall()[0][0] == 2


def test_the_latest_session_record_wins_whatever_the_arrival_order(store, feed):
    newer = session_record("sesn_01", updated_at="2026-11-02T00:00:00Z",
                           metadata={"team": "search"})
    older = session_record("sesn_01", updated_at="2026-11-01T12:00:00Z",
                           metadata={"team": "platform"})
    feed([newer])
    feed([older])
    assert store.sql("SELECT metadata->>'$.team' FROM sessions").fetchall() == [("search",)]


def test_a_failed_batch_leaves_no_trace(tmp_path):
    """A crash mid-batch rolls the whole batch back: re-running finds nothing half-written."""
    con = connect(tmp_path / "s.duckdb")
    lines = [json.dumps(status("s", f"sevt_{i}", iso(T0 + i), "running")) for i in range(10)]
    con.execute("DROP TABLE usage_snapshots")  # the batch's usage insert will fail
    from meter.ingest import ingest_lines
    with pytest.raises(Exception, match="usage_snapshots"):
        ingest_lines(con, lines, source="crash.jsonl")
    assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM status_events").fetchall()[0][0] == 0


EVENTS = [status("sesn_a", f"sevt_a{i:02d}", iso(T0 + i * 997), "running" if i % 3 else "idle")
          for i in range(30)] + [
    status("sesn_b", f"sevt_b{i:02d}", iso(T0 + i * 1499), ("running", "idle", "running",
                                                           "rescheduling")[i % 4])
    for i in range(20)]


def _fingerprint(con, as_of):
    return sorted(running_ms_by_session(con, as_of).fetchall())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(0, len(EVENTS)),
       overlap=st.integers(0, 10))
def test_reingest_partial_overlap_and_shuffle_give_identical_results(tmp_path_factory, seed,
                                                                      cut, overlap):
    from meter.ingest import ingest_lines
    as_of = T0 + 3_600_000
    ref = connect(":memory:")
    ingest_lines(ref, [json.dumps(e) for e in EVENTS], source="ref")
    con = connect(":memory:")
    shuffled = EVENTS[:]
    random.Random(seed).shuffle(shuffled)
    first, second = shuffled[:cut], shuffled[max(0, cut - overlap):]
    ingest_lines(con, [json.dumps(e) for e in first], source="a")
    ingest_lines(con, [json.dumps(e) for e in second + first[:overlap]], source="b")
    assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == len(EVENTS)
    assert _fingerprint(con, as_of) == _fingerprint(ref, as_of)


@pytest.mark.parametrize(("n", "bad_at", "batch_lines"),
                         [(7, 4, 2), (7, 4, 1_000), (30_000, 25_000, 5_000)])
def test_invalid_utf8_mid_file_is_quarantined_and_nothing_is_read_twice(
        store, tmp_path, n, bad_at, batch_lines):
    """The file is streamed a batch at a time; bytes that are not UTF-8 switch to the
    forgiving reader where the stream stopped (in the large case, after batches were
    stored): the bad line is quarantined with its number, every good line is stored once."""
    path = tmp_path / "mixed.jsonl"
    start = ms("2026-11-03T09:00:00Z")
    lines = [json.dumps(status(f"s{i % 50}", f"e{i}", iso(start + i), "running")).encode()
             for i in range(n)]
    lines.insert(bad_at, b'{"type": "session.status_idle", "id": "bad\xff\xfe"}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = ingest_path(store, path, batch_lines=batch_lines)
    assert (result.lines, result.new_events, result.duplicates, result.quarantined) == \
        (n + 1, n, 0, 1)
    assert store.sql("SELECT line_no FROM quarantine").fetchall() == [(bad_at + 1,)]
    assert store.sql("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == \
        [(n, n)]


def test_a_duplicate_of_an_event_stored_long_ago_is_found(store, tmp_path):
    """The duplicate check covers the whole store, not the batch's days or latest rows: an
    event stored first, then buried under 300,000 later events (several row groups, several
    ingests), is still a duplicate when it arrives again, in a batch of new events, even
    with another processed_at (the event is its (session_id, event_id)); its id in another
    session is a new event, reported as a collision."""
    old = status("sesn_old", "sevt_old", iso(T0 - 90 * 86_400_000), "running")
    ingest_path_lines(store, tmp_path / "old.jsonl", [old])
    for part in range(3):
        ingest_path_lines(store, tmp_path / f"later{part}.jsonl", [
            status(f"sesn_{i % 97}", f"sevt_{part}_{i:06d}", iso(T0 + i), "running")
            for i in range(100_000)])
    again = [status("sesn_new", f"sevt_new_{i}", iso(T0 + 10**8 + i), "idle") for i in range(500)]
    again[250:250] = [old, {**old, "processed_at": iso(T0 + 10**9)},
                      {**old, "session_id": "sesn_other"}]
    result = ingest_path_lines(store, tmp_path / "again.jsonl", again)
    assert (result.new_events, result.duplicates, result.id_collisions) == (501, 2, 1)
    assert store.sql("SELECT count(*) FROM events WHERE event_id = 'sevt_old'").fetchall() == [
        (2,)]
    assert store.sql("SELECT at_ms FROM events WHERE event_id = 'sevt_old' "
                     "AND session_id = 'sesn_old'").fetchall() == [(T0 - 90 * 86_400_000,)]


def test_batches_share_a_transaction_unless_a_reader_waits(store, tmp_path):
    """Small batches of one file land in one transaction when nobody waits for the store:
    one ingest_log row with every line, the same store as batch by batch."""
    path = tmp_path / "f.jsonl"
    lines = [status(f"sesn_{i % 7}", f"sevt_{i:05d}", iso(T0 + i), "running")
             for i in range(25_000)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = ingest_path(store, path, batch_lines=10_000)
    assert (result.lines, result.new_events) == (25_000, 25_000)
    assert store.sql("SELECT lines, new_events, status FROM ingest_log").fetchall() == [
        (25_000, 25_000, "finished")]


def ingest_path_lines(store, path, events):
    path.write_text("\n".join(json.dumps(x) for x in events) + "\n")
    return ingest_path(store, path)
