"""Live collection and the local API emulator: the collector run with the ledger kept current
after each stored batch, and an emulator serving a file (or the built-in sample day) on a
replay clock, with the sample's list_cost priced from the books."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meter.errors import UsageError
from meter.vocabulary import parse_instant

if TYPE_CHECKING:
    import duckdb
    from starlette.applications import Starlette

    from meter.collector import Collector, CollectorConfig, CollectStats
    from meter.emulator import Faults, Replay
    from meter.simulator.rates import RateSchedule
    from pricing.pricebook import PriceBook

__all__ = ["Emulator", "collect", "emulator", "rate_after_flush", "sample_rates"]

_log = logging.getLogger("agenttally.collector")

SAMPLE_DAY = "2026-11-03"  # the built-in sample's day (meter.emulator.sample)


def rate_after_flush(db: str | Path | None, *, pricebooks: str | Path | None = None
                     ) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """What the collector runs after each stored batch: the ledger brought up to now (only
    what changed is rated), on the flush's own connection, so the dashboard shows current
    charges. The price books are read once, here."""
    from agenttally._billing import rate
    from agenttally._store import Store
    from meter.store import default_db_path
    from pricing.pricebook import default_pricebook_dir, load_pricebooks

    books: list[PriceBook] = load_pricebooks(pricebooks or default_pricebook_dir())
    path = Path(db) if db is not None else default_db_path()

    def after_flush(con: duckdb.DuckDBPyConnection) -> None:
        run = rate(Store(path=path, connection=con, read_only=False), pricebooks=books)
        _log.debug("rated %s: %d sessions (%s) in %d ms", run.as_of, run.sessions_rated,
                   run.kind, run.elapsed_ms)

    return after_flush


def collect(db: str | Path | None = None, *, base_url: str | None = None,
            config: CollectorConfig | None = None, once: bool = False,
            read_rpm: float | None = None, heartbeat_timeout_s: float = 60.0,
            webhook_listen: tuple[str, int] | None = None, webhook_secret: str | None = None,
            rate: bool = True, pricebooks: str | Path | None = None,
            on_start: Callable[[Collector], None] | None = None) -> CollectStats:
    """Collect sessions and events from the Managed Agents API at `base_url` into the store
    `db`: every session once (`once`), or live until SIGINT/SIGTERM. Unless `rate` is False,
    the ledger is brought up to date after each stored batch. Webhooks are received on
    `webhook_listen` (host, port) when given, signed with `webhook_secret` (required then)."""
    from meter.collector import collect as run_collector

    if webhook_listen is not None and not webhook_secret:
        raise UsageError("webhook_listen needs a webhook_secret (the whsec_... signing secret "
                         "from the Console)")
    return run_collector(
        db, base_url=base_url, config=config, once=once, read_rpm=read_rpm,
        heartbeat_timeout_s=heartbeat_timeout_s, webhook_listen=webhook_listen,
        webhook_secret=webhook_secret, on_start=on_start,
        after_flush=rate_after_flush(db, pricebooks=pricebooks) if rate else None)


def sample_rates() -> RateSchedule:
    """The price books' rates on the built-in sample day (its sessions' list_cost)."""
    from agenttally._simulation import schedule_for
    day = parse_instant(SAMPLE_DAY)
    return schedule_for(day, day + 86_400_000)


@dataclass(frozen=True)
class Emulator:
    """A local Managed Agents read API, ready to serve: what it replays and from where."""

    replay: Replay
    source: str  # the file, or "built-in sample day"
    app: Starlette

    def serve(self, host: str, port: int) -> None:
        """Serve until interrupted (the replay clock starts at the first request)."""
        from meter.emulator import serve
        serve(self.app, host, port)


def emulator(events: str | Path | None = None, *, speed: float | None = 1.0,
             faults: Faults | None = None, api_key: str | None = None,
             ping_interval_s: float = 10.0) -> Emulator:
    """An emulator replaying `events` (session records and events, one JSON per line), or the
    built-in sample day when None, at `speed` (None: everything already happened; 0: a manual
    clock), with `faults` injected; any non-empty x-api-key is accepted unless `api_key` is
    given. A file that does not exist is a UsageError naming it."""
    from meter.emulator import Replay, create_app, sample_day

    if events is None:
        replay = Replay.from_lines(sample_day(rates=sample_rates()), speed=speed)
        source = "built-in sample day"
    else:
        if not Path(events).is_file():
            raise UsageError(f"{events}: no such file")
        replay = Replay.from_path(str(events), speed=speed)
        source = str(events)
    app = create_app(replay, api_key=api_key, faults=faults, ping_interval_s=ping_interval_s)
    return Emulator(replay=replay, source=source, app=app)
