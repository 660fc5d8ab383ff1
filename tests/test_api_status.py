"""agenttally.status: what a store holds, as a typed `StoreStatus` (the `status` verb only
renders it), on the tiny hand-checked store of tests/app."""

from __future__ import annotations

import pytest

import agenttally
from tests.app.conftest import build_tiny_store


def test_status_counts_the_tables_and_lists_the_ingests_and_the_last_rating(tmp_path):
    path = build_tiny_store(tmp_path / "tiny.duckdb")  # rated as of 2026-11-20, whole
    with agenttally.open_store(path, read_only=True) as store:
        status = agenttally.status(store)
    assert isinstance(status, agenttally.StoreStatus)
    assert status.path == path and status.size_bytes == path.stat().st_size > 0
    rating = status.last_rating
    assert rating is not None
    assert (agenttally.iso_ms(rating.as_of_ms), rating.kind, rating.sessions_rated) == (
        "2026-11-20T00:00:00.000Z", "full", 3)  # A, B and C; D has nothing to rate
    assert status.closed == []
    assert {k: status.counts[k] for k in ("events", "sessions", "quarantine", "ingest_log",
                                          "charges")} == {
        "events": 13, "sessions": 4, "quarantine": 1, "ingest_log": 2, "charges": 9}
    # newest first, each with its state
    assert [(r.source, r.state, r.lines, r.new_events, r.quarantined)
            for r in status.ingests] == [("broken.jsonl", "finished", 1, 0, 1),
                                         ("tiny.jsonl", "finished", 17, 13, 0)]
    assert all(isinstance(r, agenttally.IngestRunState) for r in status.ingests)


def test_status_of_a_store_never_rated_nor_closed_and_of_a_closed_month(tmp_path):
    path = build_tiny_store(tmp_path / "tiny.duckdb", rated=False)
    with agenttally.open_store(path, read_only=True) as store:
        status = agenttally.status(store, ingests=1)
    assert status.last_rating is None and status.counts["charges"] == 0
    assert [r.source for r in status.ingests] == ["broken.jsonl"]
    with agenttally.open_store(path) as store:
        agenttally.close(store, "2026-10", as_of="2026-11-20")
        status = agenttally.status(store)
    assert [str(p) for p in status.closed] == ["2026-10"]
    assert status.last_rating is not None and status.counts["billing_documents"] == 1


def test_status_of_a_missing_store_is_a_data_error(tmp_path):
    with pytest.raises(agenttally.DataError, match="no store here yet"):
        with agenttally.open_store(tmp_path / "none.duckdb", read_only=True):
            pass


def test_status_verb_renders_the_status(tmp_path, capsys):
    from agenttally.cli import main

    path = build_tiny_store(tmp_path / "tiny.duckdb")
    capsys.readouterr()  # (the rating's line)
    assert main(["status", "--db", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"store: {path} ({path.stat().st_size / 1e6:.1f} MB)"
    assert out[1].startswith("ledger: rated as of 2026-11-20T00:00:00.000Z (full, 3 sessions "
                             "in ") and out[1].endswith(" ms)")
    assert out[2] == "closed months: none"
    assert out[3:6] == ["table              rows", "-----------------  ----",
                        "agents                0"]
    rows = out[out.index("recent ingests:") + 3:]
    assert [r.split()[:2] for r in rows] == [["broken.jsonl", "finished"],
                                             ["tiny.jsonl", "finished"]]
