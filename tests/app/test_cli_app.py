"""`agenttally serve`: a store ready to show (demo when empty, rated), then streamlit."""

from __future__ import annotations

import os
import socket

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
    pytest.importorskip("agenttally._simulation")
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


def test_serve_on_a_busy_port_says_so_and_exits_2(tmp_path, capsys):
    from agenttally.cli import main

    path = tmp_path / "s.duckdb"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--db", str(path), "--port", str(port), "--no-demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"agenttally serve: --port {port}: 127.0.0.1:{port} is in use (another "
                   "dashboard?); pass --port N to use another port"]
    assert not path.exists()  # nothing seeded or rated before the check
    assert not cli_app.port_in_use("127.0.0.1", port)  # free again once closed


def test_sessions_verb_limits_filters_and_sorts(tiny_store, capsys):
    # tiny store: A (Nov 3, $0.745), B (Nov 5, $0.50), C (Oct 20, $1.08), D (Nov 6, no charge)
    from agenttally.cli import main

    def ids(*flags: str) -> tuple[list[str], str]:
        assert main(["sessions", "--db", str(tiny_store), "--as-of", "2026-11-20",
                     "--format", "csv", *flags]) == 0
        out, err = capsys.readouterr()
        return [line.split(",")[0] for line in out.splitlines()[1:]], err.strip()

    assert ids() == (["sesn_A", "sesn_B", "sesn_C", "sesn_D"], "")
    assert ids("--sort", "cost") == (["sesn_C", "sesn_A", "sesn_B", "sesn_D"], "")
    assert ids("--sort", "start", "--period", "2026-11") == (["sesn_D", "sesn_B", "sesn_A"], "")
    assert ids("--sort", "running", "--limit", "1") == (
        ["sesn_A"], "3 more sessions not shown (of 4); --limit N shows more, --limit 0 all")
    with pytest.raises(SystemExit) as stop:
        main(["sessions", "--db", str(tiny_store), "--limit", "-3"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "agenttally sessions: --limit: expected a whole number of rows (0 for all), "
        "e.g. 200, got '-3'")


def test_check_says_no_session_differs_rather_than_print_an_empty_table(tiny_store, capsys,
                                                                        monkeypatch):
    # The comparison itself is pricing.check's (tested there); here: two sessions compared,
    # none flagged.
    import pricing.check
    from agenttally.cli import main
    from agenttally.cli import pricing as cli_pricing

    monkeypatch.setattr(cli_pricing, "rate_store", lambda con, args, full=False: 0)
    monkeypatch.setattr(pricing.check, "list_cost_check", lambda con, as_of, tol: con.sql(
        "SELECT * FROM (VALUES ('sesn_A', 0, 0.75, 0.745, -0.005, false), "
        "('sesn_B', 0, 0.50, 0.50, 0.0, false)) t(session_id, snapshot_ms, provider_usd, "
        "engine_usd, difference_usd, flagged)"))
    assert main(["check", "--db", str(tiny_store)]) == 0
    assert capsys.readouterr().out.strip() == (
        "0 sessions differ by more than $0.005 (2 compared with the provider's list_cost)")
