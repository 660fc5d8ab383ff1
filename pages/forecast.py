"""Forecast & budgets: the daily spend, where it is heading with 80/95% bands, and budgets."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from reports.dashboard import ui
from reports.dashboard.planning import as_of_day, month_end_day

state, f = ui.current()
ui.page_header("Forecast & budgets", f"{ui.filters_note(f)} · daily cost, all periods")

try:
    import reports.forecast  # noqa: F401
except ModuleNotFoundError:
    st.info("Forecasts are not available in this build.", icon=":material/info:")
    st.stop()

as_of = state.rated_as_of_ms
# ui.current() stopped the page unless the store is rated, and a rating stores its run (with
# its as-of) in the transaction that stores the charges
assert as_of is not None, "a rated store has a rating run"
horizon_choice = st.segmented_control(
    "Horizon", ["To next month end", "30 days", "90 days"], default="To next month end",
    key="fc_horizon") or "To next month end"
horizon = {"30 days": 30, "90 days": 90}.get(horizon_choice)

with st.spinner("Fitting the forecast…"):
    fc = ui.batch("planning", f=f, as_of_ms=as_of, horizon=horizon)
history: pd.DataFrame = fc["history"]
future: pd.DataFrame = fc["forecast"]
me = fc["month_end"]

c1, c2, c3 = st.columns(3)
c1.metric(f"{ui.period_label(me.period)} so far", ui.usd(fc["month_invoiced"]), border=True,
          help="The month's invoice lines to the rating's as-of instant, each rounded "
               "half-even to the cent (as on the Overview and `agenttally invoice`).")
c2.metric("Forecast at month end", ui.approx(me.mean), border=True,
          help="Actual so far plus the forecast of the remaining days.")
c3.metric("80% interval", f"{ui.short_usd(me.lo80)}–{ui.short_usd(me.hi80).lstrip('$')}",
          border=True, help=f"80%: {ui.approx(me.lo80)} – {ui.approx(me.hi80)}; "
                           f"95%: {ui.approx(me.lo95)} – {ui.approx(me.hi95)}")
st.caption(f"Model: {fc['note']}.")
for change in fc.get("price_changes", []):
    st.info(f"Price book **{change['book']}** takes effect on {change['day']:%d %b %Y}: "
            f"{change['effect']:+.1%} on this usage mix. The forecast prices each day's usage "
            f"with the book in force that day.", icon=":material/event:")

budgets = ui.batch("budgets", f=f, as_of_ms=as_of)
chosen = budgets["selected"] if budgets else None

fig = go.Figure()
if not future.empty:
    x = list(future["day"]) + list(future["day"])[::-1]
    fig.add_trace(go.Scatter(x=x, y=list(future["hi95"]) + list(future["lo95"])[::-1],
                             fill="toself", fillcolor="rgba(201,100,66,0.12)",
                             line={"width": 0}, name="95% interval", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=list(future["hi80"]) + list(future["lo80"])[::-1],
                             fill="toself", fillcolor="rgba(201,100,66,0.25)",
                             line={"width": 0}, name="80% interval", hoverinfo="skip"))
fig.add_trace(go.Scatter(x=history["day"], y=history["usd"], name="Actual",
                         line={"color": "#1F5F8B", "width": 2},
                         hovertemplate="%{x|%a %d %b}: %{y:$,.2f}<extra>actual</extra>"))
if not future.empty:
    fig.add_trace(go.Scatter(x=future["day"], y=future["mean"], name="Forecast",
                             line={"color": ui.RUNTIME_COLOUR, "width": 2, "dash": "dot"},
                             hovertemplate="%{x|%a %d %b}: %{y:$,.2f}<extra>forecast</extra>"))
day = as_of_day(as_of)
fig.add_vline(x=pd.Timestamp(day), line={"color": "rgba(128,128,128,0.6)", "dash": "dash",
                                          "width": 1})
for change in fc.get("price_changes", []):
    fig.add_vline(x=pd.Timestamp(change["day"]), line={"color": "#8B5A1F", "dash": "dot",
                                                       "width": 1},
                  annotation_text=f"{change['book']} ({change['effect']:+.1%})",
                  annotation_position="top left")
fig.update_yaxes(rangemode="tozero")
ui.money_axis(fig, max([float(history["usd"].max()) if len(history) else 0.0,
                        float(future["hi95"].max()) if len(future) else 0.0]))
fig.update_traces(mode="lines")
st.subheader("Daily spend", anchor=False)
st.plotly_chart(ui.style(fig, height=400), width="stretch", key="fc_daily")

# Cumulative spend of the month against its budget lines; the bands come from the sample
# paths' running sums (a sum of daily bands would overstate the spread).
st.subheader(f"{ui.period_label(me.period)}: cumulative spend", anchor=False)
month_start = pd.Timestamp(day.replace(day=1))
end = pd.Timestamp(month_end_day(day))
hist_month = history[(history["day"] >= month_start) & (history["day"] < pd.Timestamp(day))]
actual_cum = hist_month["usd"].cumsum()
mc: pd.DataFrame = fc["month_cum"]
cum = go.Figure()
if len(mc):
    start_x = [pd.Timestamp(day) - timedelta(days=1)]
    base = [fc["month_actual"]]
    xs = start_x + list(mc["day"])
    for lo, hi, alpha, label in (("lo95", "hi95", 0.12, "95% interval"),
                                 ("lo80", "hi80", 0.25, "80% interval")):
        band = base + list(mc[hi]) + (base + list(mc[lo]))[::-1]
        cum.add_trace(go.Scatter(x=xs + xs[::-1], y=band, fill="toself",
                                 fillcolor=f"rgba(201,100,66,{alpha})", line={"width": 0},
                                 name=label, hoverinfo="skip"))
    cum.add_trace(go.Scatter(x=xs, y=base + list(mc["mean"]), name="Forecast",
                             line={"color": ui.RUNTIME_COLOUR, "dash": "dot", "width": 2},
                             hovertemplate="%{x|%d %b}: %{y:$,.0f}<extra>forecast</extra>"))
cum.add_trace(go.Scatter(x=hist_month["day"], y=actual_cum, name="Actual",
                         line={"color": "#1F5F8B", "width": 2.5},
                         hovertemplate="%{x|%d %b}: %{y:$,.2f}<extra>actual</extra>"))
if chosen and chosen["monthly"]:
    for line in chosen["lines"]:
        full = line["label"].startswith("100%")
        cum.add_hline(y=line["amount"], line={"color": "#B3261E" if full else "#9E9E9E",
                                              "dash": "solid" if full else "dash",
                                              "width": 1.5 if full else 1},
                      annotation_text=f"{line['label']} ({ui.approx(line['amount'])})",
                      annotation_position="top left", annotation_font_size=11)
cum.update_yaxes(rangemode="tozero")
ui.money_axis(cum, max([float(actual_cum.max()) if len(actual_cum) else 0.0,
                        float(mc["hi95"].max()) if len(mc) else 0.0]))
cum.update_xaxes(range=[month_start - timedelta(hours=12), end + timedelta(hours=12)])
cum.update_traces(mode="lines")
st.plotly_chart(ui.style(cum, height=360), width="stretch", key="fc_cum")

st.subheader("Budgets", anchor=False)
if budgets is None:
    st.info("No budgets file: write one like `data/budgets.toml` (or point "
            "`AGENTTALLY_BUDGETS` at it) to see budget lines, the odds of an overrun and the "
            "projected crossing date here.", icon=":material/savings:")
else:
    if chosen:
        st.markdown(f"**{chosen['period']}:** {chosen['label']} {chosen['caption']}.")
    # what a reader comes for (used, odds of overrun, forecast); the rest behind a toggle
    detail = st.toggle("Actual, 80% range and group", key="budget_detail")
    st.dataframe(budgets["table"], hide_index=True, width="stretch",
                 column_order=["budget", "period", "used %", "overrun odds", "forecast",
                               "amount", "100% crossed"]
                 + (["actual", "forecast 80%", "group"] if detail else []),
                 column_config={
        "budget": st.column_config.TextColumn(width="small"),
        "period": st.column_config.TextColumn(width=70),
        "used %": st.column_config.ProgressColumn(format="%.0f%%", min_value=0,
                                                  max_value=100, width=90),
        "overrun odds": st.column_config.NumberColumn(format="percent", width=90),
        "forecast": st.column_config.NumberColumn("forecast", format="dollar", width=90,
                                                  help="mean forecast at the period's end"),
        "amount": st.column_config.NumberColumn(format="dollar", width=90),
        "actual": st.column_config.NumberColumn(format="dollar", width=90),
    })
    st.caption(f"From `{budgets['file']}`, on all charges (a budget is for its own group, "
               "whatever the filters). Crossing dates are the median and the 80% range over "
               "the forecast's sample paths.")

st.subheader("Backtest", anchor=False)
st.caption("Rolling-origin evaluation on this series: at each origin the model sees only the "
           "days before it and forecasts the next 14, beside two baselines spend trackers use.")
if st.toggle("Run the backtest", key="fc_backtest",
             help="Refits the model at a dozen origins (a few seconds)."):
    with st.spinner("Backtesting…"):
        bt = ui.batch("backtest", f=f, as_of_ms=as_of)
    if bt["improvement"] is not None:
        better = bt["improvement"] >= 0
        st.metric("Daily forecast error (MAPE) vs the better baseline",
                  f"{abs(bt['improvement']):.0f}% {'lower' if better else 'higher'}",
                  help="MAPE: the mean absolute percentage error of the daily forecasts over "
                       "the backtest's origins; lower is better.")
    st.dataframe(bt["scores"], hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.1f") for c in bt["scores"].columns
        if c.endswith("%")})
    for note in bt["notes"]:
        st.caption(note)
