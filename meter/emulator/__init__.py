"""A local Managed Agents API emulator: the documented read endpoints over simulator output.

    from meter.emulator import EmulatorServer, Faults, Replay, create_app
    replay = Replay.from_path("day.jsonl", speed=600)          # 10 min of API time per second
    with EmulatorServer(create_app(replay, faults=Faults.parse("drop=50,429=7"))) as server:
        ...  # point the collector at server.url

Kept out of the collector's import path: the collector only ever sees it over HTTP.
"""

from meter.emulator.app import create_app
from meter.emulator.faults import Faults
from meter.emulator.replay import Replay, ReplayClock
from meter.emulator.sample import sample_day, write_jsonl
from meter.emulator.server import EmulatorServer, serve

__all__ = [
    "EmulatorServer",
    "Faults",
    "Replay",
    "ReplayClock",
    "create_app",
    "sample_day",
    "serve",
    "write_jsonl",
]
