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


@pytest.mark.parametrize(("variable", "value"), [
    ("AGENTTALLY_MAX_REQUEST_TOKENS", "0"), ("AGENTTALLY_MAX_SESSION_TOKENS", "1e12"),
    ("AGENTTALLY_MAX_WEB_REQUESTS", str(10**16)), ("AGENTTALLY_EARLIEST_TIME", "yesterday"),
    ("AGENTTALLY_WRITE_HOLD_S", "-1"), ("AGENTTALLY_LOCK_WAIT_S", "soon")])
def test_a_malformed_ingest_or_lock_setting_is_refused_naming_it(monkeypatch, variable, value):
    from meter.errors import UsageError
    from meter.events import Bounds
    from meter.store import lock_wait_s, write_hold_s

    monkeypatch.setenv(variable, value)
    with pytest.raises(UsageError, match=f"^{variable}={value!r}: "):
        Bounds.from_settings()
        write_hold_s()
        lock_wait_s()


def test_the_ingest_and_lock_settings_default_to_their_documented_values(monkeypatch):
    from meter.events import Bounds
    from meter.store import lock_wait_s, write_hold_s

    for variable in SETTINGS:
        monkeypatch.delenv(variable, raising=False)
    assert Bounds.from_settings() == Bounds(request_tokens=10**9, session_tokens=10**11,
                                            web_requests=10**7,
                                            earliest_ms=-2_208_988_800_000)
    assert (write_hold_s(), lock_wait_s()) == (2.0, 30.0)
    assert [SETTINGS[v].default for v in ("AGENTTALLY_MAX_REQUEST_TOKENS",
                                          "AGENTTALLY_MAX_SESSION_TOKENS",
                                          "AGENTTALLY_MAX_WEB_REQUESTS")] == [
        str(10**9), str(10**11), str(10**7)]
