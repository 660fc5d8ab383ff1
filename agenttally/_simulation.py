"""The simulator's building blocks: a workload profile and the price books in, a `Simulation`
(meter.simulator) out, and the demo store the README, the dashboard and the tests start from.

This is where price books meet the simulator: `meter` may not import `pricing`, so the rates
the simulator needs (for `list_cost` and budgets) are built here from the books in force over
the simulated window and passed in as a plain `RateSchedule`; the simulator keeps no price of
its own. The engines load on first use (the CLI reads `profile_path` and `DEFAULT_BOOK` to
build its parser).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from meter.errors import UsageError
from meter.settings import shipped

if TYPE_CHECKING:
    import duckdb

    from meter.simulator import RateCard, RateSchedule, Simulation, TokenPrices, WriteResult
    from meter.simulator.late import LateArrivals, LateSplit
    from pricing.pricebook import PriceBook, TokenRates

__all__ = ["DEFAULT_BOOK", "DEMO_MAX_DAYS", "DEMO_PROFILE", "DEMO_START", "SimulationRun",
           "build_simulation", "card_from_book", "demo_window", "held_window", "is_lake_path",
           "profile_path", "schedule_for", "seed_demo", "simulate", "simulate_into_lake",
           "write_simulation"]

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


def is_lake_path(path: str | Path) -> bool:
    """A target names a lake when it is a directory, or a new path without a file suffix
    (a store is a file: data/agenttally.duckdb)."""
    target = Path(path)
    return target.is_dir() or (not target.exists() and target.suffix == "")


@dataclass(frozen=True)
class SimulationRun:
    """What `simulate` wrote: the profile's name and the simulated window (epoch ms, end
    exclusive), where (`target`, `kind` file, store or lake), how many sessions
    and events were simulated (late ones included), how many events the target already held
    and skipped (`duplicates`; a lake's in `lake_skipped`), the event window a store already
    held when this one overlaps it (its usage adds to what is there), and with late
    arrivals what was held back for `late_out`."""

    profile: str
    start_ms: int
    end_ms: int
    target: str
    kind: str
    sessions: int
    events: int
    seconds: float = 0.0  # writing the events (the simulation runs as they are written)
    duplicates: int = 0
    lake_skipped: int = 0
    overlap: tuple[int, int] | None = None
    late: LateSplit | None = None
    late_out: Path | None = None

    @property
    def on_time_events(self) -> int:
        """The events written to the target: all, less the late ones."""
        return self.events - (self.late.late_events if self.late is not None else 0)


def simulate(profile: str | Path, *, start: date, days: int, seed: int = 7,
             as_of_ms: int | None = None, book: str = DEFAULT_BOOK, scale: float = 1.0,
             out: str | Path | None = None, into: str | Path | None = None,
             db: str | Path | None = None, late_share: float = 0.0,
             late_delay_hours: float = 24.0, late_out: str | Path | None = None,
             progress: Callable[[int], None] | None = None) -> SimulationRun:
    """Simulate the workload `profile` (a TOML file, see `profile_path`) for `days` days from
    `start` with `seed`, cut at `as_of_ms` when given, priced (list_cost, budgets) by the
    books named `book`, each team's sessions multiplied by `scale`; and write its events (see
    `write_simulation`). With a `late_share` of the sessions arriving late (median delay
    `late_delay_hours`, log-normal), their events after the cut-off go to `late_out`: a
    share out of 0..1, a delay <= 0 or no `late_out` raise `LateArrivalsError` naming the
    field (share, median_delay_hours, late_out)."""
    from meter.simulator.late import LateArrivals, LateArrivalsError

    sim = build_simulation(profile, start=start, days=days, seed=seed, as_of_ms=as_of_ms,
                           book=book, scale=scale)
    late = None
    if late_share:
        if late_out is None:
            raise LateArrivalsError("late_out", "is needed: the file the late events go to")
        late = LateArrivals(share=late_share, median_delay_hours=late_delay_hours, seed=seed)
    return write_simulation(sim, out=out, into=into, db=db, late=late, late_out=late_out,
                            progress=progress)


def write_simulation(sim: Simulation, *, out: str | Path | None = None,
                     into: str | Path | None = None, db: str | Path | None = None,
                     late: LateArrivals | None = None, late_out: str | Path | None = None,
                     progress: Callable[[int], None] | None = None) -> SimulationRun:
    """Write the simulated events: to the JSONL file `out`; else into `into`, a lake when it
    names one (`is_lake_path`) else a store; else into the store `db` (default
    $AGENTTALLY_DB, else data/agenttally.duckdb). Events a store or lake already holds are
    skipped. With `late` arrivals, the events arriving after the simulation's cut-off (its
    as-of, else its end) go to `late_out` in order of arrival, and the rest to the file or,
    through ingest, to the store (never a lake). `progress` is called once per simulated
    day."""
    began = time.perf_counter()
    run = _write(sim, out=out, into=into, db=db, late=late, late_out=late_out,
                 progress=progress)
    return replace(run, seconds=time.perf_counter() - began)


def _write(sim: Simulation, *, out: str | Path | None, into: str | Path | None,
           db: str | Path | None, late: LateArrivals | None, late_out: str | Path | None,
           progress: Callable[[int], None] | None) -> SimulationRun:
    from meter.simulator import write_jsonl, write_store
    from meter.store import default_db_path, open_store

    window = (sim.profile.name, sim.start_ms, sim.end_ms)
    if late is not None:
        if late_out is None:
            raise UsageError("late arrivals need a file for the late events (late_out)")
        return _write_late(sim, late, Path(late_out), out=out, store=into or db,
                           progress=progress)
    if out is not None:
        result = write_jsonl(out, sim, progress=progress)
        return SimulationRun(*window, str(out), "file", result.sessions, result.events)
    if into is not None and is_lake_path(into):
        result, skipped = simulate_into_lake(into, sim, progress=progress)
        return SimulationRun(*window, str(into), "lake", result.sessions, result.events,
                             duplicates=result.duplicates, lake_skipped=skipped)
    target = str(into or db or default_db_path())
    with open_store(target) as con:
        held = held_window(con)
        result = write_store(con, sim, progress=progress)
    overlaps = (held is not None and result.events > 0 and held[1] >= sim.start_ms
                and held[0] < sim.end_ms)
    return SimulationRun(*window, target, "store", result.sessions, result.events,
                         duplicates=result.duplicates, overlap=held if overlaps else None)


def _write_late(sim: Simulation, late: LateArrivals, late_out: Path, *,
                out: str | Path | None, store: str | Path | None,
                progress: Callable[[int], None] | None) -> SimulationRun:
    """Simulate with late arrivals (meter.simulator.late): the whole run to a scratch file,
    then what arrives by the cut-off to `out` or the store (through ingest), the rest to
    `late_out` in order of arrival."""
    from meter.ingest import ingest_lines
    from meter.simulator import write_jsonl
    from meter.simulator.late import LateSplit, split_late
    from meter.store import default_db_path, open_store

    cutoff = sim.as_of_ms if sim.as_of_ms is not None else sim.end_ms
    held: list[tuple[int, str]] = []
    split = LateSplit()
    duplicates = 0
    with tempfile.TemporaryDirectory() as scratch:
        whole = Path(scratch) / "all.jsonl"
        result = write_jsonl(whole, sim, progress=progress)
        with open(whole, encoding="utf-8") as lines:
            on_time = split_late(lines, late, cutoff, held, split)
            if out is not None:
                with open(out, "w", encoding="utf-8") as written:
                    written.writelines(on_time)
                target, kind = str(out), "file"
            else:
                target, kind = str(store or default_db_path()), "store"
                with open_store(target) as con:
                    stored = ingest_lines(con, (x.rstrip("\n") for x in on_time),
                                          source=f"simulate:{sim.profile.name}:late-split")
                duplicates = stored.duplicates
    held.sort(key=lambda pair: pair[0])
    with open(late_out, "w", encoding="utf-8") as written:
        written.writelines(line for _, line in held)
    return SimulationRun(sim.profile.name, sim.start_ms, sim.end_ms, target, kind,
                         result.sessions, result.events, duplicates=duplicates, late=split,
                         late_out=late_out)
