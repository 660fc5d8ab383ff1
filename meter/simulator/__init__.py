"""The workload simulator: realistic Managed Agents fleets, seeded, fast.

A profile (``data/profiles/*.toml``) says who runs which agents how often; a
:class:`Simulation` turns it, with the rates passed in (``meter`` does not import
``pricing``), into exactly the records and events the API returns, day by day; the writers
put them in a JSONL file or straight into the store.

    sim = Simulation(load_profile("data/profiles/demo.toml"), rates,
                     start=date(2026, 10, 1), days=60, seed=7)
    write_jsonl("demo.jsonl", sim)        # or: write_store(con, sim)
"""

from meter.simulator.generate import Batch, Simulation, run_tag
from meter.simulator.profile import Profile, ProfileError, load_profile, parse_profile
from meter.simulator.rates import (
    ModelRates,
    RateCard,
    RateSchedule,
    TokenPrices,
    UnratedModelError,
)
from meter.simulator.writers import WriteResult, write_jsonl, write_store

__all__ = [
    "Batch",
    "ModelRates",
    "Profile",
    "ProfileError",
    "RateCard",
    "RateSchedule",
    "Simulation",
    "TokenPrices",
    "UnratedModelError",
    "WriteResult",
    "load_profile",
    "parse_profile",
    "run_tag",
    "write_jsonl",
    "write_store",
]
