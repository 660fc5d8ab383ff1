"""simulate into a store that already holds usage: the counts, and a warning when the window
overlaps it (issue 21: a second overlapping simulate doubled a month without a word)."""

from __future__ import annotations

from agenttally.cli import main

DAY = ["--profile", "demo", "--days", "1", "--start", "2026-11-02"]


def test_an_overlapping_window_of_new_usage_is_warned_about(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    assert main(["simulate", "--db", db, *DAY]) == 0
    first = capsys.readouterr()
    assert " new, 0 already stored" in first.out and "warning" not in first.err
    assert main(["simulate", "--db", db, *DAY, "--seed", "8"]) == 0  # another fleet, same day
    second = capsys.readouterr()
    assert "warning:" in second.err and "overlaps it" in second.err


def test_the_same_fleet_again_is_all_duplicates_and_no_warning(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    assert main(["simulate", "--db", db, *DAY]) == 0
    capsys.readouterr()
    assert main(["simulate", "--db", db, *DAY]) == 0
    again = capsys.readouterr()
    assert "\n  0 new," in again.out and "warning" not in again.err


def test_a_later_window_is_not_an_overlap(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    assert main(["simulate", "--db", db, *DAY]) == 0
    capsys.readouterr()
    assert main(["simulate", "--db", db, "--profile", "demo", "--days", "1",
                 "--start", "2026-11-10"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_late_arrivals_into_a_store_print_the_on_time_part_and_where_the_late_went(
        tmp_path, capsys):
    import re

    db, late = str(tmp_path / "s.duckdb"), str(tmp_path / "late.jsonl")
    argv = ["simulate", "--db", db, *DAY, "--scale", "0.2", "--late-share", "0.3",
            "--late-out", late]
    assert main(argv) == 0
    out = re.sub(r"in \d+\.\d s", "in X s", capsys.readouterr().out).splitlines()
    assert len(out) == 2
    assert re.fullmatch(rf"demo: \d+ sessions, [\d,]+ events on time \(2026-11-02 \+ 1 days, "
                        rf"seed 7\) -> {re.escape(db)} in X s", out[0])
    assert re.fullmatch(rf"  late: [\d,]+ events of \d+ sessions -> {re.escape(late)}, "
                        r"arriving 2026-11-0\dT\S+Z \.\. 2026-\d\d-\d\dT\S+Z", out[1])
    assert main(argv) == 0  # the same fleet again: its on-time events are all held
    again = capsys.readouterr().out.splitlines()
    on_time = re.search(r"sessions, ([\d,]+) events on time", out[0]).group(1)
    assert again[0] == f"  {on_time} events were already in the store and were skipped"


def test_late_flags_are_refused_naming_the_flag(tmp_path, capsys):
    base = ["simulate", "--out", str(tmp_path / "m.jsonl"), *DAY]
    assert main([*base, "--late-share", "0.1"]) == 2
    assert capsys.readouterr().err == ("agenttally simulate: --late-share needs --late-out "
                                       "FILE: where the late events go\n")
    assert main([*base, "--late-share", "0.1", "--late-delay-hours", "0",
                 "--late-out", str(tmp_path / "l")]) == 2
    assert capsys.readouterr().err == ("agenttally simulate: --late-delay-hours: 0.0 is not a "
                                       "delay; expected hours > 0, e.g. 24\n")
