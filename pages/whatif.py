"""What-if: the same usage re-rated under other prices, another model mix, more caching."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from reports.dashboard import ui

# The scenario the page opens on when data/scenarios/ has it.
FIRST_SCENARIO = "opus-to-sonnet"

state, f = ui.current()
ui.page_header("What-if", f"{ui.period_label(f.period)} · {ui.filters_note(f)}")

try:
    from pricing.scenario import ScenarioError, load_scenario, parse_scenario
    from reports.dashboard.whatif import (
        Levers,
        build_scenario,
        levers_of,
        list_scenarios,
        sample_percent_for,
        scenario_toml,
    )
except ModuleNotFoundError:
    st.info("What-if scenarios are not available in this build.", icon=":material/info:")
    st.stop()

as_of = state.rated_as_of_ms
ctx = ui.batch("whatif_context", f=f, as_of_ms=as_of)

# --- the base scenario -----------------------------------------------------------------------
files = {p.stem: p for p in list_scenarios()}
starts = ["Current prices"] + list(files)
left, right = st.columns([3, 2])
# Open on a scenario that shows a difference (the current prices re-rated are the baseline).
choice = left.selectbox("Start from", starts, key="wi_base",
                        index=starts.index(FIRST_SCENARIO) if FIRST_SCENARIO in starts else 0,
                        help="A scenario file from data/scenarios/, or today's price books.")
upload = right.file_uploader("…or load a scenario TOML", type=["toml"], key="wi_upload")
base = None
try:
    if upload is not None:
        base = parse_scenario(tomllib.loads(upload.getvalue().decode("utf-8")),
                              source=upload.name)
        choice = base.name
    elif choice in files:
        base = load_scenario(files[choice])
except (ScenarioError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
if base is not None and base.description:
    st.caption(base.description)
start = levers_of(base) if base is not None else Levers()

# --- the levers ------------------------------------------------------------------------------
current_rate = float(ctx["runtime_usd_per_hour"])
used = ctx["models_used"] or ctx["models_known"]
known = ctx["models_known"]
hit = ctx["cache_hit_rate"]
k = f"wi_{choice}_"  # a new base resets the sliders to its values
with st.form("levers", border=True):
    a, b = st.columns(2)
    with a:
        runtime = st.slider(
            "Runtime price, $ per session-hour", 0.0, 0.50,
            float(start.runtime_usd_per_hour or current_rate), 0.01, format="$%.2f",
            key=k + "runtime", help=f"In force: ${current_rate:.2f} ({ctx['book']}).")
        granularity = st.select_slider(
            "Runtime billed per", ["ms", "second", "minute", "hour"],
            value=start.runtime_granularity or "ms", key=k + "gran",
            help="Each running stretch rounded up to whole units: what per-ms billing saves.",
            disabled=base is not None and base.build_vs_buy is not None)
        growth = st.slider("Session growth, % per month", -50, 100,
                           int(start.growth_percent_per_month or 0), 1, key=k + "growth",
                           help="Drives forecasts of the scenario; the period itself is "
                                "re-rated as metered.")
    with b:
        m1, m2 = st.columns(2)
        move_from = m1.selectbox("Move traffic from", used, key=k + "from",
                                 index=used.index(start.move_from)
                                 if start.move_from in used else 0)
        # Models the selection already uses first (the likely targets), then every other.
        targets = [m for m in used + known if m != move_from]
        targets = list(dict.fromkeys(targets)) or known
        default_to = start.move_to if start.move_to in targets else targets[0]
        move_to = m2.selectbox("to", targets, index=targets.index(default_to), key=k + "to")
        m3, m4 = st.columns(2)
        move_pct = m3.slider("Share moved, %", 0, 100, int(start.move_percent or 0), 5,
                             key=k + "pct")
        multiplier = m4.number_input("Token multiplier", 0.1, 5.0,
                                     float(start.move_multiplier), 0.05, key=k + "mult",
                                     help="Tokens the target model needs per source token.")
        cache = st.slider(
            "Cache hit rate, % of prompt tokens", 0, 95,
            int(start.cache_hit_rate_percent or round(100 * (hit or 0))), 1, key=k + "cache",
            help="Cache reads ÷ (uncached input + cache reads + cache writes); now "
                 + (f"{hit:.0%}." if hit is not None else "unknown."))
    submitted = st.form_submit_button("Re-rate", type="primary", icon=":material/calculate:")

observed_cache = round(100 * (hit or 0))
levers = Levers(
    runtime_usd_per_hour=None if abs(runtime - current_rate) < 1e-9 and
    start.runtime_usd_per_hour is None else Decimal(f"{runtime:.2f}"),
    move_from=move_from, move_to=move_to, move_percent=Decimal(move_pct),
    move_multiplier=Decimal(f"{multiplier:.2f}"),
    cache_hit_rate_percent=None if cache == observed_cache and
    start.cache_hit_rate_percent is None else Decimal(cache),
    growth_percent_per_month=Decimal(growth),
    runtime_granularity=None if granularity == "ms" and
    (base is None or base.billing.runtime_granularity == "ms") else granularity,
)
try:
    scenario = build_scenario(base, levers, name=base.name if base else "my-scenario")
except (ScenarioError, ValueError) as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

# Re-rating reads every event of the selected sessions: beyond a few tens of thousands of
# sessions that takes minutes, so a big selection is estimated from a sample unless asked.
sample = sample_percent_for(ctx["sessions"])
if sample is not None:
    exact = st.toggle(f"Re-rate all {ctx['sessions']:,} sessions exactly (minutes)",
                      key="wi_exact",
                      help=f"Off: a {sample}% sample of the sessions is re-rated and scaled to "
                           "the selection's actual spend (seconds).")
    sample = None if exact else sample
with st.spinner("Re-rating the selected sessions under the scenario…"):
    result = ui.batch("whatif", f=f, as_of_ms=as_of, scenario=scenario.model_dump(mode="json"),
                      sample_percent=sample)

# --- baseline vs scenario --------------------------------------------------------------------
base_total, scen_total = result["baseline_total"], result["scenario_total"]
diff = scen_total - base_total
c1, c2, c3 = st.columns(3)
c1.metric("Baseline", ui.usd(base_total), border=True,
          help="The same sessions re-rated as they are. Both sides are sums of invoice "
               "lines (meter × model × token class), each rounded half-even to the cent.")
c2.metric(f"Scenario: {result['scenario_name']}", ui.usd(scen_total), border=True)
c3.metric("Difference", ui.usd(diff),
          delta=f"{diff / base_total * 100:+.1f}%" if base_total and diff else None,
          delta_color="inverse", border=True)
st.caption(f"{result['sessions']:,} sessions with spend in {ui.period_label(f.period)} "
           "re-rated from their events, as of the rating"
           + (" (a sample: the scenario's numbers are estimates)." if result["estimated"]
              else "."))
for note in result["notes"]:
    st.caption(f":material/info: {note}")

meters: pd.DataFrame = result["meters"]
names = {"runtime": "Runtime", "tokens": "Tokens", "web_search": "Web search"}
left, right = st.columns(2)  # half the width: the table's five columns fit at 1280 px
with left:
    fig = go.Figure()
    labels = [names.get(m, m.replace("_", " ").capitalize()) for m in meters["meter"]]
    fig.add_bar(x=labels, y=meters["baseline"], name="Baseline", marker_color="#9FB3C8",
                hovertemplate="%{x}: %{y:$,.2f}<extra>baseline</extra>")
    fig.add_bar(x=labels, y=meters["scenario"], name="Scenario", marker_color=ui.RUNTIME_COLOUR,
                hovertemplate="%{x}: %{y:$,.2f}<extra>scenario</extra>")
    fig.update_layout(barmode="group", bargap=0.3)
    ui.money_axis(fig, float(max(meters["baseline"].max(), meters["scenario"].max())
                             if len(meters) else 0))
    st.plotly_chart(ui.style(fig, height=340), width="stretch", key="wi_meters")
with right:
    table = meters.assign(meter=labels)
    st.dataframe(ui.no_none(table), hide_index=True, width="stretch", column_config={
        "meter": st.column_config.TextColumn(width=84),
        "baseline": st.column_config.NumberColumn(format="dollar", width=80),
        "scenario": st.column_config.NumberColumn(format="dollar", width=80),
        "delta": st.column_config.NumberColumn("Δ", format="dollar", width=76),
        "delta_pct": st.column_config.NumberColumn("Δ %", format="%+.1f%%", width=60),
    })

st.subheader("By model", anchor=False)
st.dataframe(ui.no_none(result["models"]), hide_index=True, width="stretch",
             column_config={
    "baseline": st.column_config.NumberColumn(format="dollar"),
    "scenario": st.column_config.NumberColumn(format="dollar"),
    "delta": st.column_config.NumberColumn("Δ", format="dollar"),
    "delta_pct": st.column_config.NumberColumn("Δ %", format="%+.1f%%"),
})

daily = result["baseline_daily"].merge(result["scenario_daily"], on="day", how="outer",
                                       suffixes=("_baseline", "_scenario")).fillna(0.0)
if len(daily):
    lines = go.Figure()
    lines.add_scatter(x=daily["day"], y=daily["usd_baseline"], name="Baseline",
                      line={"color": "#9FB3C8", "width": 2})
    lines.add_scatter(x=daily["day"], y=daily["usd_scenario"], name="Scenario",
                      line={"color": ui.RUNTIME_COLOUR, "width": 2})
    lines.update_yaxes(rangemode="tozero")
    ui.money_axis(lines, float(daily[["usd_baseline", "usd_scenario"]].max().max()))
    st.subheader("Per day", anchor=False)
    st.plotly_chart(ui.style(lines, height=300), width="stretch", key="wi_daily")

# --- save ------------------------------------------------------------------------------------
st.subheader("Save this scenario", anchor=False)
s1, s2 = st.columns([2, 3])
name = s1.text_input("Name", value=scenario.name, key="wi_name")
try:
    to_save = build_scenario(scenario, Levers(), name=name.strip() or scenario.name)
except (ScenarioError, ValueError) as exc:
    st.error(str(exc))
    st.stop()
text = scenario_toml(to_save)
s2.download_button("Download TOML", text, file_name=f"{Path(to_save.name).name}.toml",
                   mime="application/toml", icon=":material/download:", on_click="ignore")
with st.expander("Scenario file"):
    st.code(text, language="toml")
    st.caption("Put it in `data/scenarios/` and run `agenttally whatif "
               f"data/scenarios/{to_save.name}.toml --period {f.period}`.")
_ = submitted
