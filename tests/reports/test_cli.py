"""The CLI as a user meets it: exit codes, one clear error line, stable JSON."""

from __future__ import annotations

import json

from reports.cli import main
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


def test_ingest_prints_a_summary_and_strict_fails_on_quarantine(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    path = _write(tmp_path, EVENTS + ["{oops"])
    assert main(["ingest", path, "--db", db]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{path}: 5 lines: 3 new, 0 duplicate, 1 records, 1 quarantined"
    assert f"{path}:5: not valid JSON" in err
    assert main(["ingest", path, "--db", db, "--strict"]) == 1


def test_invoice_json_is_the_documented_contract(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    main(["ingest", _write(tmp_path, EVENTS), "--db", db])
    capsys.readouterr()
    assert main(["invoice", "--db", db, "--period", "2026-11", "--as-of", "2026-11-04",
                 "--format", "json"]) == 0
    invoice = json.loads(capsys.readouterr().out)
    assert set(invoice) == {"period", "as_of", "currency", "provisional", "lines", "unrated",
                            "total"}
    assert invoice["total"] == "0.71"  # 0.08 + 0.25 + 0.375 -> 0.38 (half-even per line)
    assert [(ln["meter"], ln["token_class"], ln["amount"]) for ln in invoice["lines"]] == [
        ("runtime", None, "0.08"), ("tokens", "input", "0.25"), ("tokens", "output", "0.38")]
    assert set(invoice["lines"][0]) == {"meter", "model", "token_class", "tier", "quantity", "unit",
                                        "unit_price", "amount_exact", "amount"}


def test_sessions_lists_running_and_idle_ms(tmp_path, capsys):
    db = str(tmp_path / "s.duckdb")
    main(["ingest", _write(tmp_path, EVENTS), "--db", db])
    capsys.readouterr()
    main(["sessions", "--db", db, "--as-of", "2026-11-03T11:00:00Z", "--format", "csv"])
    assert capsys.readouterr().out.splitlines() == [
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

    from reports.cli import build_parser

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
