"""`agenttally serve`: a store ready to show (demo when empty, rated), then streamlit."""

from __future__ import annotations

import os

import pytest

from agenttally.cli import app as cli_app
from agenttally.cli import build_parser
from meter.store import connect
from tests.app.conftest import build_tiny_store


def counts(path) -> tuple[int, int, int]:
    con = connect(path, read_only=True)
    try:
        return con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM charges),"
                           " (SELECT count(*) FROM rating_runs)").fetchall()[0]
    finally:
        con.close()


def test_serve_rates_a_store_like_agenttally_rate(tmp_path):
    path = build_tiny_store(tmp_path / "s.duckdb", rated=False)
    assert counts(path)[1:] == (0, 0)
    cli_app.prepare_store(path, demo=True)
    events, charges, runs = counts(path)
    assert events > 0 and charges > 0 and runs == 1


def test_serve_leaves_an_empty_store_empty_without_the_demo(tmp_path):
    path = tmp_path / "new" / "s.duckdb"
    cli_app.prepare_store(path, demo=False)
    assert counts(path) == (0, 0, 0)


def test_serve_seeds_the_demo_into_an_empty_store(tmp_path):
    pytest.importorskip("agenttally.cli.simulate")
    path = tmp_path / "demo.duckdb"
    cli_app.prepare_store(path, demo_days=2)
    events, charges, runs = counts(path)
    assert events > 1000 and charges > 0 and runs == 1


def test_serve_execs_streamlit_on_localhost_with_the_store(tmp_path, monkeypatch):
    path = build_tiny_store(tmp_path / "s.duckdb")
    calls = {}
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: calls.update(argv=argv, env=env))
    monkeypatch.setattr(os, "chdir", lambda where: calls.update(cwd=where))
    args = build_parser().parse_args(["serve", "--db", str(path), "--port", "8765", "--no-rate"])
    assert args.func(args) == 0
    argv = calls["argv"]
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("app.py")
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.port") + 1] == "8765"
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert calls["env"]["AGENTTALLY_DB"] == str(path.resolve())
    assert calls["cwd"] == cli_app.APP.parent
