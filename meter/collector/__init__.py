"""The live collector: follows the Managed Agents API into the store.

    from meter.collector import ApiClient, Collector, CollectorConfig, collect
    stats = collect("data/agenttally.duckdb", once=True)   # key from ANTHROPIC_API_KEY

`ApiClient` is the HTTP layer (auth, retries, rate limit, SSE); `Collector` decides what to
follow; `writer` batches what it receives into the store through `meter.ingest`; `webhooks`
verifies and receives webhook calls.
"""

from meter.collector.client import (
    ApiClient,
    ApiError,
    AuthenticationError,
    CollectorError,
    NotFoundError,
    RateLimiter,
    RetryPolicy,
)
from meter.collector.collector import Collector, collect
from meter.collector.state import CollectorConfig, CollectStats

__all__ = [
    "ApiClient",
    "ApiError",
    "AuthenticationError",
    "CollectStats",
    "Collector",
    "CollectorConfig",
    "CollectorError",
    "NotFoundError",
    "RateLimiter",
    "RetryPolicy",
    "collect",
]
