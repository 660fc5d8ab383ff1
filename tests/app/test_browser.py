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


@pytest.fixture(scope="module")
def dashboard(tiny_store, tmp_path_factory) -> Iterator[str]:
    """The app served by `streamlit run` on a free local port; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, "AGENTTALLY_DB": str(tiny_store)}
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
