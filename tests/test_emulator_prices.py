"""The emulator's sample day prices its list_cost from the price books, never by itself."""

from __future__ import annotations

from agenttally._collection import sample_rates
from agenttally.cli import main
from meter.emulator import sample_day, write_jsonl


def test_the_sample_list_cost_is_the_books_and_agrees_with_the_rating(tmp_path, capsys):
    path = write_jsonl(sample_day(rates=sample_rates()), tmp_path / "day.jsonl")
    db = str(tmp_path / "s.duckdb")
    assert main(["ingest", str(path), "--db", db]) == 0
    capsys.readouterr()
    assert main(["check", "--db", db, "--as-of", "2026-11-04"]) == 0
    assert "0 sessions differ by more than $0.005 (24 compared" in capsys.readouterr().out


def test_without_rates_the_sample_carries_no_list_cost():
    usage = [line["usage"] for line in sample_day(sessions=6)
             if line.get("type") == "session.usage"]
    assert usage and not any("list_cost" in u for u in usage)
