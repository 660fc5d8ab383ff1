"""The lake on the command line: export, simulate --into DIR, and the flags' contract (a
wrong combination is exit 2 with one line naming the flag). Spark itself runs in
tests/pricing/test_spark.py."""

from __future__ import annotations

import json

from agenttally.cli import main
from tests.conftest import session_record, span, status

EVENTS = [session_record("s1"),
          status("s1", "e1", "2026-11-03T09:00:00.000Z", "running"),
          span("s1", "e2", "2026-11-03T09:10:00.000Z", input=1_000, output=100),
          status("s1", "e3", "2026-11-03T10:00:00.000Z", "idle")]


def _store(tmp_path) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    db = str(tmp_path / "store.duckdb")
    assert main(["ingest", "--db", db, str(path)]) == 0
    return db


def test_lake_export_twice_adds_nothing_the_second_time(tmp_path, capsys):
    db = _store(tmp_path)
    assert main(["lake", "export", "--db", db, "--to", str(tmp_path / "lake")]) == 0
    first = capsys.readouterr().out
    assert "2 status_events, 1 model_requests" in first
    assert main(["lake", "export", "--db", db, "--to", str(tmp_path / "lake")]) == 0
    assert "0 status_events, 0 model_requests" in capsys.readouterr().out
    assert (tmp_path / "lake" / "pricebooks").is_dir()


def test_simulate_into_a_directory_writes_a_lake(tmp_path, capsys):
    lake = tmp_path / "lake"
    argv = ["simulate", "--profile", "demo", "--days", "1", "--start", "2026-11-02",
            "--into", str(lake)]
    assert main(argv) == 0
    assert (lake / "_lake.json").exists() and any((lake / "status_events").iterdir())
    capsys.readouterr()
    assert main(argv) == 0  # the same fleet again: every event is already there
    assert "were already in" in capsys.readouterr().out


def test_wrong_flag_combinations_are_exit_2_naming_the_flag(tmp_path, capsys):
    db = _store(tmp_path)
    lake = str(tmp_path / "lake")
    assert main(["lake", "export", "--db", db, "--to", lake]) == 0
    capsys.readouterr()
    cases = [(["rate", "--db", db, "--lake", lake], "--lake"),
             (["rate", "--db", db, "--engine", "spark"], "--engine spark needs --lake"),
             (["rate", "--db", db, "--master", "local[2]"], "--master"),
             (["rate", "--engine", "spark", "--lake", lake, "--full"], "--full"),
             (["invoice", "--lake", lake, "--period", "2026-11"], "not rated yet"),
             (["invoice", "--lake", str(tmp_path / "none"), "--period", "2026-11"],
              "no lake here")]
    for argv, said in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, (argv, err)
