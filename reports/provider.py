"""The provider's own numbers: the Admin API's cost report and messages usage report.

Read from files (one response page, or a JSON array of pages, as the API returns them) or
fetched over httpx with an Admin API key (`sk-ant-admin01-...`), then loaded into temp tables
for `reports.reconcile`. Shapes: shared/reference/managed-agents.md section 11.

- Cost report amounts are decimal strings in CENTS ("123.45" = $1.2345); they become exact USD.
- `cost_type` `session_usage` is the Managed Agents session-runtime charge (strongly implied by
  the docs, not stated).
- A bucket present with `results: []` means "nothing that day": the day is covered. A day with
  no bucket at all is not covered, and reconciliation says so instead of assuming zero.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import httpx
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meter.errors import DataError, UsageError

__all__ = ["ADMIN_KEY_ENV", "CostBucket", "ProviderData", "ProviderError", "UsageBucket",
           "fetch_reports", "load_into", "load_reports"]

API_URL = "https://api.anthropic.com"
ADMIN_KEY_ENV = "ANTHROPIC_ADMIN_KEY"
TOKEN_TYPES = ("uncached_input_tokens", "output_tokens", "cache_read_input_tokens",
               "cache_creation.ephemeral_5m_input_tokens",
               "cache_creation.ephemeral_1h_input_tokens")
_MAX_PAGES = 200
_ATTO = Decimal("1e-18")


class ProviderError(UsageError):
    """A provider report that cannot be read or fetched; the message says which and why."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CostResult(_Lenient):
    amount: Decimal = Field(allow_inf_nan=False)  # cents
    currency: str = "USD"
    cost_type: str | None = None
    description: str | None = None
    model: str | None = None
    token_type: str | None = None
    service_tier: str | None = None
    workspace_id: str | None = None


class CostBucket(_Lenient):
    starting_at: datetime
    ending_at: datetime
    results: list[CostResult] = Field(default_factory=list)


class CacheCreation(_Lenient):
    ephemeral_1h_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0


class ServerToolUse(_Lenient):
    web_search_requests: int = 0


class UsageResult(_Lenient):
    uncached_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreation = CacheCreation()
    output_tokens: int = 0
    server_tool_use: ServerToolUse = ServerToolUse()
    model: str | None = None
    workspace_id: str | None = None
    service_tier: str | None = None


class UsageBucket(_Lenient):
    starting_at: datetime
    ending_at: datetime
    results: list[UsageResult] = Field(default_factory=list)


class _CostPage(_Lenient):
    data: list[CostBucket]
    has_more: bool = False
    next_page: str | None = None


class _UsagePage(_Lenient):
    data: list[UsageBucket]
    has_more: bool = False
    next_page: str | None = None


@dataclass
class ProviderData:
    cost: list[CostBucket] = field(default_factory=list)
    usage: list[UsageBucket] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def extend(self, other: ProviderData) -> None:
        self.cost += other.cost
        self.usage += other.usage
        self.sources += other.sources


def _kind(pages: Sequence[dict[str, Any]]) -> str:
    """'cost' or 'usage', from the first result that says; all-empty pages count as cost."""
    for page in pages:
        for bucket in page.get("data") or []:
            for result in bucket.get("results") or []:
                if "amount" in result:
                    return "cost"
                if {"uncached_input_tokens", "output_tokens"} & set(result):
                    return "usage"
    return "cost"


def _loc(loc: Iterable[int | str]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


_Page = TypeVar("_Page", _CostPage, _UsagePage)


def _validate_page(model: type[_Page], page: dict[str, Any], at: list[int | str],
                   shown: str) -> _Page:
    """`page` read as `model`; else a ProviderError naming the first wrong field (`at`: where
    the page is in the file, empty for a file of one page)."""
    try:
        return model.model_validate(page)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _loc(at + list(first["loc"]))
        raise ProviderError(f"{shown}: {where}: {first['msg']}") from None


def _parse(pages: list[dict[str, Any]], shown: str) -> ProviderData:
    kind = _kind(pages)
    out = ProviderData(sources=[f"{shown} ({kind} report)"])
    for i, page in enumerate(pages):
        at: list[int | str] = [i] if len(pages) > 1 else []
        if kind == "cost":
            cost_page = _validate_page(_CostPage, page, at, shown)
            for bucket in cost_page.data:
                for r in bucket.results:
                    if r.currency != "USD":
                        raise ProviderError(f"{shown}: currency {r.currency!r}: only USD "
                                            "cost reports can be reconciled")
            out.cost += cost_page.data
        else:
            out.usage += _validate_page(_UsagePage, page, at, shown).data
    return out


def load_reports(paths: Iterable[str | os.PathLike[str]]) -> ProviderData:
    """Cost and usage report pages from JSON files; the kind of each file is told by its
    results (`amount` = cost report, token counts = usage report)."""
    out = ProviderData()
    for path in paths:
        shown = str(path)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=Decimal)
        except OSError as exc:
            raise ProviderError(f"{shown}: cannot read: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ProviderError(f"{shown}: not valid JSON: {exc}") from exc
        pages = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(p, dict) and "data" in p for p in pages):
            raise ProviderError(f"{shown}: expected an Admin API report page "
                                '({"data": [...], "has_more": ...}) or a list of them')
        out.extend(_parse(pages, shown))
    return out


def _get_pages(client: httpx.Client, path: str, params: list[tuple[str, str]]) -> list[dict]:
    pages: list[dict] = []
    page: str | None = None
    for _ in range(_MAX_PAGES):
        query = params + ([("page", page)] if page else [])
        # as a tuple: httpx reads it as it reads the list, and a tuple's type is covariant in
        # its pairs (a list[tuple[str, str]] is not a list of httpx's (str, primitive) pairs)
        response = client.get(path, params=tuple(query))
        if response.status_code != 200:
            raise DataError(f"GET {path}: HTTP {response.status_code}: "
                                f"{response.text[:200]}")
        body = response.json(parse_float=Decimal)
        pages.append(body)
        if not body.get("has_more"):
            return pages
        page = body.get("next_page")
    raise DataError(f"GET {path}: more than {_MAX_PAGES} pages; narrow the period")


def fetch_reports(
    admin_key: str,
    starting_at: datetime,
    ending_at: datetime,
    *,
    base_url: str = API_URL,
    transport: httpx.BaseTransport | None = None,
    save_to: str | os.PathLike[str] | None = None,
) -> ProviderData:
    """Both reports for [starting_at, ending_at) in daily buckets, every page.

    `save_to` keeps the raw cost pages as one JSON file that `load_reports` reads back, so a
    reconciliation can be re-run (and audited) without the key.
    """
    if not admin_key.startswith("sk-ant-admin"):
        raise ProviderError("the Usage & Cost Admin API needs an Admin API key "
                            "(sk-ant-admin01-...), not a regular API key")
    span = [("starting_at", starting_at.strftime("%Y-%m-%dT%H:%M:%SZ")),
            ("ending_at", ending_at.strftime("%Y-%m-%dT%H:%M:%SZ")), ("bucket_width", "1d"),
            ("limit", "31")]
    headers = {"x-api-key": admin_key, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=base_url, headers=headers, transport=transport,
                      timeout=60.0) as client:
        cost = _get_pages(client, "/v1/organizations/cost_report",
                          span + [("group_by[]", "workspace_id"), ("group_by[]", "description")])
        usage = _get_pages(client, "/v1/organizations/usage_report/messages",
                           span + [("group_by[]", "model"), ("group_by[]", "workspace_id")])
    if save_to:
        Path(save_to).write_text(json.dumps(cost, indent=1, default=str), encoding="utf-8")
    out = _parse(cost, f"{base_url} cost_report")
    usage_data = _UsagePage.model_validate({"data": [b for p in usage for b in p["data"]]})
    out.usage += usage_data.data
    out.sources.append(f"{base_url} usage_report/messages")
    return out


def _days(bucket: CostBucket | UsageBucket) -> list[date]:
    first = bucket.starting_at.date()
    last = max(first, (bucket.ending_at - timedelta(microseconds=1)).date())
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def load_into(con: duckdb.DuckDBPyConnection, data: ProviderData) -> None:
    """Temp tables provider_cost (USD), provider_usage (quantities, long form) and
    provider_days (kind, day): which days each report covers."""
    cost_rows = [(b.starting_at.date(), r.cost_type, r.model, r.token_type, r.service_tier,
                  r.description, r.workspace_id, r.amount.scaleb(-2).quantize(_ATTO))
                 for b in data.cost for r in b.results]
    # (day, meter, model, token type (None for web search), workspace, quantity)
    usage_rows: list[tuple[date, str, str | None, str | None, str | None, int]] = []
    for b in data.usage:
        for r in b.results:
            day = b.starting_at.date()
            counts = (r.uncached_input_tokens, r.output_tokens, r.cache_read_input_tokens,
                      r.cache_creation.ephemeral_5m_input_tokens,
                      r.cache_creation.ephemeral_1h_input_tokens)
            usage_rows += [(day, "tokens", r.model, t, r.workspace_id, n)
                           for t, n in zip(TOKEN_TYPES, counts, strict=True) if n]
            if r.server_tool_use.web_search_requests:
                usage_rows.append((day, "web_search", r.model, None, r.workspace_id,
                                   r.server_tool_use.web_search_requests))
    days = sorted({("cost", d) for b in data.cost for d in _days(b)}
                  | {("usage", d) for b in data.usage for d in _days(b)})

    def table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
        return pa.table([pa.array([r[i] for r in rows], f.type) for i, f in enumerate(schema)],
                        schema=schema)

    tables = {
        "provider_cost": table(cost_rows, pa.schema([
            ("day", pa.date32()), ("cost_type", pa.string()), ("model", pa.string()),
            ("token_type", pa.string()), ("service_tier", pa.string()),
            ("description", pa.string()), ("workspace_id", pa.string()),
            ("amount_usd", pa.decimal128(38, 18))])),
        "provider_usage": table(usage_rows, pa.schema([
            ("day", pa.date32()), ("cost_type", pa.string()), ("model", pa.string()),
            ("token_type", pa.string()), ("workspace_id", pa.string()),
            ("quantity", pa.int64())])),
        "provider_days": table(days, pa.schema([("kind", pa.string()), ("day", pa.date32())])),
    }
    for name, arrow in tables.items():
        con.register(f"_{name}", arrow)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _{name}")
        con.unregister(f"_{name}")
