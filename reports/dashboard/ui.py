"""What every page shares: the cached batch runner, the store guard, the sidebar filters,
number formats and the chart style. The only module of this package that imports Streamlit.
"""

from __future__ import annotations

import time
import zlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import streamlit as st

from reports.dashboard.batches import decode, encode, run
from reports.dashboard.filters import FilterOptions, Filters, default_period
from reports.dashboard.source import StoreState, missing_store_state, store_path, store_version

CACHE_TTL_S = 600

# Colours: runtime and web search keep theirs on every chart; models take the palette in order.
RUNTIME_COLOUR = "#C96442"
SEARCH_COLOUR = "#7A8B99"
MODEL_PALETTE = ["#1F5F8B", "#4A9FD8", "#2E8B6E", "#8CC084", "#7E57C2", "#B39DDB",
                 "#D4A017", "#5C6BC0", "#26A69A", "#90A4AE"]
SEQUENTIAL = ["#F3E3DC", "#E3A58C", "#C96442", "#8F3F22"]
# One colour per model name, the same on every page and in every period (a palette assigned
# in order of the models present would repaint a model when another one comes or goes). The
# current families have theirs; any other model takes a palette colour from its name.
MODEL_COLOURS = {
    "claude-opus-5-5": "#1F5F8B", "claude-opus-5": "#4A9FD8", "claude-opus-4-8": "#5C6BC0",
    "claude-sonnet-5-5": "#2E8B6E", "claude-sonnet-5": "#8CC084",
    "claude-sonnet-4-6": "#26A69A", "claude-haiku-5-5": "#7E57C2",
    "claude-haiku-4-5": "#B39DDB", "claude-fable-5-1": "#D4A017", "claude-fable-5": "#E0C060",
}


@st.cache_data(ttl=CACHE_TTL_S, max_entries=256, show_spinner=False)
def _cached(name: str, path: str, version: tuple[int, ...], args: str) -> Any:
    return run(name, path, **decode(args))


def batch(name: str, **kwargs: Any) -> Any:
    """Run a data batch on the current store, cached until the store changes (or TTL)."""
    path = str(store_path())
    return _cached(name, path, store_version(path), encode(**kwargs))


def fresh(name: str, **kwargs: Any) -> Any:
    """Run a batch uncached (downloads: built when asked, never kept in memory)."""
    return run(name, str(store_path()), **kwargs)


# --- page scaffolding ---------------------------------------------------------------------


def state() -> StoreState:
    path = store_path()
    if not path.exists():
        return missing_store_state(path)
    return batch("state")


def require(st_state: StoreState, *, rated: bool = True, allow_empty: bool = False) -> None:
    """Stop the page with a helpful message when the store cannot answer it yet (an empty
    store only gets the message when `allow_empty`)."""
    if not st_state.exists:
        st.info(
            f"**No store at `{st_state.path}` yet.**  \n"
            "Start the dashboard with `agenttally serve` (it seeds two months of demo data), "
            "or fill a store first: `agenttally simulate --profile data/profiles/demo.toml "
            "--into data/agenttally.duckdb`, then `agenttally rate`.",
            icon=":material/database:")
        st.stop()
    if st_state.empty:
        st.info(
            f"**The store `{st_state.path}` is empty.**  \n"
            "Ingest events (`agenttally ingest FILE.jsonl`), follow the live API "
            "(`agenttally collect`) or seed the demo (`agenttally serve` on an empty store), "
            "then rate them with `agenttally rate`.", icon=":material/inbox:")
        if not allow_empty:
            st.stop()
        return
    if rated and not st_state.rated:
        st.info(
            f"**{st_state.events:,} events are stored but not rated yet.**  \n"
            "Run `agenttally rate` to price them; this page shows money from the rated "
            "charges.", icon=":material/calculate:")
        st.stop()


def store_error(exc: Exception) -> None:
    st.warning(f"The store is busy or unreadable right now; refresh in a moment. ({exc})",
               icon=":material/lock_clock:")
    st.stop()


def sidebar_filters(options: FilterOptions, as_of_ms: int | None = None) -> Filters:
    """Period, team, agent and model pickers; their values live in st.session_state, so they
    persist from page to page. The period opens on `filters.default_period` (the last full
    month while the current one, at the rating's as-of `as_of_ms`, is a few days old)."""
    ss = st.session_state
    periods = list(options.periods)
    if ss.get("f_period") not in periods:
        ss["f_period"] = default_period(periods, as_of_ms)
    # Only repair a choice the store no longer offers (another store, new data): writing a
    # widget's key on every run would override what the user just picked.
    for key, values in (("f_teams", options.teams), ("f_models", options.models),
                        ("f_agents", [a for a, _ in options.agents])):
        kept = [v for v in ss.get(key, []) if v in values]
        if key not in ss or kept != list(ss[key]):
            ss[key] = kept
    labels = dict(options.agents)
    with st.sidebar:
        st.markdown("##### Filters")
        st.selectbox("Period", periods, key="f_period", format_func=period_label,
                     help="Opens on the newest month, or on the last full month while the "
                          "newest is in its first days")
        st.multiselect("Team", list(options.teams), key="f_teams", placeholder="All teams")
        st.multiselect("Agent", [a for a, _ in options.agents], key="f_agents",
                       format_func=lambda a: labels.get(a, a), placeholder="All agents")
        st.multiselect("Model", list(options.models), key="f_models",
                       placeholder="All models")
    return Filters(period=ss["f_period"], teams=tuple(ss["f_teams"]),
                   agents=tuple(ss["f_agents"]), models=tuple(ss["f_models"]))


def sidebar_status(s: StoreState) -> None:
    with st.sidebar:
        st.divider()
        if s.rated_as_of_ms:
            st.caption(f"Prices as of **{when(s.rated_as_of_ms)}** "
                       f"(rated {ago(s.rated_ms)})  \n{(s.books or '').replace(',', ', ')}")
        if s.events_since_rating:
            st.caption(f":orange[{s.events_since_rating:,} events arrived since the rating]: "
                       "`agenttally rate` to include them")
        st.caption(f"Store `{s.path}` · {s.size_bytes / 1e6:,.1f} MB")
        if st.button("Refresh", icon=":material/refresh:", width="stretch"):
            st.rerun()


def filters_note(f: Filters) -> str:
    parts = []
    if f.teams:
        parts.append("team " + ", ".join(f.teams))
    if f.agents:
        parts.append(f"{len(f.agents)} agent(s)")
    if f.models:
        parts.append("model " + ", ".join(f.models))
    return " · ".join(parts) if parts else "all teams, agents and models"


# --- formats ------------------------------------------------------------------------------


def usd(value: Decimal | float | int | None, *, cents: bool | None = True) -> str:
    """$1,234.57 from an amount already rounded half-even (money is rounded in SQL or by
    pricing.money, never here). `cents=None` drops the cents from $10,000 up (forecasts,
    where they are noise); an actual amount always shows them."""
    if value is None:
        return "–"
    if not isinstance(value, Decimal):
        value = Decimal(repr(float(value)))
    if cents is None:
        cents = abs(value) < 10_000
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,.2f}" if cents else f"{abs(value):,.0f}"
    return f"{sign}${text}"


def approx(value: Decimal | float | int | None) -> str:
    """A forecast or an estimate: cents only below $10,000."""
    return usd(value, cents=None)


def short_usd(value: Decimal | float | int | None) -> str:
    """$15.2K, $1.23M, $950: an estimate where a card has little room."""
    if value is None:
        return "–"
    v = float(value)
    for size, unit, places in ((1e6, "M", 2), (1e3, "K", 1)):
        if abs(v) >= size:
            return f"{'-' if v < 0 else ''}${abs(v) / size:,.{places}f}{unit}"
    return approx(value)


def money_axis(fig: Any, top: float, axis: str = "y") -> Any:
    """Dollar ticks with cents only when the axis is small enough to need them."""
    fmt = ",.2f" if top < 10 else ",.0f"
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    update(tickprefix="$", tickformat=fmt)
    return fig


def hours(ms: int | float) -> str:
    h = ms / 3_600_000
    return f"{h:,.1f} h" if h < 10_000 else f"{h:,.0f} h"


def count(n: int | float) -> str:
    """12.3K, 4.5M, 8.0B: big counts for captions."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:,.1f}{unit}"
    return f"{n:,.0f}"


# Price units as a table cell has room for them: "$8/MTok" rather than "8 USD per million".
SHORT_PRICE_UNITS = {"USD per session-hour": "/session-h", "USD per million tokens": "/MTok",
                     "USD per 1,000 searches": "/1K searches"}


def unit_price(price: float | Decimal | None, price_unit: str | None) -> str:
    """$0.08/session-h, $8/MTok, $10/1K searches; "mixed" when a line had several prices."""
    if price is None or price != price:  # None or NaN
        return "mixed"
    text = f"{Decimal(repr(float(price))):,.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    frac = "" if not frac.strip("0") else frac.ljust(2, "0")
    unit = SHORT_PRICE_UNITS.get(price_unit or "", f" {price_unit}" if price_unit else "")
    return f"${whole}{'.' + frac if frac else ''}{unit}"


def no_none(frame: Any, **words: str) -> Any:
    """`frame` with its missing text shown as a word (`words`, by column) or blank, never as
    "None" (Streamlit's grid writes None in a null cell)."""
    text = [c for c in frame.columns if frame[c].dtype == object]
    return frame.fillna({c: words.get(c, "") for c in text})


def bill_frame(bill: Any) -> Any:
    """A session's bill for display: unit prices with their unit, words for missing values
    (runtime and search lines have no model or token class)."""
    out = bill.copy()
    out["unit_price"] = [unit_price(p, u) for p, u in
                         zip(out["unit_price"], out["price_unit"], strict=True)]
    return no_none(out, model="–", token_class="–", tier="–")


def period_label(period: str | None) -> str:
    if not period:
        return "–"
    return datetime.strptime(period + "-01", "%Y-%m-%d").strftime("%B %Y")


def when(ms: int | None) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(ms: int | None) -> str:
    if ms is None:
        return "never"
    s = max(0, time.time() - ms / 1000)
    if s < 90:
        return "just now"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} days ago"


# --- charts -------------------------------------------------------------------------------


def model_colour(model: str) -> str:
    """The colour of a model on every chart: keyed by its name only."""
    if model in MODEL_COLOURS:
        return MODEL_COLOURS[model]
    return MODEL_PALETTE[zlib.crc32(model.encode()) % len(MODEL_PALETTE)]


def series_colours(names: list[str]) -> dict[str, str]:
    """Runtime, each model's tokens ("Tokens · MODEL") and web search, always in the same
    colours, whatever else the chart shows."""
    out = {}
    for n in names:
        if n == "Runtime":
            out[n] = RUNTIME_COLOUR
        elif n == "Web search":
            out[n] = SEARCH_COLOUR
        elif n.startswith("Tokens"):
            out[n] = model_colour(n.split(" · ", 1)[-1])
    return out


def series_order(names: list[str]) -> list[str]:
    rank = {"Runtime": 0, "Web search": 2}
    return sorted(set(names), key=lambda n: (rank.get(n, 1), n))


def style(fig: Any, *, height: int = 360, legend: bool = True) -> Any:
    """The dashboard's chart look: no chart junk, dollars on the axis, legend on top."""
    fig.update_layout(
        height=height, margin={"l": 8, "r": 8, "t": 36, "b": 8},
        plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)",
        font={"family": "Inter, -apple-system, Segoe UI, sans-serif", "size": 12},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": None},
        showlegend=legend, hoverlabel={"font_size": 12},
    )
    fig.update_xaxes(showgrid=False, title=None)
    fig.update_yaxes(gridcolor="rgba(128,128,128,0.18)", title=None, zeroline=False)
    return fig


def page_header(title: str, subtitle: str | None = None) -> None:
    st.title(title, anchor=False)
    if subtitle:
        st.caption(subtitle)




def current(*, rated: bool = True, allow_empty: bool = False) -> tuple[StoreState, Filters]:
    """The store state and the sidebar's filters, set by app.py; stops the page with a
    message when the store cannot answer it."""
    s = st.session_state.get("_state")
    if s is None:
        st.warning("The store cannot be read right now (another process may hold it for "
                   "longer than usual). Refresh in a moment.", icon=":material/lock_clock:")
        st.stop()
    require(s, rated=rated, allow_empty=allow_empty)
    f = st.session_state.get("_filters") or Filters()
    return s, f
