"""The README's CLI examples run as written, in order, on a copy of the demo store.

Each line of the first code block of "## The CLI" runs through `agenttally.cli.main` (optional
parts in [brackets] left out, comments dropped) with the demo as the default store; a line
marked "(not run by tests: REASON)" is skipped and its reason printed. Each must exit 0, and
the demo's November total must be what it was before: the examples that write use a scratch
store. Paths the examples write (scratch store, lake, exports) land in a temporary folder.
"""

from __future__ import annotations

import re
import shlex
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = re.compile(r"\(not run by tests: ([^)]*)\)")


def readme_cli_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The CLI"):]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def command(line: str) -> tuple[list[str] | None, str]:
    """The argv of a README line (after `agenttally`), or None and the reason to skip it."""
    skipped = SKIP.search(line)
    if skipped:
        return None, skipped.group(1)
    text = re.sub(r"\s+#\s.*$", "", line)  # a comment after the command
    text = re.sub(r"\s*\[[^\]]*\]", "", text)  # optional parts
    argv = shlex.split(text)
    assert argv[0] == "agenttally", line
    return argv[1:], ""


def november_total(db: Path) -> str:
    import agenttally

    with agenttally.open_store(db, read_only=True) as store:
        return str(agenttally.invoice(store, "2026-11").total)


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory) -> Path:
    """Sixty days of the demo ending 2026-11-30 (November whole), rated: what `make run` shows."""
    from agenttally.cli import main
    from tests.conftest import seeded_demo

    path = seeded_demo(tmp_path_factory.mktemp("readme") / "demo.duckdb", days=60,
                       end=date(2026, 11, 30))
    assert main(["rate", "--db", str(path)]) == 0
    return path


def test_the_shipped_provider_report_is_the_demos_november_as_generated(demo_copy):
    """data/samples/provider_cost_report_2026-11.json is what bench/make_provider_report.py
    makes of this demo: regenerate it with `python -m bench.make_provider_report`."""
    import duckdb

    from bench.make_provider_report import OUT, dump, provider_report

    con = duckdb.connect(str(demo_copy), read_only=True)
    try:
        assert dump(provider_report(con)) == OUT.read_text(encoding="utf-8")
    finally:
        con.close()


def test_reconcile_on_the_demo_finds_exactly_the_reports_deliberate_differences(
        demo_copy, capsys):
    """The README's reconcile line: one model-day billed $3.50 more is flagged, the missing day
    is named and not flagged, the day rounded to the cent is within tolerance; nothing else
    differs by a single atto-dollar."""
    import json

    from agenttally.cli import main
    from bench.make_provider_report import BILLED_MORE, MISSING_DAY, OUT, RUNTIME_ROUNDED_DAY

    capsys.readouterr()
    assert main(["reconcile", "--db", str(demo_copy), "--period", "2026-11", "--provider",
                 str(OUT), "--format", "json", "--strict"]) == 1  # one row flagged
    result = json.loads(capsys.readouterr().out)
    rows = result["rows"]
    day, model, extra = BILLED_MORE
    assert [(r["day"], r["cost_type"], r["model"], r["variance"]) for r in rows
            if r["flagged"]] == [(day.isoformat(), "tokens", model, f"-{extra}")]
    assert result["missing_days"] == [MISSING_DAY.isoformat()]
    assert {r["day"] for r in rows if r["status"] == "no provider data"} == {
        MISSING_DAY.isoformat()}
    differing = [(r["day"], r["cost_type"], r["status"]) for r in rows
                 if r["variance"] is not None and Decimal(r["variance"]) != 0]
    assert differing == [(day.isoformat(), "tokens", "over tolerance"),
                         (RUNTIME_ROUNDED_DAY.isoformat(), "session_usage", "ok")]
    rounded = next(r for r in rows if r["day"] == RUNTIME_ROUNDED_DAY.isoformat()
                   and r["cost_type"] == "session_usage")
    assert Decimal(0) < abs(Decimal(rounded["variance"])) <= Decimal("0.005")
    assert {r["model"] for r in rows} == {None, "claude-haiku-5-5", "claude-opus-5-5",
                                          "claude-sonnet-5", "claude-sonnet-5-5"}
    metered, provider = (Decimal(result["totals"][k]) for k in ("metered", "provider"))
    assert provider - metered == extra - Decimal(rounded["variance"])


def test_every_readme_cli_example_runs_and_leaves_the_demo_as_it_was(demo_copy, tmp_path,
                                                                      monkeypatch, capsys):
    from agenttally.cli import main

    # The examples' relative paths: data/ as shipped, and what they write beside it here.
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    for entry in (ROOT / "data").iterdir():
        if entry.name not in ("lake", "agenttally.duckdb") and not entry.name.endswith(
                ".wal"):
            (work / "data" / entry.name).symlink_to(entry)
    monkeypatch.chdir(work)
    monkeypatch.setenv("AGENTTALLY_DB", str(demo_copy))
    before = november_total(demo_copy)
    capsys.readouterr()
    ran, skipped = [], []
    for line in readme_cli_lines():
        argv, reason = command(line)
        if argv is None:
            skipped.append(f"{line.split('#')[0].strip()}: {reason}")
            continue
        argv = [a.replace("/tmp/scratch.duckdb", str(tmp_path / "scratch.duckdb"))
                for a in argv]
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, f"{line}\nexit {code}\n{err[-2000:]}"
        ran.append(line)
    with capsys.disabled():
        for s in skipped:
            print(f"\nREADME example skipped: {s}")
    assert len(ran) >= 12 and len(skipped) <= 5
    assert november_total(demo_copy) == before
