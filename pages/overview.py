"""Overview: where this month's agent spend stands, where it is heading, and who drives it."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pricing.money import round_cents
from reports.dashboard import ui
from reports.dashboard.planning import as_of_day

state, f = ui.current()
ui.page_header("Overview", f"{ui.period_label(f.period)} · {ui.filters_note(f)}")

as_of = state.rated_as_of_ms
data = ui.batch("overview", f=f, as_of_ms=as_of)
mtd = data["mtd"]
daily = data["daily"]
current_month = as_of is not None and f.period == as_of_day(as_of).strftime("%Y-%m")

# --- headline numbers ------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns(4)
delta = None
if mtd.previous_total:
    change = (mtd.total - mtd.previous_total) / mtd.previous_total * 100
    # short enough for a quarter of a laptop screen; the help says what is compared
    delta = f"{change:+.1f}% vs {ui.period_label(mtd.previous_period)[:3]}"
c1.metric("Spend, month to date" if current_month else "Spend in the month", ui.usd(mtd.total),
          delta=delta, delta_color="inverse", border=True,
          help="Sum of the invoice lines (meter × model × token class), each rounded "
               "half-even to the cent once: the same total as `agenttally invoice`."
               + (f" The change is against {ui.period_label(mtd.previous_period)} to the "
                  "same day of the month." if delta else ""))
c1.caption(f"Runtime {ui.usd(mtd.runtime)} · Tokens {ui.usd(mtd.tokens)} · "
           f"Search {ui.usd(mtd.web_search)}" + (" · provisional" if mtd.provisional else ""))

with c2:
    if current_month:
        try:
            me = ui.batch("month_end", f=f, as_of_ms=as_of)
        except ModuleNotFoundError:
            me = None
        if me is None:
            st.metric("Forecast at month end", "–", border=True)
            st.caption("Forecasts are not available in this build.")
        else:
            st.metric("Forecast at month end", ui.approx(me.mean), border=True,
                      help=f"{me.note}. Actual complete days plus the forecast of the rest "
                           "of the month, read from simulated sample paths.")
            st.caption(f"80%: {ui.approx(me.lo80)} – {ui.approx(me.hi80)}"
                       f" · 95%: {ui.approx(me.lo95)} – {ui.approx(me.hi95)}")
    else:
        st.metric("Month closed", ui.usd(mtd.total), border=True)
        st.caption("Forecasts are made for the current month.")

with c3:
    budgets = (ui.batch("budgets", f=f, as_of_ms=as_of, only_selected=True)
               if as_of and current_month else None)
    chosen = budgets["selected"] if budgets else None
    if chosen is None:
        st.metric("Budget", "–", border=True)
        st.caption("Budgets are tracked for the current month." if not current_month else
                   "No budget for this selection." if budgets else
                   "No budgets file (data/budgets.toml).")
    else:
        # "10.6% used" would be cut in a quarter of a laptop screen: "used" goes to the label
        used = str(chosen["label"])
        st.metric(f"Budget {chosen['period']} used" if used.endswith(" used") else
                  f"Budget {chosen['period']}", used.removesuffix(" used"),
                  delta=chosen["delta"],
                  delta_color="off", delta_arrow="off", border=True, help=chosen["help"])
        st.caption(chosen["caption"])

c4.metric("Sessions", f"{mtd.sessions:,}", border=True,
          help="Sessions with any charge in the period under the filters.")
c4.caption(f"{ui.hours(mtd.running_ms)} running · {ui.count(mtd.tokens_count)} tokens")

# --- spend per day ---------------------------------------------------------------------------
st.subheader("Spend per day", anchor=False)
if daily.empty:
    st.info("No charges in this period under the current filters.", icon=":material/filter_alt:")
else:
    names = ui.series_order(list(daily["series"].unique()))
    fig = px.bar(daily, x="day", y="amount", color="series", category_orders={"series": names},
                 color_discrete_map=ui.series_colours(names),
                 labels={"amount": "USD", "day": "", "series": ""},
                 hover_data={"amount": ":$,.2f", "meter": False})
    fig.update_layout(barmode="stack", bargap=0.15)
    ui.money_axis(fig, float(daily.groupby("day")["amount"].sum().max()))
    st.plotly_chart(ui.style(fig, height=380), width="stretch", key="daily_chart")

# --- top spenders ----------------------------------------------------------------------------
st.subheader("Top spenders", anchor=False)
# Three narrow tables side by side: each column is sized so that the spend and the share
# stay in view at 1280 px (the browser test checks it); the session table is a little wider.
cols = st.columns([1, 1, 1.25])
for col, key, title, label in ((cols[0], "top_team", "Teams", "Team"),
                               (cols[1], "top_agent", "Agents", "Agent"),
                               (cols[2], "top_session", "Sessions", "Session")):
    frame: pd.DataFrame = data[key]
    with col:
        st.markdown(f"**{title}**")
        if frame.empty:
            st.caption("None in this selection.")
            continue
        if key == "top_session":
            show = frame[["label", "team", "amount"]].rename(
                columns={"label": label, "team": "Team", "amount": "Spend"})
            show["Team"] = show["Team"].fillna("")
        else:
            show = frame[["label", "amount"]].rename(columns={"label": label, "amount": "Spend"})
            show["Share"] = frame["share"] * 100
        config = {
            label: st.column_config.TextColumn(width=96 if key != "top_session" else 150),
            "Team": st.column_config.TextColumn(width=64),
            "Spend": st.column_config.NumberColumn(format="dollar", width=80),
            "Share": st.column_config.NumberColumn(format="%.1f%%", width=56,
                                                   help="Of the selection's spend"),
        }
        st.dataframe(show, hide_index=True, width="stretch", column_config=config,
                     height=min(38 + 35 * len(show), 390))

# --- runtime utilisation ---------------------------------------------------------------------
st.subheader("Runtime utilisation", anchor=False)
st.caption("Runtime is billed per millisecond while a session is running; idle time costs "
           "nothing. Hours of the sessions with spend in this period.")
if as_of is not None:
    u = data["utilisation"]
    u1, u2, u3, u4 = st.columns(4)
    active = u.running_ms + u.idle_between_ms
    u1.metric("Running (billed)", ui.hours(u.running_ms), border=True,
              help=f"{u.spans:,} running spans")
    u2.metric("Idle, free", ui.hours(u.idle_between_ms), border=True,
              help="Idle between turns: waiting for a user or a tool, with more work after "
                   "it. Idle time is not billed.")
    u3.metric("Busy share",
              f"{u.running_ms / active:.0%}" if active else "–", border=True,
              help="Of the active time: running ÷ (running + idle between turns).")
    saved_pct = (f"{u.saved / u.per_hour_cost:.0%} below per-hour" if u.per_hour_cost
                 else None)
    u4.metric("Saved by per-ms billing", ui.usd(round_cents(u.saved)), delta=saved_pct,
              delta_color="off", delta_arrow="off", border=True,
              help="What the same running spans would cost billed per started hour (each "
                   "span rounded up to a whole hour), minus what they cost per millisecond.")
    bars = go.Figure()
    for name, value, colour in (("Running (billed)", u.running_ms, ui.RUNTIME_COLOUR),
                                ("Idle between turns (free)", u.idle_between_ms, "#D9D9D9")):
        bars.add_bar(y=["Hours"], x=[value / 3_600_000], name=name, orientation="h",
                     marker_color=colour, hovertemplate="%{x:,.1f} h<extra>" + name + "</extra>")
    bars.update_layout(barmode="stack")
    bars.update_yaxes(visible=False)
    bars.update_xaxes(ticksuffix=" h", tickformat=",.1~f")
    st.plotly_chart(ui.style(bars, height=130), width="stretch", key="util_chart")
    parked = (f" {u.parked_sessions:,} sessions stayed open after their last turn, idle for "
              f"{ui.hours(u.idle_parked_ms / u.parked_sessions)} each on average "
              f"({ui.count(u.idle_parked_ms / 3_600_000)} session-hours in all), at no cost."
              if u.parked_sessions else "")
    st.caption(
        f"Billed per millisecond: **{ui.usd(round_cents(u.runtime_cost))}**. "
        f"Per started hour the same spans would cost **{ui.usd(round_cents(u.per_hour_cost))}**."
        + parked)
