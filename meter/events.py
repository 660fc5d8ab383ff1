"""The ingest format as pydantic models: the readable specification of what a line may hold.

The bulk path (`meter.ingest`) applies the same rules set-wise in DuckDB, since validating a
million lines one object at a time would be the slowest part of the pipeline; the test
`tests/meter/test_event_models.py` feeds both the same lines and requires the same verdicts.
Everything not billed is still accepted: `OtherEvent` keeps it whole.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

Count = Annotated[StrictInt, Field(ge=0)]
MAX_FUTURE = timedelta(days=1)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]


class _Lenient(BaseModel):
    """Unknown fields are kept (the API adds fields over time); ids may be given as numbers."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, frozen=True)


class StopReason(_Lenient):
    type: str


class _Event(_Lenient):
    id: Annotated[str, Field(min_length=1)]
    session_id: Annotated[str, Field(min_length=1)]
    processed_at: Timestamp
    session_thread_id: str | None = None

    @property
    def at_ms(self) -> int:
        return int(self.processed_at.timestamp() * 1000)


class StatusEvent(_Event):
    type: Literal[
        "session.status_running", "session.status_idle", "session.status_rescheduled",
        "session.status_terminated", "session.deleted",
    ]
    stop_reason: StopReason | None = None


class ThreadStatusEvent(_Event):
    type: Literal[
        "session.thread_status_running", "session.thread_status_idle",
        "session.thread_status_rescheduled", "session.thread_status_terminated",
    ]
    session_thread_id: Annotated[str, Field(min_length=1)]
    stop_reason: StopReason | None = None


class ModelUsage(_Lenient):
    """Per request. Classes are disjoint: input_tokens excludes cache reads and writes."""

    input_tokens: Count
    output_tokens: Count
    cache_creation_input_tokens: Count
    cache_read_input_tokens: Count
    speed: str | None = None


class ModelRequestEnd(_Event):
    type: Literal["span.model_request_end"]
    model_usage: ModelUsage
    is_error: bool | None = None


class CacheCreation(_Lenient):
    ephemeral_5m_input_tokens: Count
    ephemeral_1h_input_tokens: Count


class ServerToolUse(_Lenient):
    web_search_requests: Count = 0
    web_fetch_requests: Count = 0


class ListCost(_Lenient):
    amount: Annotated[str, Field(pattern=r"^[0-9]+$")]  # whole cents
    currency: str = "USD"


class SessionUsage(_Lenient):
    """Cumulative since the session began; the only place with the 5m/1h split and searches."""

    input_tokens: Count
    output_tokens: Count
    cache_read_input_tokens: Count
    cache_creation: CacheCreation
    server_tool_use: ServerToolUse | None = None
    active_seconds: Annotated[Decimal, Field(ge=0)] | None = None
    list_cost: ListCost | None = None


class SessionUsageEvent(_Event):
    type: Literal["session.usage"]
    usage: SessionUsage


class ThreadCreated(_Event):
    type: Literal["session.thread_created"]
    session_thread_id: Annotated[str, Field(min_length=1)]
    agent_name: str | None = None
    model: Any = None


class ToolUse(_Event):
    type: Literal["agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use"]
    name: str | None = None


class SessionUpdated(_Event):
    type: Literal["session.updated"]
    metadata: dict[str, Any] | None = None
    title: str | None = None


class ModelConfig(_Lenient):
    id: str
    speed: str | None = None
    inference_geo: str | None = None


class AgentSnapshot(_Lenient):
    id: str | None = None
    version: int | None = None
    name: str | None = None
    model: ModelConfig | str | None = None


class SessionRecord(_Lenient):
    """The session object as GET /v1/sessions/{id} returns it."""

    type: Literal["session"]
    id: Annotated[str, Field(min_length=1)]
    created_at: Timestamp
    updated_at: Timestamp | None = None
    status: str | None = None
    environment_id: str | None = None
    agent: AgentSnapshot | None = None
    metadata: dict[str, Any] | None = None


class AgentRecord(_Lenient):
    type: Literal["agent"]
    id: Annotated[str, Field(min_length=1)]
    model: ModelConfig | str | None = None
    metadata: dict[str, Any] | None = None


class EnvironmentRecord(_Lenient):
    type: Literal["environment"]
    id: Annotated[str, Field(min_length=1)]
    metadata: dict[str, Any] | None = None


KNOWN = (StatusEvent, ThreadStatusEvent, ModelRequestEnd, SessionUsageEvent, ThreadCreated,
         ToolUse, SessionUpdated, SessionRecord, AgentRecord, EnvironmentRecord)
_KNOWN_TYPES = {t for model in KNOWN for t in model.model_fields["type"].annotation.__args__}


class OtherEvent(_Event):
    """Any event type we do not bill on: validated for its envelope, stored whole."""

    type: str

    @model_validator(mode="after")
    def _not_a_known_type(self) -> OtherEvent:
        if self.type in _KNOWN_TYPES:
            raise ValueError(f"{self.type} must match its own model")
        return self


Known = Annotated[
    StatusEvent | ThreadStatusEvent | ModelRequestEnd | SessionUsageEvent | ThreadCreated
    | ToolUse | SessionUpdated | SessionRecord | AgentRecord | EnvironmentRecord,
    Field(discriminator="type"),
]
_KNOWN_ADAPTER: TypeAdapter[Any] = TypeAdapter(Known)

Line = Known | OtherEvent


def parse_line(text: str, *, now: datetime | None = None,
               max_future: timedelta = MAX_FUTURE) -> Line:
    """Validate one line; raises ValueError naming the field (pydantic's location)."""
    try:
        import json

        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("not valid JSON") from exc
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "type" not in data:
        raise ValueError("type: missing")
    try:
        if data["type"] in _KNOWN_TYPES:
            line = _KNOWN_ADAPTER.validate_python(data)
        else:
            line = OtherEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in _KNOWN_TYPES)
        raise ValueError(f"{where}: {first['msg']}") from exc
    moment = getattr(line, "processed_at", None)
    limit = (now or datetime.now(UTC)) + max_future
    if moment is not None and moment > limit:
        raise ValueError("processed_at: lies in the future beyond the allowed skew")
    return line
