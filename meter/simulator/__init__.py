"""The workload simulator: realistic Managed Agents fleets, seeded, fast.

A profile (``data/profiles/*.toml``) says who runs which agents how often; a
:class:`Simulation` turns it, with the rates passed in, into exactly the events and records
the API returns; the writers put them in a JSONL file or straight into the store.
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
    "load_profile",
    "parse_profile",
    "run_tag",
]
