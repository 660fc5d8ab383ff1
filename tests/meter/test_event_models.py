"""The pydantic models (the readable spec) and the SQL validator (the fast path) agree."""

from __future__ import annotations

import json
import re

import pytest

from meter.events import ModelRequestEnd, SessionRecord, SessionUsageEvent, StatusEvent, parse_line
from meter.ingest import ingest_lines
from meter.store import connect
from tests.conftest import session_record, status
from tests.meter.test_ingest import BAD_LINES, span, usage

GOOD_LINES = [
    json.dumps(status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running")),
    json.dumps(span("sesn_01", "sevt_02", "2026-11-03T09:00:01.000Z", 3571, 727, 0, 6656)),
    json.dumps(usage("sesn_01", "sevt_03", "2026-11-03T09:00:02.000Z")),
    json.dumps(session_record("sesn_01")),
    json.dumps({"type": "agent", "id": "agent_01", "model": "claude-opus-5"}),
    json.dumps({"type": "environment", "id": "env_01", "name": "sandbox"}),
    json.dumps({"session_id": "sesn_01", "type": "agent.message", "id": "sevt_04",
                "processed_at": "2026-11-03T09:00:03.000Z", "content": []}),
    json.dumps({"session_id": "sesn_01", "type": "session.thread_created", "id": "sevt_05",
                "processed_at": "2026-11-03T09:00:03.000Z", "session_thread_id": "sthr_1",
                "agent_name": "researcher"}),
]


def test_models_parse_the_billing_events_with_their_types():
    assert isinstance(parse_line(GOOD_LINES[0]), StatusEvent)
    request = parse_line(GOOD_LINES[1])
    assert isinstance(request, ModelRequestEnd)
    assert request.model_usage.cache_read_input_tokens == 6656
    snapshot = parse_line(GOOD_LINES[2])
    assert isinstance(snapshot, SessionUsageEvent)
    assert snapshot.usage.cache_creation.ephemeral_5m_input_tokens == 2000
    assert isinstance(parse_line(GOOD_LINES[3]), SessionRecord)


@pytest.mark.parametrize("line", GOOD_LINES)
def test_good_lines_are_accepted_by_both(line):
    parse_line(line)
    con = connect(":memory:")
    assert ingest_lines(con, [line], source="t").quarantined == 0


@pytest.mark.parametrize(("line", "sql_error"), BAD_LINES, ids=[e for _, e in BAD_LINES])
def test_bad_lines_are_rejected_by_both_naming_the_same_field(line, sql_error):
    with pytest.raises(ValueError) as caught:
        parse_line(line)
    unprefixed = re.sub(r"^(event|session|agent|environment) \S+: ", "", sql_error)
    field = unprefixed.split(":")[0]
    model_field = str(caught.value).split(":")[0]
    if sql_error in ("not valid JSON",) or sql_error.startswith("expected a JSON object"):
        assert str(caught.value).startswith(sql_error.split(",")[0])
    else:
        assert model_field == field, (str(caught.value), sql_error)
