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
