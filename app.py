"""AgentTally dashboard: `streamlit run app.py` (or `agenttally serve`, which seeds and rates
the store first). The store is $AGENTTALLY_DB, else data/agenttally.duckdb.

This file is the frame around every page: navigation, the shared filters in the sidebar and
the store's freshness. The pages draw; the numbers come from reports.dashboard.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from meter.store import StoreError
from reports.dashboard import ui
from reports.dashboard.source import StoreState

st.set_page_config(page_title="AgentTally", page_icon=":material/receipt_long:",
                   layout="wide", initial_sidebar_state="expanded")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/space_dashboard:",
            default=True),
    st.Page("pages/chargeback.py", title="Chargeback", icon=":material/account_tree:"),
    st.Page("pages/forecast.py", title="Forecast & budgets", icon=":material/trending_up:"),
    st.Page("pages/whatif.py", title="What-if", icon=":material/tune:"),
    st.Page("pages/sessions.py", title="Sessions", icon=":material/timeline:"),
    st.Page("pages/data.py", title="Data", icon=":material/database:"),
]

# A little less air above each page's title than Streamlit's default.
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.2rem}</style>")
LOGO = Path(__file__).resolve().parent / "reports" / "dashboard" / "logo.svg"
st.logo(str(LOGO), size="large")
page = st.navigation(PAGES)

state: StoreState | None  # None: the store could not be read
try:
    state = ui.state()
    filters = None
    if state.exists and state.rated:
        filters = ui.sidebar_filters(ui.batch("options"), state.rated_as_of_ms)
    if state.exists:
        ui.sidebar_status(state)
except StoreError as exc:
    state, filters = None, None
    st.sidebar.warning(f"Store unavailable: {exc}")
st.session_state["_state"] = state
st.session_state["_filters"] = filters
try:
    page.run()
except StoreError as exc:  # a writer held the store longer than the reader waits
    ui.store_error(exc)
