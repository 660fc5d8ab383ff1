"""agenttally.simulate: a profile in, events out (a file, a store, a lake), late arrivals
split off to their own file, as a typed `SimulationRun` (the `simulate` verb only renders
it)."""

from __future__ import annotations

import json
from datetime import date

import pytest

import agenttally
from agenttally._simulation import profile_path
from meter.simulator.late import LateArrivalsError

DAY = {"start": date(2026, 11, 1), "days": 1, "seed": 3, "scale": 0.2}
DEMO = profile_path("demo")


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_a_file_gets_every_event_and_the_run_says_what_was_simulated(tmp_path):
    run = agenttally.simulate(DEMO, out=tmp_path / "a.jsonl", **DAY)
    assert isinstance(run, agenttally.SimulationRun)
    assert (run.profile, run.kind, run.target) == ("demo", "file", str(tmp_path / "a.jsonl"))
    assert (agenttally.iso_ms(run.start_ms), agenttally.iso_ms(run.end_ms)) == (
        "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z")
    written = lines(tmp_path / "a.jsonl")
    assert run.events == sum(1 for x in written if "session_id" in x and x["type"] != "session")
    assert run.sessions == sum(1 for x in written if x["type"] == "session") > 0
    assert (run.duplicates, run.late, run.on_time_events) == (0, None, run.events)


def test_late_arrivals_go_to_their_own_file_in_order_of_arrival(tmp_path):
    everything = agenttally.simulate(DEMO, out=tmp_path / "all.jsonl", **DAY)
    run = agenttally.simulate(DEMO, out=tmp_path / "on-time.jsonl", late_share=0.3,
                              late_out=tmp_path / "late.jsonl", **DAY)
    split = run.late
    assert split is not None and split.late_events > 0 and split.late_sessions > 0
    late = lines(tmp_path / "late.jsonl")
    assert len(late) == split.late_events and run.events == everything.events
    assert len(lines(tmp_path / "on-time.jsonl")) + len(late) == \
        len(lines(tmp_path / "all.jsonl"))
    assert run.on_time_events == run.events - split.late_events
    assert run.late_out == tmp_path / "late.jsonl"
    assert split.first_arrival_ms is not None and split.last_arrival_ms is not None
    assert split.first_arrival_ms >= run.end_ms  # after the cut-off: the window's end


def test_late_arrivals_into_a_store_go_through_ingest_and_skip_what_it_holds(tmp_path):
    store = tmp_path / "s.duckdb"
    first = agenttally.simulate(DEMO, into=store, late_share=0.3,
                                late_out=tmp_path / "late1.jsonl", **DAY)
    again = agenttally.simulate(DEMO, db=store, late_share=0.3,
                                late_out=tmp_path / "late2.jsonl", **DAY)
    assert (first.kind, first.target, first.duplicates) == ("store", str(store), 0)
    assert again.duplicates == again.on_time_events > 0  # the same fleet again
    with agenttally.open_store(store, read_only=True) as opened:
        held = opened.connection.execute("SELECT count(*) FROM events").fetchall()[0][0]
    assert held == first.on_time_events


def test_a_store_says_when_the_window_overlaps_usage_it_held(tmp_path):
    store = tmp_path / "s.duckdb"
    first = agenttally.simulate(DEMO, into=store, **DAY)
    same = agenttally.simulate(DEMO, into=store, **DAY)
    other = agenttally.simulate(DEMO, into=store, **{**DAY, "seed": 4})
    assert first.overlap is None and first.duplicates == 0
    assert same.overlap is None and same.events == 0 and same.duplicates == first.events
    assert other.overlap is not None and other.events > 0
    assert first.start_ms <= other.overlap[0] <= other.overlap[1] < first.end_ms + 86_400_000


@pytest.mark.parametrize("kw, field", [
    ({"late_share": 0.3}, "late_out"),
    ({"late_share": 1.5, "late_out": "x"}, "share"),
    ({"late_share": 0.3, "late_delay_hours": 0, "late_out": "x"}, "median_delay_hours"),
])
def test_bad_late_arrivals_name_the_field(tmp_path, kw, field):
    with pytest.raises(LateArrivalsError) as refused:
        agenttally.simulate(DEMO, out=tmp_path / "m.jsonl", **DAY, **kw)
    assert refused.value.field == field and isinstance(refused.value, agenttally.UsageError)
    assert not (tmp_path / "m.jsonl").exists()  # refused before anything is written
