"""The simulator's late-arrival knob: the same events, some of them held back to arrive late."""

from __future__ import annotations

import json

from agenttally.cli import main
from meter.simulator.late import LateArrivals
from meter.vocabulary import parse_api_time, parse_instant

ARGS = ["simulate", "--profile", "demo", "--start", "2026-10-28", "--days", "4", "--seed", "5"]
CUTOFF = parse_instant("2026-11-01")  # the end of the window


def _ids(path) -> list[str]:
    return [json.loads(line).get("id") for line in open(path)]


def test_late_sessions_are_held_back_whole_and_nothing_is_lost(tmp_path, capsys):
    everything, main_out, late_out = (tmp_path / n for n in ("all", "main", "late"))
    assert main([*ARGS, "--out", str(everything)]) == 0
    assert main([*ARGS, "--out", str(main_out), "--late-share", "0.3",
                 "--late-delay-hours", "12", "--late-out", str(late_out)]) == 0
    assert "late: " in capsys.readouterr().out
    on_time, late = _ids(main_out), _ids(late_out)
    assert late and sorted(on_time + late) == sorted(_ids(everything))
    knob = LateArrivals(share=0.3, median_delay_hours=12, seed=5)
    arrivals = []
    for line in open(late_out):
        event = json.loads(line)
        delay = knob.delay_ms(event["session_id"])
        assert delay is not None and event["type"] != "session"
        arrivals.append(parse_api_time(event["processed_at"]) + delay)
    assert min(arrivals) > CUTOFF and arrivals == sorted(arrivals)  # in order of arrival
    for line in open(main_out):  # on-time events of late sessions arrived by the cut-off
        event = json.loads(line)
        delay = knob.delay_ms(event.get("session_id", "")) if "processed_at" in event else None
        if delay is not None:
            assert parse_api_time(event["processed_at"]) + delay <= CUTOFF
    # the same seed picks the same sessions
    again = tmp_path / "late2"
    main([*ARGS, "--out", str(tmp_path / "main2"), "--late-share", "0.3",
          "--late-delay-hours", "12", "--late-out", str(again)])
    assert again.read_bytes() == late_out.read_bytes()


def test_late_share_needs_a_file_and_a_share(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "m"), "--late-share", "0.1"]) == 2
    assert "--late-share needs --late-out FILE" in capsys.readouterr().err
    assert main([*ARGS, "--out", str(tmp_path / "m"), "--late-share", "1.5",
                 "--late-out", str(tmp_path / "l")]) == 2
    assert "--late-share: 1.5 is not a share" in capsys.readouterr().err
