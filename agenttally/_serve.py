"""The store the dashboard opens on: created when missing, seeded with the demo profile when it
holds no event, and rated, as `agenttally serve` prepares it before starting Streamlit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from agenttally._billing import rate as rate_store
from agenttally._simulation import demo_window, held_window, seed_demo
from agenttally._store import open_store
from pricing.ledger import RatingRun
from pricing.pricebook import PriceBook

__all__ = ["PreparedStore", "prepare_store"]


@dataclass(frozen=True)
class PreparedStore:
    """What `prepare_store` did: the demo days seeded (`seeded_from` None: none), how many
    sessions and events they held, and the rating run (None: not rated)."""

    path: Path
    seeded_from: date | None
    seeded_sessions: int
    seeded_events: int
    run: RatingRun | None


def prepare_store(path: str | Path | None = None, *, demo: bool = True,
                  demo_days: int | None = None, rate: bool = True,
                  pricebooks: str | Path | Sequence[PriceBook] | None = None,
                  on_seed: Callable[[date], None] | None = None) -> PreparedStore:
    """Open (creating) the store at `path` (default `$AGENTTALLY_DB`, else
    data/agenttally.duckdb); when it holds no event and `demo`, seed the demo profile (the
    `demo_days` days ending today, or by default the README's demo, see
    `agenttally._simulation.demo_window`), calling `on_seed` with the first day before the
    seconds of work; then, if `rate` and it holds events, bring its ledger up to date (stored,
    as `agenttally rate` does)."""
    with open_store(path) as store:
        con = store.connection
        held = held_window(con)
        seeded_from, sessions, events = None, 0, 0
        if held is None and demo:
            today = datetime.now(UTC).date()
            seeded_from = (today - timedelta(days=demo_days - 1) if demo_days
                           else demo_window(today)[0])
            if on_seed is not None:
                on_seed(seeded_from)
            seeded = seed_demo(con, days=demo_days)
            sessions, events = seeded.sessions, seeded.events
            held = held_window(con)
        run = rate_store(store, pricebooks=pricebooks) if rate and held is not None else None
        return PreparedStore(path=store.path, seeded_from=seeded_from, seeded_sessions=sessions,
                             seeded_events=events, run=run)
