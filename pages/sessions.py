"""Sessions: find a session, see what it did over time and what each part of it cost."""

from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from reports.dashboard import ui

state, f = ui.current()
ui.page_header("Sessions", f"{ui.period_label(f.period)} · {ui.filters_note(f)}")

c1, c2 = st.columns([3, 1])
search = c1.text_input("Search", key="s_search", placeholder="Session id, title or agent name",
                       label_visibility="collapsed")
limit = c2.selectbox("Show", [50, 200, 1000], index=1, key="s_limit",
                     format_func=lambda n: f"Top {n} by cost", label_visibility="collapsed")
sessions: pd.DataFrame = ui.batch("sessions", f=f, search=search, limit=limit)
if sessions.empty:
    st.info("No session matches in this period under the current filters.",
            icon=":material/search_off:")
    st.stop()

# The cost right after the title, and few enough columns to fit a laptop screen (1280 px,
# checked by the browser test); status, project and creation time are in the caption of
# the session shown below.
picked = st.dataframe(
    sessions.fillna({"title": "", "team": "", "project": "", "agent": "", "model": "",
                     "status": ""}),
    hide_index=True, width="stretch", height=320, key="s_table",
    on_select="rerun", selection_mode="single-row",
    column_order=["session_id", "title", "cost", "running_h", "team", "agent", "model"],
    column_config={
        "session_id": st.column_config.TextColumn("session", width=160),
        "title": st.column_config.TextColumn(width=160),
        "cost": st.column_config.NumberColumn(format="dollar", width=80),
        "running_h": st.column_config.NumberColumn("running h", format="%.2f", width=72),
        "team": st.column_config.TextColumn(width=72),
        "agent": st.column_config.TextColumn(width=104),
        "model": st.column_config.TextColumn(width=130),
    })
rows = picked.selection.rows if picked is not None else []
session_id = str(sessions["session_id"].iloc[rows[0] if rows else 0])
st.caption("Select a row to see its timeline; the costliest session is shown by default.")

# Live: a session's timeline is read from its events up to now, not up to the rating.
detail = ui.batch("session", session_id=session_id,
                  as_of_ms=max(int(time.time() * 1000), state.rated_as_of_ms or 0))
info = detail["info"] or {}
iv: pd.DataFrame = detail["intervals"]
threads: pd.DataFrame = detail["threads"]
requests: pd.DataFrame = detail["requests"]
bill: pd.DataFrame = detail["bill"]

st.subheader(info.get("title") or session_id, anchor=False)
created = info.get("created_ms")
row = sessions.loc[sessions["session_id"] == session_id]
project = row["project"].iloc[0] if len(row) else None
st.caption(" · ".join(str(x) for x in (
    session_id, info.get("team"), f"project {project}" if isinstance(project, str) else None,
    info.get("agent_name"), info.get("model_id"), info.get("model_speed"),
    info.get("inference_geo"), info.get("status"),
    f"created {ui.when(created)}" if created is not None else None) if x))
running = int(iv.loc[iv["status"] == "running", "duration_ms"].sum()) if len(iv) else 0
idle = int(iv.loc[iv["status"] == "idle", "duration_ms"].sum()) if len(iv) else 0
m1, m2, m3, m4 = st.columns(4)
m1.metric("Cost", ui.usd(detail["cost"]), border=True,
          help="The session's invoice lines (meter × model × token class), each rounded "
               "half-even to the cent, summed. Rows below are rounded one by one.")
m2.metric("Running (billed)", ui.hours(running), border=True)
m3.metric("Idle (free)", ui.hours(idle), border=True)
m4.metric("Model requests", f"{len(requests):,}", border=True)

STATUS_COLOURS = {"running": ui.RUNTIME_COLOUR, "idle": "#D9D9D9", "rescheduling": "#F2B134",
                  "terminated": "#555555", "deleted": "#555555"}


def ts(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms, unit="ms", utc=True)


fig = go.Figure()
lanes: list[str] = []
if len(iv):
    lanes.append("Session")
    for status, part in iv.groupby("status", sort=False):
        dur = part["end_ms"] - part["start_ms"]
        fig.add_bar(y=["Session"] * len(part), x=dur, base=ts(part["start_ms"]),
                    orientation="h", name=status, marker_color=STATUS_COLOURS.get(status, "#999"),
                    customdata=(dur / 60000).round(2),
                    hovertemplate=f"{status}: %{{customdata}} min<br>%{{base|%H:%M:%S}}"
                                  "<extra></extra>", legendgroup=status)
for thread_id, part in threads.groupby("thread_id", sort=False):
    lane = f"{part['agent_name'].iloc[0] or 'thread'} · {str(thread_id)[-6:]}"
    lanes.append(lane)
    for status, seg in part.groupby("status", sort=False):
        fig.add_bar(y=[lane] * len(seg), x=seg["end_ms"] - seg["start_ms"],
                    base=ts(seg["start_ms"]), orientation="h", name=status,
                    marker_color=STATUS_COLOURS.get(status, "#999"), showlegend=False,
                    legendgroup=status, hovertemplate=f"{status}<extra>{lane}</extra>")
if len(requests):
    lanes.append("Model requests")
    tokens = requests[["input_tokens", "output_tokens", "cache_write_tokens",
                       "cache_read_tokens"]].sum(axis=1)
    fig.add_scatter(
        y=["Model requests"] * len(requests), x=ts(requests["at_ms"]), mode="markers",
        name="model request", marker={"color": "#1F5F8B", "symbol": "line-ns-open",
                                      "size": 14, "line": {"width": 2}},
        customdata=requests[["input_tokens", "output_tokens", "cache_read_tokens"]].join(
            tokens.rename("total")),
        hovertemplate="%{x|%H:%M:%S}<br>in %{customdata[0]:,} · out %{customdata[1]:,}"
                      " · cache read %{customdata[2]:,}<extra>request</extra>")
if lanes:
    # Zoom on the activity: sessions often sit idle for days after their last turn.
    busy = iv.loc[iv["status"] != "idle"] if len(iv) else iv
    ends = [busy["end_ms"].max() if len(busy) else None,
            requests["at_ms"].max() if len(requests) else None,
            threads.loc[threads["status"] == "running", "end_ms"].max() if len(threads) else None]
    first = min(x for x in [iv["start_ms"].min() if len(iv) else None,
                            requests["at_ms"].min() if len(requests) else None,
                            threads["start_ms"].min() if len(threads) else None]
                if x is not None and x == x)
    last = max((x for x in ends if x is not None and x == x), default=first)
    pad = max((last - first) * 0.05, 60_000)
    span_end = max(iv["end_ms"].max() if len(iv) else last, last)
    # Plotly's horizontal bars take x as a duration in ms on a date axis with `base`.
    fig.update_xaxes(type="date", range=[pd.to_datetime(first - pad, unit="ms", utc=True),
                                         pd.to_datetime(last + pad, unit="ms", utc=True)])
    tail = (f"Then idle until {ui.when(int(span_end))} ({ui.hours(span_end - last)}, free): "
            "zoom out on the chart to see it." if span_end > last + pad else None)
    fig.update_yaxes(categoryorder="array", categoryarray=lanes[::-1])
    fig.update_layout(barmode="overlay", bargap=0.35)
    st.plotly_chart(ui.style(fig, height=140 + 38 * len(lanes)), width="stretch",
                    key="s_gantt")
    if tail:
        st.caption(tail)
else:
    st.caption("No status events for this session.")

st.markdown("**Cost breakdown**")
if bill.empty:
    st.caption("No charges for this session (yet).")
else:
    # Unit prices with their unit ($8/MTok), no blank cells, the provisional flag last.
    st.dataframe(ui.bill_frame(bill), hide_index=True, width="stretch",
                 column_order=["meter", "model", "token_class", "tier", "quantity", "unit",
                               "unit_price", "amount", "provisional"],
                 column_config={
        "meter": st.column_config.TextColumn(width=72),
        "model": st.column_config.TextColumn(width=124),
        "token_class": st.column_config.TextColumn("token class", width=110),
        "tier": st.column_config.TextColumn(width=80),
        "quantity": st.column_config.NumberColumn(format="localized", width=100),
        "unit": st.column_config.TextColumn(width=56),
        "unit_price": st.column_config.TextColumn("unit price", width=120),
        "amount": st.column_config.NumberColumn(format="dollar", width=80),
        "provisional": st.column_config.CheckboxColumn(
            "open", width=50, help="Provisional: the session is still open at the rating"),
    })
    if bill["unit_price"].isna().any():
        st.caption("A line without a unit price was billed at more than one price in the "
                   "period (e.g. a price book changed mid-month); its amount is their sum.")
