"""End to end: `streamlit run app.py` on 127.0.0.1, driven by Debian's headless chromium.

Needs /usr/bin/chromium (`apt-get install chromium`; CI installs it) and the `playwright`
Python package, which only drives that browser: `playwright install` is never run. The
Overview's month-to-date total for the tiny store is worked out by hand in conftest.py, and
a screenshot is kept as test-artifacts/overview.png.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import NOVEMBER_TOTAL, ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(store: Path, log: Path) -> Iterator[str]:
    """`streamlit run app.py` on `store` at a free local port; yields its URL."""
    port = free_port()
    env = {**os.environ, "AGENTTALLY_DB": str(store)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
             "--server.address", "127.0.0.1", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer in 60 s:\n{log.read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def dashboard(tiny_store, tmp_path_factory) -> Iterator[str]:
    """The app on the tiny store; yields its URL."""
    with served(tiny_store, tmp_path_factory.mktemp("streamlit") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def demo_dashboard(tmp_path_factory) -> Iterator[str]:
    """The app on five weeks of the demo profile (enough history for the forecast): real
    names, real amounts, long ids; rated as of 2026-11-20, so it opens on November."""
    from datetime import date

    from tests.app.conftest import rate_and_store
    from tests.conftest import seeded_demo

    store = seeded_demo(tmp_path_factory.mktemp("laptop") / "demo.duckdb", days=35,
                        end=date(2026, 11, 19))
    rate_and_store(store)
    with served(store, tmp_path_factory.mktemp("streamlit") / "demo.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield chromium
        chromium.close()


def metric(page, label: str):
    """The value element of the st.metric whose label is `label`."""
    card = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return card.locator('[data-testid="stMetricValue"]')


def test_overview_shows_the_month_to_date_total(dashboard, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    try:
        page.goto(dashboard, wait_until="domcontentloaded")
        value = metric(page, "Spend, month to date")
        value.wait_for(timeout=60_000)
        assert value.inner_text().strip() == NOVEMBER_TOTAL
        # the page is complete once the last section has drawn
        page.get_by_text("Saved by per-ms billing").wait_for(timeout=60_000)
        # tables are canvas grids that paint after their data arrives
        page.wait_for_function("() => document.querySelectorAll("
                               "'[data-testid=stDataFrame] canvas').length >= 3",
                               timeout=60_000)
        page.wait_for_timeout(2500)  # let the charts and grids finish their first paint
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "overview.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not page.locator('[data-testid="stException"]').count()
    finally:
        page.close()


def test_team_filter_in_the_sidebar_narrows_the_total(dashboard, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1200})
    try:
        page.goto(dashboard, wait_until="domcontentloaded")
        metric(page, "Spend, month to date").wait_for(timeout=60_000)
        team = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').filter(
            has_text="Team")
        team.locator("input").click()
        page.get_by_role("option", name="search").click()
        page.keyboard.press("Escape")
        value = metric(page, "Spend, month to date")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
            ".some(e => e.innerText.trim() === '$0.50')", timeout=60_000)
        assert value.inner_text().strip() == "$0.50"
        # the choice follows to another page
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Sessions").click()
        # the costliest session under the filter is B, shown with its title as a heading
        page.get_by_role("heading", name="Market scan").wait_for(timeout=60_000)
        assert page.get_by_role("heading", name="Fix the flaky build").count() == 0
    finally:
        page.close()


# --- laptop widths -----------------------------------------------------------------------
# Each page of the demo at 1280 and 1440 px (sidebar open): the tables users come for show
# their key columns whole. Streamlit's tables are canvas grids (glide-data-grid); behind the
# canvas the grid keeps an accessible <table> of the cells it draws (the columns in view),
# and its scroller is wider than its box when columns run off the right edge.
GRIDS_JS = """() => [...document.querySelectorAll('[data-testid=stDataFrame]')].map(df => {
  const box = df.querySelector('.dvn-scroller');
  return {overflow: box ? box.scrollWidth - box.clientWidth : 0,
          heads: [...df.querySelectorAll('th[role=columnheader]')].map(t => t.innerText.trim()),
          cells: [...df.querySelectorAll('td')].map(t => t.innerText.trim())};
})"""
# Metric labels, values and deltas cut short with an ellipsis.
CUT_METRICS_JS = """() => [...document.querySelectorAll(
    '[data-testid=stMetricLabel], [data-testid=stMetricValue], [data-testid=stMetricDelta]')]
  .filter(e => [e, ...e.querySelectorAll('*')].some(x => x.scrollWidth > x.clientWidth + 1))
  .map(e => e.innerText.trim())"""

# page path -> (text the page shows once drawn, grids it draws, {grid: key column headers})
PAGES = {
    "": ("Runtime utilisation", 3, {0: {"Team", "Spend", "Share"},
                                    1: {"Agent", "Spend", "Share"},
                                    2: {"Session", "Team", "Spend"}}),
    "chargeback": ("Download", 1, {0: {"team", "total", "share"}}),
    "sessions": ("Cost breakdown", 2, {0: {"session", "title", "cost", "running h"},
                                       1: {"tier", "quantity", "unit price", "amount"}}),
    "whatif": ("Save this scenario", 2, {0: {"meter", "baseline", "scenario", "Δ", "Δ %"},
                                         1: {"baseline", "scenario", "Δ", "Δ %"}}),
    "data": ("Rating runs", 4, {}),
}


TITLES = {"chargeback": "Chargeback", "forecast": "Forecast & budgets", "whatif": "What-if",
          "sessions": "Sessions", "data": "Data"}


def drawn(browser, base: str, path: str, width: int, text: str, grids: int):
    page = browser.new_page(viewport={"width": width, "height": 2400})
    # In from the front page and the sidebar, as a user goes: a page's own URL opened
    # first in a new session can be served straight from pages/, without app.py's frame.
    page.goto(base, wait_until="domcontentloaded")
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_text("Overview").wait_for(timeout=90_000)
    if path:
        nav.get_by_text(TITLES[path], exact=True).click()
    try:
        page.get_by_text(text, exact=True).first.wait_for(timeout=90_000)
        page.wait_for_function("n => document.querySelectorAll("
                               "'[data-testid=stDataFrame] canvas').length >= n", arg=grids,
                               timeout=90_000)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "not-drawn.png"), full_page=True)
        page.close()
        raise
    page.wait_for_timeout(2500)  # grids paint after their data arrives
    return page


@pytest.mark.parametrize("width", [1280, 1440])
@pytest.mark.parametrize("path", list(PAGES))
def test_key_columns_fit_a_laptop_screen(demo_dashboard, browser, path, width):
    text, count, keys = PAGES[path]
    page = drawn(browser, demo_dashboard, path, width, text, count)
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{path or 'overview'}-{width}.png"),
                        full_page=True)
        assert not page.locator('[data-testid="stException"]').count()
        grids = page.evaluate(GRIDS_JS)
        for i, heads in keys.items():
            assert heads <= set(grids[i]["heads"]), (i, grids[i]["heads"])
            assert grids[i]["overflow"] <= 0, f"grid {i} runs {grids[i]['overflow']} px over"
        for grid in grids:
            assert "None" not in grid["cells"], grid["heads"]
        assert page.evaluate(CUT_METRICS_JS) == []
    finally:
        page.close()


def test_forecast_fits_a_laptop_screen(demo_dashboard, browser):
    page = drawn(browser, demo_dashboard, "forecast", 1280, "Backtest", 1)
    try:
        page.screenshot(path=str(ARTIFACTS / "forecast-1280.png"), full_page=True)
        grids = page.evaluate(GRIDS_JS)
        assert {"overrun odds"} <= set(grids[0]["heads"]) and grids[0]["overflow"] <= 0
        assert page.evaluate(CUT_METRICS_JS) == []
    finally:
        page.close()
