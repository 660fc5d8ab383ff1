"""The CLI as a user meets it: exit codes, one clear error line, stable JSON."""

from __future__ import annotations

import json

import pytest

from agenttally.cli import main
from tests.conftest import session_record, status

EVENTS = [
    session_record("sesn_01", created_at="2026-11-03T08:00:00Z"),
    status("sesn_01", "sevt_01", "2026-11-03T09:00:00.000Z", "running"),
    {"session_id": "sesn_01", "type": "session.usage", "id": "sevt_02",
     "processed_at": "2026-11-03T09:59:59.000Z",
     "usage": {"input_tokens": 50_000, "output_tokens": 15_000, "cache_read_input_tokens": 0,
               "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                  "ephemeral_1h_input_tokens": 0}}},
    status("sesn_01", "sevt_03", "2026-11-03T10:00:00.000Z", "idle"),
]


def _write(tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return str(path)


def _store(tmp_path, capsys, events=EVENTS) -> str:
    """A store holding `events`, its ingest's output read away."""
    db = str(tmp_path / "s.duckdb")
    main(["ingest", _write(tmp_path, events), "--db", db])
    capsys.readouterr()
    return db


def _sessions(db, as_of, capsys) -> list[str]:
    main(["sessions", "--db", db, "--as-of", as_of, "--format", "csv"])
    return capsys.readouterr().out.splitlines()


def test_ingest_prints_a_summary_and_strict_fails_on_quarantine(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    path = _write(tmp_path, EVENTS + ["{oops"])
    assert main(["ingest", path, "--db", db]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{path}: 5 lines: 3 new, 0 duplicate, 1 records, 1 quarantined"
    assert f"{path}:5: not valid JSON" in err
    assert main(["ingest", path, "--db", db, "--strict"]) == 1


def test_ingest_prints_event_id_collisions_as_warnings(tmp_path, capsys):
    db = _store(tmp_path, capsys)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(status("sesn_02", "sevt_01", "2026-11-03T09:30:00.000Z",
                                       "running")) + "\n")
    assert main(["ingest", str(other), "--db", db]) == 0
    out, err = capsys.readouterr()
    assert out == (f"{other}: 1 lines: 1 new, 0 duplicate, 0 records, 0 quarantined, "
                   "1 ids also used by another session\n")
    assert err == (f"  warning {other}:1: event sevt_01 of session sesn_02: the id is also used "
                   "by session sesn_01; kept as a separate event (events are identified by "
                   "session and id)\n")


def test_status_shows_each_ingest_state(tmp_path, capsys):
    """Finished, failed (with its message), interrupted (a run whose process died) and
    running (a live process), as meter.ingest.ingest_runs reads them."""
    import os
    import subprocess

    from meter.store import connect, this_host

    db = _store(tmp_path, capsys)
    gone = subprocess.Popen(["true"])
    gone.wait()
    con = connect(db)
    con.executemany(
        "INSERT INTO ingest_log (ingest_id, source, started_ms, finished_ms, lines, new_events, "
        "duplicates, records, quarantined, status, pid, host, error) "
        "VALUES (?, ?, 1793782800000, ?, 0, 0, 0, 0, 0, ?, ?, ?, ?)", [
            [2, "broken.jsonl", 1793782801000, "failed", 1, this_host(), "disk full"],
            [3, "killed.jsonl", None, "running", gone.pid, this_host(), None],
            [4, "live.jsonl", None, "running", os.getpid(), this_host(), None]])
    con.close()
    assert main(["status", "--db", db]) == 0
    out = capsys.readouterr().out
    table = out[out.index("recent ingests:"):].splitlines()
    assert table[1].split() == ["source", "state", "started", "finished", "lines", "new",
                                "duplicate", "quarantined"]
    assert [row.split()[:2] for row in table[3:7]] == [
        ["live.jsonl", "running"], ["killed.jsonl", "interrupted"], ["broken.jsonl", "failed"],
        [f"{tmp_path / 'events.jsonl'}", "finished"]]
    assert table[7:] == ["ingest 2 (broken.jsonl) failed: disk full"]


def test_invoice_json_is_the_documented_contract(tmp_path, capsys):
    db = _store(tmp_path, capsys)
    assert main(["invoice", "--db", db, "--period", "2026-11", "--as-of", "2026-11-04",
                 "--format", "json"]) == 0
    invoice = json.loads(capsys.readouterr().out)
    assert set(invoice) == {"period", "as_of", "currency", "provisional", "status", "lines",
                            "unrated", "total"}
    assert invoice["status"] == "open"
    assert invoice["total"] == "0.71"  # 0.08 + 0.25 + 0.375 -> 0.38 (half-even per line)
    assert [(ln["meter"], ln["token_class"], ln["amount"]) for ln in invoice["lines"]] == [
        ("runtime", None, "0.08"), ("tokens", "input", "0.25"), ("tokens", "output", "0.38")]
    assert set(invoice["lines"][0]) == {"meter", "model", "token_class", "tier", "quantity", "unit",
                                        "unit_price", "amount_exact", "amount", "charge_class",
                                        "corrects_period"}
    assert (invoice["lines"][0]["charge_class"], invoice["lines"][0]["corrects_period"]) == (
        "usage", None)


def test_sessions_lists_running_and_idle_ms(tmp_path, capsys):
    assert _sessions(_store(tmp_path, capsys), "2026-11-03T11:00:00Z", capsys) == [
        "session_id,team,project,model,status,running_ms,idle_ms,provisional",
        "sesn_01,platform,,claude-opus-5,idle,3600000,3600000,True",
    ]


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "missing.jsonl"), "--db",
                 str(tmp_path / "s.duckdb")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"agenttally ingest: {tmp_path / 'missing.jsonl'}: no such file"


def test_every_verb_has_help_with_an_example(capsys):
    import argparse

    import pytest

    from agenttally.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"ingest", "sessions", "rate", "invoice", "check", "simulate", "collect", "emulate",
            "chargeback", "export", "reconcile", "forecast", "budgets", "whatif",
            "serve"} <= set(verbs.choices)
    for name in verbs.choices:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0, name
        assert "example" in capsys.readouterr().out, name


# --- malformed periods and instants: exit 2, one line naming the flag, value and form ----------

@pytest.mark.parametrize(("argv", "line"), [
    (["invoice", "--period", "nov"],
     "agenttally invoice: --period: 'nov' is not a period; expected YYYY-MM, e.g. 2026-11"),
    (["chargeback", "--period", "nov"],
     "agenttally chargeback: --period: 'nov' is not a period; expected YYYY-MM, e.g. 2026-11"),
    (["invoice", "--period", "2026-13"],
     "agenttally invoice: --period: '2026-13' is not a period; expected YYYY-MM, e.g. 2026-11"),
    (["invoice", "--as-of", "yesterday"],
     "agenttally invoice: --as-of: 'yesterday' is not an instant; expected an RFC 3339 instant "
     "with a zone or a date, e.g. 2026-11-30T09:00:00Z or 2026-11-30"),
    (["sessions", "--as-of", "2026-11-30T10:00"],  # RFC 3339 needs a zone
     "agenttally sessions: --as-of: '2026-11-30T10:00' is not an instant; expected an RFC 3339 "
     "instant with a zone or a date, e.g. 2026-11-30T09:00:00Z or 2026-11-30"),
    (["whatif", "data/scenarios/identity.toml", "--period", "Q4"],
     "agenttally whatif: --period: 'Q4' is not a period; expected YYYY-MM, YYYY-Qn, YYYY or "
     "all, e.g. 2026-11 or 2026-Q4"),
    (["simulate", "--profile", "data/profiles/demo.toml", "--start", "2026-02-30"],
     "agenttally simulate: --start: '2026-02-30' is not a day; expected YYYY-MM-DD, "
     "e.g. 2026-10-01"),
    (["collect", "--once", "--since", "yesterday"],
     "agenttally collect: --since: 'yesterday' is not an instant or an age; expected a date, an "
     "RFC 3339 instant with a zone or an age in s, m, h or d, e.g. 2026-11-01, "
     "2026-11-01T09:00:00Z or 7d"),
])
def test_malformed_periods_and_instants_exit_2_with_one_line(tmp_path, capsys, argv, line):
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--db", str(tmp_path / "s.duckdb")])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", line + "\n")


def test_a_bare_date_is_midnight_utc_and_a_zone_is_honoured(tmp_path, capsys):
    db = _store(tmp_path, capsys)
    for as_of in ("2026-11-04", "2026-11-04T01:00:00+01:00"):
        assert main(["invoice", "--db", db, "--as-of", as_of, "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["as_of"] == "2026-11-04T00:00:00.000Z"


def test_a_period_without_usage_says_so_and_is_not_final(tmp_path, capsys):
    db = _store(tmp_path, capsys)
    assert main(["invoice", "--db", db, "--period", "2026-03", "--as-of", "2026-12-01"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "Invoice 2026-03  as of 2026-12-01T00:00:00.000Z  USD  no usage in 2026-03"
    assert main(["chargeback", "--db", db, "--period", "2026-03", "--as-of", "2026-12-01"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("no usage in 2026-03")
    assert main(["invoice", "--db", db, "--period", "2026-11", "--as-of", "2026-12-01"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("USD  final")


# --- sessions --as-of T: the sessions that existed at T, as they were at T ----------------------

def test_sessions_as_of_lists_only_sessions_that_existed_with_their_status_then(tmp_path, capsys):
    events = EVENTS + [
        # created after T: not listed as of T
        session_record("sesn_02", created_at="2026-11-03T12:00:00Z"),
        status("sesn_02", "sevt_21", "2026-11-03T12:00:00.000Z", "running"),
        # running at T, terminated after T (its record says terminated now)
        session_record("sesn_03", created_at="2026-11-03T08:30:00Z", status="terminated",
                       updated_at="2026-11-03T13:00:00Z"),
        status("sesn_03", "sevt_31", "2026-11-03T10:30:00.000Z", "running"),
        status("sesn_03", "sevt_32", "2026-11-03T13:00:00.000Z", "terminated"),
        # created before T, nothing happened yet: idle, as sessions start
        session_record("sesn_04", created_at="2026-11-03T10:59:00Z", status="running",
                       updated_at="2026-11-03T12:00:00Z"),
    ]
    db = _store(tmp_path, capsys, events)
    assert _sessions(db, "2026-11-03T11:00:00Z", capsys) == [
        "session_id,team,project,model,status,running_ms,idle_ms,provisional",
        "sesn_01,platform,,claude-opus-5,idle,3600000,3600000,True",
        "sesn_03,platform,,claude-opus-5,running,1800000,0,True",
        "sesn_04,platform,,claude-opus-5,idle,0,0,False",
    ]
    rows = _sessions(db, "2026-11-03T14:00:00Z", capsys)
    assert [r.split(",")[0] for r in rows[1:]] == ["sesn_01", "sesn_02", "sesn_03", "sesn_04"]
    assert rows[3].split(",")[4] == "terminated" and rows[4].split(",")[4] == "running"


def _thread_running(session_id, event_id, at, thread_id):
    return {"session_id": session_id, "type": "session.thread_status_running", "id": event_id,
            "processed_at": at, "session_thread_id": thread_id}


def test_sessions_as_of_says_the_status_its_time_was_metered_by(tmp_path, capsys):
    db = _store(tmp_path, capsys, [
        # terminal is terminal: a later 'running' is kept but never billed, nor shown
        session_record("sesn_a", created_at="2026-11-03T08:00:00Z"),
        status("sesn_a", "sevt_a1", "2026-11-03T09:00:00.000Z", "running"),
        status("sesn_a", "sevt_a2", "2026-11-03T10:00:00.000Z", "terminated"),
        status("sesn_a", "sevt_a3", "2026-11-03T10:30:00.000Z", "running"),
        # only thread transitions: running while a thread runs
        session_record("sesn_b", created_at="2026-11-03T08:00:00Z"),
        _thread_running("sesn_b", "sevt_b1", "2026-11-03T10:00:00.000Z", "sthr_1"),
        # seen only in events: listed from its first event on
        status("sesn_c", "sevt_c1", "2026-11-03T10:30:00.000Z", "running"),
        status("sesn_d", "sevt_d1", "2026-11-03T11:30:00.000Z", "running"),
        # two transitions in one millisecond: the higher event id is the later
        session_record("sesn_e", created_at="2026-11-03T08:00:00Z"),
        status("sesn_e", "sevt_e2", "2026-11-03T10:00:00.000Z", "idle"),
        status("sesn_e", "sevt_e1", "2026-11-03T10:00:00.000Z", "running"),
    ])
    assert _sessions(db, "2026-11-03T11:00:00Z", capsys) == [
        "session_id,team,project,model,status,running_ms,idle_ms,provisional",
        "sesn_a,platform,,claude-opus-5,terminated,3600000,0,False",
        "sesn_b,platform,,claude-opus-5,running,3600000,0,True",
        "sesn_c,,,,running,1800000,0,True",
        "sesn_e,platform,,claude-opus-5,idle,0,3600000,True",
    ]


# --- one error root: kinds mapped to exit codes, bugs keep their traceback ----------------------

def test_every_error_class_has_the_one_root():
    from meter.collector.client import ApiError, CollectorError, StreamError
    from meter.collector.webhooks import WebhookVerificationError
    from meter.errors import AgentTallyError, DataError, UsageError
    from meter.simulator.profile import ProfileError
    from meter.simulator.rates import UnratedModelError
    from meter.store import StoreError
    from meter.vocabulary import VocabularyError
    from pricing.pricebook import PriceBookError
    from pricing.scenario import ScenarioError
    from reports.allocation import AllocationError
    from reports.budgets import BudgetError
    from reports.provider import ProviderError

    usage = (VocabularyError, ProfileError, UnratedModelError, PriceBookError, ScenarioError,
             AllocationError, BudgetError, ProviderError)
    data = (StoreError, CollectorError, ApiError, StreamError, WebhookVerificationError)
    assert all(issubclass(e, UsageError) and e.exit_code == 2 for e in usage)
    assert all(issubclass(e, DataError) and e.exit_code == 1 for e in data)
    assert all(issubclass(e, AgentTallyError) for e in usage + data)


@pytest.mark.parametrize(("error", "code", "line"), [
    ("usage", 2, "agenttally status: bad input (fix it so)"),
    ("data", 1, "agenttally status: bad data"),
])
def test_errors_map_to_exit_codes_and_bugs_keep_their_traceback(monkeypatch, capsys, error,
                                                                code, line):
    import agenttally.cli as cli
    from meter.errors import DataError, UsageError

    def fails(args):
        if error == "usage":
            raise UsageError("bad input", hint="fix it so")
        raise DataError("bad data")

    monkeypatch.setattr(cli, "cmd_status", fails)
    assert main(["status"]) == code
    assert capsys.readouterr().err == line + "\n"

    def bug(args):
        return {}["missing"]

    monkeypatch.setattr(cli, "cmd_status", bug)
    with pytest.raises(KeyError):
        main(["status"])


def test_help_starts_without_loading_the_engines():
    """`agenttally --help` (and any verb's parser) loads no DuckDB, Arrow, pandas, NumPy or
    pydantic: each verb imports what it needs when it runs, so --help starts in ~0.1 s."""
    import subprocess
    import sys

    code = ("import sys, agenttally.cli as c; c.build_parser().format_help(); "
            "print(sorted(m for m in ('duckdb', 'pyarrow', 'pandas', 'numpy', 'pydantic', "
            "'streamlit', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_invoice_table_says_what_each_unit_price_is_per_and_runtime_in_hours(tmp_path, capsys):
    """Issue 21: unit prices had no units, runtime only raw ms, a blank price no legend."""
    db = _store(tmp_path, capsys)
    assert main(["invoice", "--db", db, "--period", "2026-11", "--as-of", "2026-11-04"]) == 0
    out = capsys.readouterr().out
    header, _, runtime, tokens = out.splitlines()[1:5]
    assert header.split() == ["meter", "model", "token_class", "tier", "quantity", "unit",
                              "hours", "unit_price", "price_unit", "amount"]
    assert runtime.split() == ["runtime", "3,600,000", "ms", "1.00", "0.08", "USD", "per",
                               "session-hour", "0.08"]
    assert "USD per million tokens" in tokens
    assert "blank unit_price" not in out  # every line here has one price
