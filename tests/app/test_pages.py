"""Every page renders, on real data and on stores that cannot answer yet (AppTest)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import NOVEMBER_TOTAL, ROOT

PAGES = ["pages/overview.py", "pages/chargeback.py", "pages/forecast.py", "pages/whatif.py",
         "pages/sessions.py", "pages/data.py"]


def open_page(monkeypatch, store, page: str, **state) -> AppTest:
    """The app on `page`, with session state (e.g. the sidebar filters) set before the first
    run. (AppTest drops the sidebar from its element tree on reruns under st.navigation, so
    filters are set through session state rather than by clicking the sidebar widgets; the
    browser test clicks the real ones.)"""
    monkeypatch.setenv("AGENTTALLY_DB", str(store))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    return at


def texts(at: AppTest) -> str:
    parts = [m.label + " " + str(m.value) for m in at.metric]
    for kind in (at.info, at.warning, at.caption, at.markdown, at.success, at.error):
        parts += [e.value for e in kind]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_a_rated_store(monkeypatch, tiny_store, page):
    at = open_page(monkeypatch, tiny_store, page)
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_the_demo_profile(monkeypatch, demo_store, page):
    at = open_page(monkeypatch, demo_store, page)
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_empty_store_shows_how_to_fill_it(monkeypatch, empty_store, page):
    at = open_page(monkeypatch, empty_store, page)
    assert not at.exception
    assert "is empty" in texts(at)


@pytest.mark.parametrize("page", PAGES)
def test_missing_store_shows_how_to_create_it(monkeypatch, tmp_path, page):
    at = open_page(monkeypatch, tmp_path / "nowhere.duckdb", page)
    assert not at.exception
    assert "No store at" in texts(at)
    assert not (tmp_path / "nowhere.duckdb").exists()  # the dashboard never creates one


@pytest.mark.parametrize("page", PAGES[:-1])
def test_unrated_store_asks_for_a_rating(monkeypatch, unrated_store, page):
    at = open_page(monkeypatch, unrated_store, page)
    assert not at.exception
    assert "agenttally rate" in texts(at)


def test_data_page_works_before_any_rating(monkeypatch, unrated_store):
    at = open_page(monkeypatch, unrated_store, "pages/data.py")
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Quarantined lines"] == "1"


def test_overview_shows_the_invoice_total_of_the_month(monkeypatch, tiny_store):
    at = open_page(monkeypatch, tiny_store, PAGES[0])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Spend, month to date"] == NOVEMBER_TOTAL
    assert metrics["Sessions"] == "2"
    assert metrics["Running (billed)"] == "1.8 h"
    assert metrics["Saved by per-ms billing"] == "$0.10"


def test_filters_persist_across_pages(monkeypatch, tiny_store):
    at = open_page(monkeypatch, tiny_store, PAGES[0], f_teams=["search"])
    assert {m.label: m.value for m in at.metric}["Spend, month to date"] == "$0.50"
    at.switch_page("pages/sessions.py").run()
    assert at.session_state["f_teams"] == ["search"]
    assert list(at.dataframe[0].value["session_id"]) == ["sesn_B"]
    at.switch_page("pages/overview.py").run()
    assert {m.label: m.value for m in at.metric}["Spend, month to date"] == "$0.50"


def test_previous_period_can_be_picked(monkeypatch, tiny_store):
    at = open_page(monkeypatch, tiny_store, PAGES[0], f_period="2026-10")
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Spend in the month"] == "$1.08"
    # a past month has no budget to track: said so, not "No budgets file" (issue 21)
    assert "Budgets are tracked for the current month." in texts(at)
    assert "No budgets file" not in texts(at)


def test_chargeback_groups_add_up_to_the_invoice(monkeypatch, tiny_store):
    at = open_page(monkeypatch, tiny_store, "pages/chargeback.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Allocated"] == metrics["Invoice total"] == NOVEMBER_TOTAL
    table = at.dataframe[0].value
    assert dict(zip(table["team"], table["total"], strict=True)) == {"platform": 0.75,
                                                                      "search": 0.50}


def test_whatif_opens_on_a_scenario_that_shows_a_difference(monkeypatch, tiny_store):
    at = open_page(monkeypatch, tiny_store, "pages/whatif.py")
    assert at.selectbox(key="wi_base").value == "opus-to-sonnet"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Baseline"] == NOVEMBER_TOTAL
    assert metrics["Difference"] != "$0.00"


def test_whatif_runtime_price_lever_changes_only_runtime(monkeypatch, tiny_store):
    at = open_page(monkeypatch, tiny_store, "pages/whatif.py")
    at.selectbox(key="wi_base").set_value("Current prices").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Baseline"] == NOVEMBER_TOTAL
    assert metrics["Difference"] == "$0.00"
    slider = next(s for s in at.slider if s.label.startswith("Runtime price"))
    slider.set_value(0.16)
    at.button[0].click().run()  # the form's Re-rate
    metrics = {m.label: m.value for m in at.metric}
    # 1.75 running hours: $0.14 at $0.08/h, $0.28 at $0.16/h
    assert metrics["Difference"] == "$0.14"
    assert "runtime_usd_per_hour = \"0.16\"" in at.code[0].value


def test_sessions_page_shows_the_costliest_sessions_timeline(monkeypatch, tiny_store):
    at = open_page(monkeypatch, tiny_store, "pages/sessions.py")
    assert list(at.dataframe[0].value["session_id"]) == ["sesn_A", "sesn_B"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cost"] == "$0.75"  # 0.12 + 0.25 + 0.38 rounded per line
    assert metrics["Running (billed)"] == "1.5 h"
    assert metrics["Model requests"] == "1"


@pytest.mark.parametrize("page", [PAGES[0], "pages/data.py"])
def test_a_store_locked_too_long_shows_a_message_not_a_traceback(monkeypatch, tiny_store, page):
    import streamlit as st

    from meter.store import StoreError

    def locked(*args, **kwargs):
        raise StoreError(f"{tiny_store}: Could not set lock on file")

    st.cache_data.clear()
    monkeypatch.setattr("reports.dashboard.ui.run", locked)
    at = open_page(monkeypatch, tiny_store, page)
    assert not at.exception
    assert "cannot be read right now" in texts(at)
    st.cache_data.clear()
