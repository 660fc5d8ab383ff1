"""Every setting AgentTally reads from the environment, declared once: its variable, what it
is for and its default. Code reads a setting through `setting(NAME)`, never `os.environ`;
`agenttally --help` lists this table (`settings_help`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SETTINGS", "Setting", "setting", "settings_help", "shipped"]

# Where the files AgentTally ships live: the source tree (a clone, an editable install), else
# where a non-editable install put them (pyproject's data-files: <prefix>/share/agenttally).
_SOURCE_TREE = Path(__file__).resolve().parent.parent
_INSTALLED = Path(sys.prefix) / "share" / "agenttally"


@dataclass(frozen=True)
class Setting:
    variable: str
    purpose: str
    default: str | None = None
    secret: bool = False


SETTINGS = {s.variable: s for s in (
    Setting("AGENTTALLY_DB", "the store file", "data/agenttally.duckdb"),
    Setting("AGENTTALLY_PRICEBOOKS", "folder of price book TOML files", "data/pricebooks"),
    Setting("AGENTTALLY_BUDGETS", "budgets TOML", "data/budgets.toml"),
    Setting("AGENTTALLY_ALLOCATION", "allocation rules TOML for the dashboard's chargeback",
            "none: session > agent > environment tags, nothing shared"),
    Setting("AGENTTALLY_CONTRACTS", "contract TOML file or folder for the dashboard's contract "
            "view (the CLI takes --contract)", "none: list prices"),
    Setting("AGENTTALLY_GRACE_DAYS", "days after a month ends during which late usage still "
            "lands in it and `close` waits (the late-usage policy, reports/closing.py)", "3"),
    Setting("AGENTTALLY_MAX_REQUEST_TOKENS", "plausibility bound at ingest: the most tokens "
            "of one class one model request may report (span.model_request_end); a line beyond "
            "it is quarantined", "1000000000"),
    Setting("AGENTTALLY_MAX_SESSION_TOKENS", "plausibility bound at ingest: the most tokens of "
            "one class a session's cumulative usage snapshot may report (session.usage)",
            "100000000000"),
    Setting("AGENTTALLY_MAX_WEB_REQUESTS", "plausibility bound at ingest: the most web searches "
            "(and web fetches) a session's cumulative usage snapshot may report", "10000000"),
    Setting("AGENTTALLY_EARLIEST_TIME", "plausibility bound at ingest: events and records "
            "stamped before this instant are quarantined (the latest is now + "
            "--max-future-hours)", "1900-01-01T00:00:00Z"),
    Setting("AGENTTALLY_WRITE_HOLD_S", "the longest a writer (ingest) holds the store before it "
            "commits and lets waiting readers in", "2"),
    Setting("AGENTTALLY_LOCK_WAIT_S", "how long a reader or writer waits for another process "
            "that holds the store before giving up", "30"),
    Setting("PYSPARK_GATEWAY_PORT", "set by spark-submit for the application it runs: "
            "`rate --engine spark` then runs on spark-submit's master (else --master, "
            "default local[*])"),
    Setting("ANTHROPIC_API_KEY", "API key for `collect` (and `emulate`, to require one)",
            secret=True),
    Setting("ANTHROPIC_BASE_URL", "API root for `collect`", "https://api.anthropic.com"),
    Setting("ANTHROPIC_WEBHOOK_SECRET", "webhook signing secret for `collect --webhooks`",
            secret=True),
    Setting("ANTHROPIC_ADMIN_KEY", "Admin API key for `reconcile --fetch`", secret=True),
)}


def setting(variable: str) -> str | None:
    """The value of a declared setting from the environment, None when unset or empty (the
    caller applies the declared default, which may be relative to its own files)."""
    if variable not in SETTINGS:
        raise KeyError(f"{variable} is not a declared setting (meter/settings.py)")
    return os.environ.get(variable) or None


def settings_help() -> str:
    """The table of settings, for `--help`."""
    width = max(len(v) for v in SETTINGS)
    rows = [f"  {s.variable:<{width}}  {s.purpose}"
            + (f" (default: {s.default})" if s.default else "")
            + (" [secret, never printed]" if s.secret else "")
            for s in SETTINGS.values()]
    return "environment:\n" + "\n".join(rows)


def shipped(relative: str) -> Path:
    """A file or folder AgentTally ships (`data/pricebooks`, `data/profiles/demo.toml`,
    `app.py`, ...): from the source tree when running from one, else from the install."""
    if (_SOURCE_TREE / "pyproject.toml").exists():
        return _SOURCE_TREE / relative
    return _INSTALLED / relative
