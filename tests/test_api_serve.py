"""agenttally.prepare_store: the store `agenttally serve` opens the dashboard on (created,
the demo seeded into an empty one, rated), as a typed `PreparedStore`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import agenttally
from tests.app.conftest import build_tiny_store


def counts(path) -> tuple[int, int, int]:
    with agenttally.open_store(path, read_only=True) as store:
        return store.connection.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM charges), "
            "(SELECT count(*) FROM rating_runs)").fetchall()[0]


def test_a_store_with_usage_is_rated_and_stored_not_seeded(tmp_path):
    path = build_tiny_store(tmp_path / "s.duckdb", rated=False)
    prepared = agenttally.prepare_store(path, on_seed=lambda first: 1 / 0)
    assert isinstance(prepared, agenttally.PreparedStore)
    assert (prepared.path, prepared.seeded_from, prepared.seeded_events) == (path, None, 0)
    assert prepared.run is not None and prepared.run.stored
    assert prepared.run.charge_lines == 9 and counts(path) == (13, 9, 1)


def test_an_empty_store_stays_empty_without_the_demo_and_is_not_rated(tmp_path):
    path = tmp_path / "new" / "s.duckdb"
    prepared = agenttally.prepare_store(path, demo=False)
    assert (prepared.seeded_from, prepared.run) == (None, None)
    assert counts(path) == (0, 0, 0)


def test_the_demo_is_seeded_into_an_empty_store_saying_so_first(tmp_path):
    path = tmp_path / "demo.duckdb"
    told = []
    prepared = agenttally.prepare_store(path, demo_days=2, rate=False,
                                        on_seed=lambda first: told.append(
                                            (first, path.exists())))
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert told == [(yesterday, True)] and prepared.seeded_from == yesterday
    events, charges, runs = counts(path)
    assert prepared.seeded_events == events > 1000 and prepared.seeded_sessions > 0
    assert (prepared.run, charges, runs) == (None, 0, 0)


def test_serve_prints_what_the_preparation_did(tmp_path, capsys):
    from agenttally.cli import app as cli_app

    path = build_tiny_store(tmp_path / "s.duckdb", rated=False)
    capsys.readouterr()
    cli_app.prepare_store(path, demo=True)
    out, err = capsys.readouterr()
    assert out.startswith("rated as of ") and out.endswith(": 9 charge lines, 0 unrated\n")
    assert err == ""
