"""The simulator's building blocks: a workload profile and the price books in, a `Simulation`
(meter.simulator) out, and the demo store the README, the dashboard and the tests start from.

This is where price books meet the simulator: `meter` may not import `pricing`, so the rates
the simulator needs (for `list_cost` and budgets) are built here from the books in force over
the simulated window and passed in as a plain `RateSchedule`; the simulator keeps no price of
its own. The engines load on first use (the CLI reads `profile_path` and `DEFAULT_BOOK` to
build its parser).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from meter.errors import UsageError
from meter.settings import shipped

if TYPE_CHECKING:
    import duckdb

    from meter.simulator import RateCard, RateSchedule, Simulation, TokenPrices, WriteResult
    from pricing.pricebook import PriceBook, TokenRates

__all__ = ["DEFAULT_BOOK", "DEMO_MAX_DAYS", "DEMO_PROFILE", "DEMO_START", "build_simulation",
           "card_from_book", "demo_window", "held_window", "profile_path", "schedule_for",
           "seed_demo", "simulate_into_lake"]

DEFAULT_BOOK = "anthropic-list"
DEMO_PROFILE = shipped("data/profiles/demo.toml")


def profile_path(name: str) -> Path:
    """A profile TOML: a path, or the name of a shipped one (demo, midsize, large, or a
    regime-change one: onboarding, migration, holiday, runaway)."""
    path = Path(name)
    if path.suffix != ".toml" and not path.exists():
        return shipped(f"data/profiles/{name}.toml")
    return path

def _prices(rates: TokenRates) -> TokenPrices:
    from meter.simulator import TokenPrices
    from pricing.pricebook import TOKEN_CLASSES
    return TokenPrices(*(rates.rate(c) for c in TOKEN_CLASSES))


def card_from_book(book: PriceBook) -> RateCard:
    """The simulator's view of a price book: rates by model id and alias."""
    from meter.simulator import ModelRates, RateCard
    models: dict[str, ModelRates] = {}
    for m in book.models:
        rates = ModelRates(
            standard=_prices(m.standard),
            fast=_prices(m.fast) if m.fast else None,
            long_context=_prices(m.long_context) if m.long_context else None,
            long_context_threshold=m.long_context.threshold_tokens if m.long_context else None,
            data_residency_multiplier=m.data_residency_multiplier,
        )
        for model_id in (m.id, *m.aliases):
            models[model_id] = rates
    return RateCard(
        usd_per_session_hour=book.runtime.usd_per_session_hour,
        usd_per_1000_searches=book.web_search.usd_per_1000,
        models=models,
        fast_mode_applies=book.modifiers.fast_mode_applies,
        data_residency_applies=book.modifiers.data_residency_applies,
        label=f"price book {book.name} {book.version}",
    )


def schedule_for(start_ms: int, end_ms: int, *, books: list[PriceBook] | None = None,
                 name: str = DEFAULT_BOOK) -> RateSchedule:
    """The books named `name` in force at some point of [start_ms, end_ms), as cards by the
    instant each takes effect (a window spanning two books gets both, split where they
    change)."""
    from meter.simulator import RateSchedule
    from pricing.pricebook import load_pricebooks
    books = load_pricebooks() if books is None else books
    chosen = [b for b in books if b.name == name
              and b.effective_from_ms < end_ms
              and (b.effective_to_ms is None or b.effective_to_ms > start_ms)]
    if not chosen:
        raise UsageError(
            f"no price book named {name!r} is in force between "
            f"{_day(start_ms)} and {_day(end_ms)}; see data/pricebooks/")
    chosen.sort(key=lambda b: b.effective_from_ms)
    return RateSchedule(tuple((b.effective_from_ms, card_from_book(b)) for b in chosen))


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def _window_ms(start: date, days: int) -> tuple[int, int]:
    begin = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
    return begin, begin + days * 86_400_000


def build_simulation(profile_path: str | Path, *, start: date, days: int, seed: int,
                     as_of_ms: int | None = None, book: str = DEFAULT_BOOK,
                     scale: float = 1.0, books: list[PriceBook] | None = None) -> Simulation:
    """A simulation of the profile at `profile_path`, priced (for `list_cost` and budgets) by
    the books named `book` among `books` (default: the shipped ones); `scale` multiplies
    every team's arrival rate."""
    from meter.simulator import Simulation, load_profile
    profile = load_profile(profile_path)
    begin, end = _window_ms(start, days)
    # Sessions created on the last day may run past the window: rate a week beyond it.
    schedule = schedule_for(begin, end + 7 * 86_400_000, books=books, name=book)
    return Simulation(profile, schedule, start=start, days=days, seed=seed, as_of_ms=as_of_ms,
                      scale=scale)


# The demo's first day: the README's examples and the shipped provider report are of its
# November (2026-10-02 + 60 days ends 2026-11-30). A day's events do not depend on how many
# days follow it, so a demo seeded from here up to any later day has that same November.
DEMO_START = date(2026, 10, 2)
DEMO_MAX_DAYS = 120


def demo_window(today: date) -> tuple[date, int]:
    """The demo's first day and length when seeded on `today`: from DEMO_START to today while
    that is 60 to DEMO_MAX_DAYS days (the README's November, whole, plus the days since), else
    the 60 days ending today."""
    days = (today - DEMO_START).days + 1
    if 60 <= days <= DEMO_MAX_DAYS:
        return DEMO_START, days
    return today - timedelta(days=59), 60


def seed_demo(con: duckdb.DuckDBPyConnection, *, days: int | None = None,
              end: date | None = None, seed: int = 7) -> WriteResult:
    """Fill an open store with the demo profile for the `days` days ending `end` (default:
    today, UTC), cut at the present instant so that nothing lies in the future. Without
    `days` and `end`, the window is `demo_window(today)`: the README's demo."""
    from meter.simulator import write_store
    now_ms = int(time.time() * 1000)
    if days is None and end is None:
        start, days = demo_window(datetime.now(UTC).date())
    else:
        days = 60 if days is None else days
        end = end or datetime.now(UTC).date()
        start = end - timedelta(days=days - 1)
    sim = build_simulation(DEMO_PROFILE, start=start, days=days, seed=seed, as_of_ms=now_ms)
    return write_store(con, sim)


def held_window(con: duckdb.DuckDBPyConnection) -> tuple[int, int] | None:
    """The first and last event time the store holds (None when it holds none)."""
    first, last = con.execute("SELECT min(at_ms), max(at_ms) FROM events").fetchall()[0]
    return None if first is None else (first, last)


def simulate_into_lake(directory: str | Path, sim: Simulation, *,
                       progress: Callable[[int], None] | None = None) -> tuple[WriteResult, int]:
    """The simulated fleet straight into a lake (meter.lake): built in a DuckDB in memory,
    never a store file, and written by UTC day in parallel; events already there are
    skipped. Returns what was simulated and how many events were skipped."""
    from meter.lake import EVENT_TABLES, export_lake
    from meter.simulator import write_store
    from meter.store import connect
    from pricing.pricebook import default_pricebook_dir

    con = connect(":memory:")
    try:
        result = write_store(con, sim, progress=progress)
        billed = sum(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                     for t in EVENT_TABLES)
        written = export_lake(con, directory, sorted(default_pricebook_dir().glob("*.toml")))
    finally:
        con.close()
    return result, max(0, billed - sum(written.rows.values()))
