"""Chargeback: who spent what, by team, project or any tag, to the cent of the invoice."""

from __future__ import annotations

from collections.abc import Callable

import plotly.express as px
import streamlit as st

from reports.dashboard import ui

state, f = ui.current()
ui.page_header("Chargeback", f"{ui.period_label(f.period)} · {ui.filters_note(f)}")

try:
    import reports.chargeback  # noqa: F401
except ModuleNotFoundError:
    st.info("Chargeback reports are not available in this build.", icon=":material/info:")
    st.stop()

keys = ui.batch("chargeback_keys")
c1, c2, c3 = st.columns([2, 2, 3])
by = c1.selectbox("Group by", keys, key="cb_by",
                  format_func=lambda k: k.replace("_", " ").capitalize(),
                  help="A tag key of the sessions (team, project, cost center, ...). Tags are "
                       "read from the session, else its agent, else its environment.")
mode = c2.segmented_control("Mode", ["chargeback", "showback"], default="chargeback",
                            key="cb_mode", format_func=str.capitalize,
                            help="Chargeback re-assigns shared costs by the allocation rules; "
                                 "showback leaves them where they fall.") or "chargeback"
chart_kind = c3.segmented_control("Chart", ["Treemap", "Sunburst"], default="Treemap",
                                  key="cb_chart") or "Treemap"

with st.spinner("Allocating the period's charges…"):
    report = ui.batch("chargeback", f=f, by=by, mode=mode)
table, tree = report["table"], report["tree"]

m1, m2, m3 = st.columns(3)
m1.metric("Allocated", ui.usd(report["total"]), border=True,
          help="Every dollar lands in exactly one group; the groups add up to the invoice.")
m2.metric("Invoice total", ui.usd(report["invoice_total"]), border=True)
m3.metric("Groups", f"{len(table):,}", border=True)
st.caption("Allocation rules: " + (f"`{report['rules']}`" if report["rules"] else
           "defaults (session tag, else agent, else environment; nothing shared) — set "
           "`AGENTTALLY_ALLOCATION` to a rules file to change them")
           + (" · provisional: sessions still running" if report["provisional"] else ""))
for warning in report["warnings"]:
    st.warning(warning, icon=":material/warning:")

if tree.empty:
    st.info("No charges in this period under the current filters.", icon=":material/filter_alt:")
else:
    names = ui.series_order(list(tree["series"].unique()))
    colours = ui.series_colours(names)
    colours["(?)"] = "#EEEEEE"
    tree = tree.assign(root="All")
    maker = px.treemap if chart_kind == "Treemap" else px.sunburst
    fig = maker(tree, path=["root", "group", "series"], values="amount", color="series",
                color_discrete_map={**colours, "(?)": "#E8E8E8"})
    fig.update_traces(hovertemplate="<b>%{label}</b><br>%{value:$,.2f}"
                                    "<br>%{percentRoot:.1%} of all<extra></extra>",
                      texttemplate="<b>%{label}</b><br>%{value:$,.0f}")
    if chart_kind == "Treemap":
        fig.update_traces(root_color="rgba(0,0,0,0)", marker={"cornerradius": 4})
    st.plotly_chart(ui.style(fig, height=460, legend=False), width="stretch",
                    key="cb_chart_fig")

st.subheader("By " + by.replace("_", " "), anchor=False)
# What users come for first: the group, its total and its share, then the split by meter and
# model. Counts and unit costs wait behind a toggle so that the money fits a laptop screen.
models = [c for c in table.columns if c.startswith("cost_tokens:")]
shown = [by, "total", "share_pct", "cost_runtime", *models, "cost_web_search"]
if "shared" in table and table["shared"].abs().sum() > 0:
    shown.append("shared")
everything = st.toggle("Counts and unit costs", key="cb_all_columns",
                       help="Sessions, running hours, tokens, cost per session and per running "
                            "hour beside the money.")
if everything:
    shown += ["sessions", "running_hours", "tokens", "cost_per_session",
              "cost_per_running_hour"]
money = st.column_config.NumberColumn
config = {c: money(c.removeprefix("cost_tokens:").removeprefix("claude-")
                   if c in models else c.removeprefix("cost_").replace("_", " "),
                   format="dollar", width=96 if c in models else 84,
                   help=f"Tokens of {c.removeprefix('cost_tokens:')}" if c in models else None)
          for c in table.columns if c.startswith("cost_") or c == "shared"}
config.update({
    by: st.column_config.TextColumn(by.replace("_", " "), pinned=True),
    "total": money("total", format="dollar", width=96),
    "share_pct": st.column_config.ProgressColumn("share", format="%.1f%%", min_value=0,
                                                 max_value=100, width=92),
    "sessions": st.column_config.NumberColumn(format="localized", width=72),
    "running_hours": st.column_config.NumberColumn("running h", format="%.1f", width=76),
    "tokens": st.column_config.NumberColumn(format="compact", width=64),
    "cost_per_session": money("per session", format="dollar", width=84),
    "cost_per_running_hour": money("per running h", format="dollar", width=96),
})
st.dataframe(table.fillna({by: "(none)"}), hide_index=True, width="stretch",
             column_order=shown, column_config=config)

st.subheader("Download", anchor=False)
st.caption("Built when you click, from the same charges: the table above, the charge lines "
           "(one per day × session × SKU), or FOCUS 1.2 rows for FinOps tools.")
period = f.period or "all"


def export_data(what: str, fmt: str) -> Callable[[], bytes]:
    """The download's bytes, built only when its button is clicked (ui.fresh: uncached)."""
    return lambda: ui.fresh("export", f=f, what=what, fmt=fmt, by=by, mode=mode)


cols = st.columns(3)
for col, (what, title) in zip(cols, (("chargeback", "Chargeback table"),
                                     ("charges", "Charge lines"), ("focus", "FOCUS 1.2")),
                              strict=True):
    col.markdown(f"**{title}**")
    left, right = col.columns(2)
    for box, fmt in ((left, "csv"), (right, "parquet")):
        box.download_button(
            "CSV" if fmt == "csv" else "Parquet",
            data=export_data(what, fmt),
            file_name=(f"agenttally-{what}-{period}"
                       f"{'-' + by if what == 'chargeback' else ''}.{fmt}"),
            mime="text/csv" if fmt == "csv" else "application/vnd.apache.parquet",
            icon=":material/download:", on_click="ignore", width="stretch",
            key=f"dl_{what}_{fmt}")

# --- contract (issue 20): credit balance and run-out, commitment utilisation --------------
from reports.dashboard.contracts import contracts_path  # noqa: E402

st.subheader("Contract")
chosen_contract = contracts_path()
view = ui.batch("contracts", f=f,
                contract_path=str(chosen_contract) if chosen_contract else None)
if view["contract"] is None:
    st.caption(f"List prices: no contract. Set `{view['env']}` to a contract file (see "
               "`data/contracts/`) to see credits, commitments and the amount due.")
elif view.get("statement", True) is None:
    st.caption(f"Contract {view['contract']}: no charges yet.")
else:
    k1, k2, k3, k4 = st.columns(4)
    k1.metric("Amount due", ui.usd(view["amount_due"]), border=True,
              help=f"{view['period']} under {view['contract']}: list "
                   f"{ui.usd(view['list_amount'])} after discounts, true-ups and credits.")
    k2.metric("Credit balance", ui.usd(view["balance"]), border=True)
    runout = view["runout"]
    k3.metric("Credit runs out", runout.isoformat() if runout else "not within a year",
              border=True,
              help="Median day the forecast spend uses up the balance"
                   + (f" (80%: {view['runout_p10']} .. {view['runout_p90']})"
                      if view["runout_p10"] else ""))
    expiry = view["first_expiry"]
    k4.metric("First expiry", expiry.isoformat() if expiry else "-", border=True,
              help="Unused credit is gone at 23:59:59.999Z of its expiry day.")
    if expiry and (runout is None or runout > expiry):
        st.warning(f"Credit is likely to expire unused on {expiry}.", icon=":material/warning:")
    if view["commitments"]:
        st.dataframe(view["commitments"], hide_index=True, width="stretch")
    if view["adjustments"]:
        st.dataframe(view["adjustments"], hide_index=True, width="stretch")
