"""Data: what the store holds, how fresh it is, what was refused and which prices apply."""

from __future__ import annotations

import time

import streamlit as st

from reports.dashboard import ui
from reports.dashboard.status import price_books

state, _ = ui.current(rated=False, allow_empty=True)
ui.page_header("Data", f"Store `{state.path}`")

data = ui.batch("data")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Store size", f"{(data['size_bytes'] + data['wal_bytes']) / 1e6:,.1f} MB",
          border=True, help=f"File {data['size_bytes']:,} bytes, write-ahead log "
                            f"{data['wal_bytes']:,} bytes.")
c2.metric("Events", f"{state.events:,}", border=True,
          help=f"Latest event {ui.when(state.last_event_ms)}.")
quarantined = int(data["quarantine"]["lines"].sum()) if len(data["quarantine"]) else 0
c3.metric("Quarantined lines", f"{quarantined:,}", border=True,
          help="Lines refused at ingest, kept with the reason; never silently dropped.")
c4.metric("Last rating", ui.ago(state.rated_ms), border=True,
          help=f"Priced as of {ui.when(state.rated_as_of_ms)}.")
if state.events_since_rating:
    st.warning(f"{state.events_since_rating:,} events arrived after the last rating; money "
               "pages do not include them until `agenttally rate` runs.",
               icon=":material/schedule:")

st.subheader("Ingest", anchor=False)
if data["ingests"].empty:
    st.caption("Nothing ingested yet.")
else:
    st.dataframe(ui.no_none(data["ingests"]), hide_index=True, width="stretch",
                 column_config={
        "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        "seconds": st.column_config.NumberColumn(format="%.2f"),
        **{c: st.column_config.NumberColumn(format="localized")
           for c in ("lines", "new_events", "duplicates", "records", "quarantined")},
    })

st.subheader("Quarantine", anchor=False)
if data["quarantine"].empty:
    st.success("No line was refused.", icon=":material/check_circle:")
else:
    st.dataframe(ui.no_none(data["quarantine"]), hide_index=True, width="stretch",
                 column_config={
        "latest": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "lines": st.column_config.NumberColumn(format="localized")})
    with st.expander(f"Latest {len(data['quarantined'])} quarantined lines"):
        st.dataframe(ui.no_none(data["quarantined"]), hide_index=True, width="stretch")

st.subheader("Unrated usage", anchor=False)
if data["unrated"].empty:
    st.caption("All usage has a price.")
else:
    st.caption("Usage with no price (an unknown model, no book in force): in no total, "
               "never priced at zero.")
    st.dataframe(ui.no_none(data["unrated"], model="(none)"), hide_index=True,
                 width="stretch")

st.subheader("Price books", anchor=False)
try:
    books = price_books(state.rated_as_of_ms or int(time.time() * 1000))
except Exception as exc:  # noqa: BLE001 - a broken book must not take the page down
    st.error(f"Price books cannot be loaded: {exc}", icon=":material/error:")
else:
    st.dataframe(ui.no_none(books, to="open-ended"), hide_index=True, width="stretch",
                 column_config={
        "in force": st.column_config.CheckboxColumn(help="Covers the rating's as-of instant"),
        "runtime $/session-hour": st.column_config.NumberColumn(format="$%.2f"),
        "web search $/1,000": st.column_config.NumberColumn(format="$%.2f"),
        "source": st.column_config.LinkColumn(),
    })

st.subheader("Closed months and corrections", anchor=False)
billing = ui.batch("billing")
if billing["closed"].empty:
    st.caption("No month is closed yet: every invoice is open and follows the ledger. "
               "`agenttally close --period YYYY-MM` issues one, never to change.")
else:
    st.caption("An issued invoice never changes. Usage that reaches a closed month later is "
               "billed as corrections in the next open month (or settled by a reissue's "
               "note): first issued + billed later + pending = what the month costs now.")
    money = {c: st.column_config.NumberColumn(format="$%.2f")
             for c in ("first issued $", "billed later $", "pending corrections $",
                       "costs now $", "amount $")}
    st.dataframe(ui.no_none(billing["closed"]), hide_index=True, width="stretch",
                 column_config={
        "issued": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"), **money})
    if billing["corrections"].empty:
        st.success("No correction is pending.", icon=":material/check_circle:")
    else:
        st.dataframe(ui.no_none(billing["corrections"]), hide_index=True, width="stretch",
                     column_config={"quantity": st.column_config.NumberColumn(
                         format="localized"), **money})

left, right = st.columns(2)
with left:
    st.subheader("Rating runs", anchor=False)
    st.dataframe(ui.no_none(data["rating_runs"]), hide_index=True, width="stretch",
                 column_config={
        "rated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "as_of": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "charge_lines": st.column_config.NumberColumn(format="localized"),
        "elapsed_ms": st.column_config.NumberColumn("ms", format="localized")})
with right:
    st.subheader("Tables", anchor=False)
    st.dataframe(data["counts"], hide_index=True, width="stretch",
                 height=38 + 35 * len(data["counts"]), column_config={
        "rows": st.column_config.NumberColumn(format="localized")})
