"""The ingest format as pydantic models: the readable specification of what a line may hold.

The bulk path (`meter.ingest`) applies the same rules set-wise in DuckDB, since validating a
million lines one object at a time would be the slowest part of the pipeline; the test
`tests/meter/test_event_models.py` feeds both the same lines and requires the same verdicts.
Everything not billed is still accepted: `OtherEvent` keeps it whole.

Beyond the shapes, every count and time has a plausibility bound (`Bounds`, configurable
through the settings in `meter.settings`): a line beyond one is quarantined with the field,
its value and the bound, so that no single line can make a sum overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

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

from meter.errors import UsageError
from meter.settings import SETTINGS, setting
from meter.vocabulary import VocabularyError, iso_ms, parse_instant

Count = Annotated[StrictInt, Field(ge=0)]
MAX_FUTURE = timedelta(days=1)

# The speeds a request or a model configuration may name; rating knows the rates of these
# only, so any other is quarantined rather than billed at standard rates.
KNOWN_SPEEDS = ("standard", "fast")
Speed = Literal["standard", "fast"]


@dataclass(frozen=True)
class Bounds:
    """Plausibility bounds at ingest: a line with a value beyond one is quarantined, naming
    the field, the value and the bound (and the setting that changes it).

    Why these keep every sum exact: a stored request count is at most `request_tokens`
    (10^9), so a sum of fewer than 9.2 x 10^9 request counts fits BIGINT (2^63 - 1 =
    9.22 x 10^18), and DuckDB sums BIGINT into HUGEINT (+-1.7 x 10^38) anyway. A stored
    snapshot counter is at most `session_tokens` (10^11) and never below an earlier one of
    its session (meter.ingest refuses a decrease), so a session's differences between
    snapshots are >= 0 and add up to its last snapshot, <= 10^11; a sum over fewer than
    9.2 x 10^7 such sessions fits BIGINT. Web requests likewise (10^7 each). Times lie
    between `earliest_ms` (1900) and now + the allowed skew: |epoch ms| < 10^13, so
    differences, and rating's packing of at_ms x 4, stay far from 2^63.
    """

    request_tokens: int = 10**9
    session_tokens: int = 10**11
    web_requests: int = 10**7
    earliest_ms: int = -2_208_988_800_000  # 1900-01-01T00:00:00Z

    @classmethod
    def from_settings(cls) -> Bounds:
        """The bounds as configured (AGENTTALLY_MAX_* and AGENTTALLY_EARLIEST_TIME), each
        unset one at its default; a malformed value is a UsageError naming the variable."""
        return cls(request_tokens=_count_setting("AGENTTALLY_MAX_REQUEST_TOKENS"),
                   session_tokens=_count_setting("AGENTTALLY_MAX_SESSION_TOKENS"),
                   web_requests=_count_setting("AGENTTALLY_MAX_WEB_REQUESTS"),
                   earliest_ms=_instant_setting("AGENTTALLY_EARLIEST_TIME"))


# No bound may come near BIGINT: a sum of a few of them must still fit (see Bounds).
_LARGEST_BOUND = 10**15


def _count_setting(variable: str) -> int:
    text = setting(variable) or SETTINGS[variable].default or ""
    value = text.strip().replace("_", "")
    if not value.isdigit() or not 0 < int(value) <= _LARGEST_BOUND:
        raise UsageError(f"{variable}={text!r}: expected a whole number from 1 to 10^15, "
                         f"e.g. {SETTINGS[variable].default}")
    return int(value)


def _instant_setting(variable: str) -> int:
    text = setting(variable) or SETTINGS[variable].default or ""
    try:
        return parse_instant(text)
    except VocabularyError as exc:
        raise UsageError(f"{variable}={text!r}: {exc}") from None


def _utc(value: datetime) -> datetime:
    """An aware time in UTC; a time without a zone is refused (it would be a guess)."""
    if value.tzinfo is None:
        raise ValueError("no time zone (expected e.g. 2026-11-03T09:00:00Z)")
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
    speed: Speed | None = None


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
    speed: Speed | None = None
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
_KNOWN_TYPES = {t for model in KNOWN for t in get_args(model.model_fields["type"].annotation)}


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
               max_future: timedelta = MAX_FUTURE, bounds: Bounds | None = None) -> Line:
    """Validate one line against the shapes and `bounds` (default: the default bounds);
    raises ValueError naming the field (pydantic's location)."""
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
    beyond = _beyond_bounds(line, bounds or Bounds())
    if beyond:
        raise ValueError(beyond)
    return line


def _beyond_bounds(line: Line, bounds: Bounds) -> str | None:
    """The first field of `line` beyond its plausibility bound, as the SQL path words it."""
    counts: list[tuple[str, int | None, int, str]] = []
    if isinstance(line, ModelRequestEnd):
        mu = line.model_usage
        counts = [(f"model_usage.{name}", getattr(mu, name), bounds.request_tokens,
                   "AGENTTALLY_MAX_REQUEST_TOKENS")
                  for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                               "cache_read_input_tokens")]
    elif isinstance(line, SessionUsageEvent):
        u = line.usage
        tools = u.server_tool_use or ServerToolUse()
        counts = [
            *[(f"usage.{name}", getattr(u, name), bounds.session_tokens,
               "AGENTTALLY_MAX_SESSION_TOKENS")
              for name in ("input_tokens", "output_tokens", "cache_read_input_tokens")],
            *[(f"usage.cache_creation.{name}", getattr(u.cache_creation, name),
               bounds.session_tokens, "AGENTTALLY_MAX_SESSION_TOKENS")
              for name in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")],
            *[(f"usage.server_tool_use.{name}", getattr(tools, name), bounds.web_requests,
               "AGENTTALLY_MAX_WEB_REQUESTS")
              for name in ("web_search_requests", "web_fetch_requests")],
        ]
    for label, value, bound, variable in counts:
        if value is not None and value > bound:
            return f"{label}: {value} exceeds the plausible bound {bound} ({variable})"
    for label in ("processed_at", "created_at", "updated_at"):
        moment = getattr(line, label, None)
        if isinstance(moment, datetime):
            at = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
            if at < bounds.earliest_ms:
                return (f"{label}: {moment.isoformat()} is before the earliest plausible time "
                        f"{iso_ms(bounds.earliest_ms)} (AGENTTALLY_EARLIEST_TIME)")
    return None
