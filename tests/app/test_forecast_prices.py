"""The forecast page's data: a price book with a future effective date moves the forecast."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

from reports.dashboard import planning
from reports.dashboard.filters import Filters
from reports.dashboard.source import read_store
from tests.conftest import ms

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "pricebooks"


def books_with_a_runtime_rise(folder: Path, on: date) -> Path:
    """The shipped books, the current one ending on ``on``, and a copy from ``on`` whose
    runtime costs $0.80 per session-hour instead of $0.08."""
    folder.mkdir()
    for path in SHIPPED.glob("*.toml"):
        shutil.copy(path, folder / path.name)
    current = folder / "anthropic-list-2026-08-07.toml"
    text = current.read_text()
    current.write_text(text.replace("effective_from = 2026-08-07",
                                    f"effective_from = 2026-08-07\neffective_to = {on}", 1))
    rise = re.sub(r'version = "2026-08-07"', f'version = "{on}"', text, count=1)
    rise = rise.replace("effective_from = 2026-08-07", f"effective_from = {on}", 1)
    rise = rise.replace('usd_per_session_hour = "0.08"', 'usd_per_session_hour = "0.80"', 1)
    (folder / f"anthropic-list-{on}.toml").write_text(rise)
    return folder


def test_a_scheduled_price_rise_shows_on_its_date(tiny_store, tmp_path, monkeypatch):
    as_of = ms("2026-11-20T00:00:00Z")
    with read_store(tiny_store) as con:
        before = planning.forecast_frame(con, Filters(), as_of, horizon=20)
    assert before["price_changes"] == []
    on = date(2026, 11, 30)
    monkeypatch.setenv("AGENTTALLY_PRICEBOOKS", str(books_with_a_runtime_rise(tmp_path / "b",
                                                                              on)))
    with read_store(tiny_store) as con:
        after = planning.forecast_frame(con, Filters(), as_of, horizon=20)
    [change] = after["price_changes"]
    assert (change["day"], change["book"]) == (on, f"anthropic-list {on}")
    assert change["effect"] > 0  # runtime is part of the mix: the rise costs more
    old, new = before["forecast"]["mean"], after["forecast"]["mean"]
    # before the date the two forecasts agree; from it every day costs more, by about the
    # effect on the mix (each team is priced on its own mix, then reconciled with the total)
    assert abs(old.iloc[:10] - new.iloc[:10]).max() < 1e-9
    assert (new.iloc[10:] > old.iloc[10:]).all()
    rise = new.iloc[10:].sum() / old.iloc[10:].sum()
    assert abs(rise / (1 + change["effect"]) - 1) < 0.1
