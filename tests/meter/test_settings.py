"""Settings are declared once: read through meter.settings, listed in `agenttally --help`."""

import re
from pathlib import Path

import pytest

from meter.settings import SETTINGS, setting, settings_help

ROOT = Path(__file__).resolve().parent.parent.parent


def test_no_module_reads_the_environment_but_settings():
    readers = [str(p.relative_to(ROOT)) for d in ("agenttally", "meter", "pricing", "reports")
               for p in (ROOT / d).rglob("*.py")
               if re.search(r"os\.environ\.get|os\.getenv|os\.environ\[", p.read_text())]
    assert readers == ["meter/settings.py"]


def test_a_setting_is_read_when_declared_and_refused_when_not(monkeypatch):
    monkeypatch.setenv("AGENTTALLY_DB", "/tmp/x.duckdb")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")
    assert setting("AGENTTALLY_DB") == "/tmp/x.duckdb"
    assert setting("ANTHROPIC_BASE_URL") is None  # empty is unset
    with pytest.raises(KeyError, match="not a declared setting"):
        setting("AGENTTALLY_NOPE")


def test_help_lists_every_setting(capsys):
    from agenttally.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert settings_help() in out and all(v in out for v in SETTINGS)
