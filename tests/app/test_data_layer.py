"""The dashboard's data layer on the tiny store: every number checked by hand (see conftest)."""

from __future__ import annotations

import multiprocessing
import shutil
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from meter.store import StoreError, connect
from reports.dashboard import batches, chargeback, overview, sessions, status, whatif
from reports.dashboard.filters import Filters, filter_options, filtered_charges
from reports.dashboard.source import read_store, store_state, store_version
from reports.invoice import build_invoice
from tests.app.conftest import build_tiny_store
from tests.conftest import ms

NOV = Filters(period="2026-11")
D = Decimal


def test_state_names_what_the_store_holds(tiny_store):
    with read_store(tiny_store) as con:
        s = store_state(con, tiny_store)
    assert s.periods == ("2026-10", "2026-11")
    assert s.sessions == 4 and s.rated and not s.empty
    assert s.rated_as_of_ms == ms("2026-11-20T00:00:00.000Z")
    assert s.events_since_rating == 0


def test_filter_options_come_from_the_charges(tiny_store):
    with read_store(tiny_store) as con:
        opts = filter_options(con)
    assert opts.periods == ("2026-11", "2026-10")
    assert opts.teams == ("platform", "search")
    assert opts.agents == (("agent_01", "coder (agent_01)"), ("agent_02", "researcher (agent_02)"))
    assert opts.models == ("claude-opus-5", "claude-sonnet-4-6")


def test_month_to_date_is_the_invoice_total_not_the_rounded_exact_sum(tiny_store):
    with read_store(tiny_store) as con:
        mtd = overview.month_to_date(con, NOV, ms("2026-11-20T00:00:00.000Z"))
        invoice = build_invoice(con, "2026-11", as_of="x")
        exact = con.execute("SELECT sum(amount_exact) FROM charges WHERE period = '2026-11'"
                            ).fetchall()[0][0]
    assert exact == D("1.245")
    assert mtd.total == invoice.total == D("1.25")
    assert (mtd.runtime, mtd.tokens, mtd.web_search) == (D("0.14"), D("1.08"), D("0.03"))
    assert (mtd.sessions, mtd.running_ms) == (2, 6_300_000)
    assert mtd.tokens_count == 50_000 + 15_000 + 100_000 + 10_000
    assert mtd.previous_period == "2026-10" and mtd.previous_total == D("1.08")


def test_filters_narrow_every_line(tiny_store):
    with read_store(tiny_store) as con:
        search = overview.month_to_date(con, Filters("2026-11", teams=("search",)))
        coder = overview.month_to_date(con, Filters("2026-11", agents=("agent_01",)),
                                       ms("2026-11-20T00:00:00.000Z"))
        early = overview.month_to_date(con, Filters("2026-11", agents=("agent_01",)),
                                       ms("2026-11-10T00:00:00.000Z"))
        # the model filter keeps the model's tokens and its sessions' runtime
        opus = overview.month_to_date(con, Filters("2026-11", models=("claude-opus-5",)))
    assert search.total == D("0.50")
    assert coder.total == D("0.75") and coder.previous_total == D("1.08")
    assert early.previous_total is None  # nothing in October up to the 10th
    assert (opus.runtime, opus.tokens, opus.web_search) == (D("0.12"), D("0.63"), D("0"))


def test_filtered_charges_binds_every_value():
    sql, params = filtered_charges(Filters("2026-11", teams=("it's",), models=("m",)))
    assert "it's" not in sql and "2026-11" not in sql
    assert params == {"period": "2026-11", "teams": ["it's"], "models": ["m"]}


def test_daily_spend_per_meter_and_model(tiny_store):
    with read_store(tiny_store) as con:
        daily = overview.daily_by_meter(con, NOV)
    rows = {(str(r.day.date()), r.series): r.amount for r in daily.itertuples()}
    # per bar segment: Opus 0.25 + 0.375 = 0.625 -> 0.62 (half-even)
    assert rows == {("2026-11-03", "Runtime"): 0.12, ("2026-11-03", "Tokens · claude-opus-5"): 0.62,
                    ("2026-11-05", "Runtime"): 0.02,
                    ("2026-11-05", "Tokens · claude-sonnet-4-6"): 0.45,
                    ("2026-11-05", "Web search"): 0.03}


# A group is its own invoice lines, each rounded once: platform is 0.12 + 0.25 + 0.38 =
# 0.75 (the chargeback's figure too), not its exact 0.745 rounded half-even (0.74).
@pytest.mark.parametrize(("by", "expected"), [
    ("team", [("platform", 0.75, 1), ("search", 0.50, 1)]),
    ("agent", [("agent_01", 0.75, 1), ("agent_02", 0.50, 1)]),
    ("session", [("sesn_A", 0.75, 1), ("sesn_B", 0.50, 1)]),
])
def test_top_spenders(tiny_store, by, expected):
    with read_store(tiny_store) as con:
        top = overview.top_spenders(con, NOV, by)
    assert list(zip(top["key"], top["amount"], top["sessions"], strict=True)) == expected
    assert top["share"].round(4).tolist() == [round(0.745 / 1.245, 4), round(0.5 / 1.245, 4)]


def test_the_sessions_of_a_period_are_the_ledgers_row_per_session(tiny_store):
    """Without a model filter the Overview reads a row per session from the ledger's
    `session_periods`; it holds what the period's lines add up to per session."""
    with read_store(tiny_store) as con:
        assert con.execute("SELECT count(*) FROM session_periods").fetchall()[0][0] > 0
        overview.stage(con, NOV)
        staged = con.execute("SELECT session_id, agent_id, tags, exact FROM dash_sessions "
                             "ORDER BY ALL").fetchall()
        grouped = con.execute("""
            SELECT session_id, agent_id, tags, sum(amount_units) FROM charges
            WHERE period = '2026-11' GROUP BY ALL ORDER BY ALL""").fetchall()
    assert staged == grouped and len(staged) == 2


def test_utilisation_running_idle_and_per_hour_savings(tiny_store):
    with read_store(tiny_store) as con:
        u = overview.utilisation(con, NOV, ms("2026-11-20T00:00:00.000Z"))
    assert u.running_ms == 6_300_000  # 1 h + 30 min + 15 min
    assert u.idle_between_ms == 3_600_000  # A: 10:00-11:00
    # parked: A from Nov 3 11:30, B from Nov 5 12:15, both to the as-of (Nov 20 00:00)
    assert u.idle_parked_ms == (396 * 60 + 30 + 347 * 60 + 45) * 60_000
    assert u.parked_sessions == 2  # the caption says hours per parked session, not a total
    assert u.spans == 3
    assert u.runtime_cost == D("0.14")
    assert u.per_hour_cost == D("0.24")  # three started hours at $0.08
    assert u.saved == D("0.10")


def test_utilisation_without_the_ledgers_time_by_month_derives_the_same(tiny_store, tmp_path):
    """A store whose ledger predates time by month (read-only: not migrated) gets the same
    numbers from its status events."""
    old = tmp_path / "old.duckdb"
    shutil.copy(tiny_store, old)
    con = duckdb.connect(str(old))
    assert con.execute("SELECT count(*) FROM session_months").fetchall()[0][0] > 0
    con.execute("DROP TABLE session_months; DROP TABLE session_tails; "
                "DROP TABLE session_periods")
    con.close()
    as_of = ms("2026-11-20T00:00:00.000Z")
    with read_store(tiny_store) as con:
        stored = overview.utilisation(con, NOV, as_of)
    with read_store(old) as con:
        assert overview.utilisation(con, NOV, as_of) == stored


def _upgraded_not_rated(store: Path, tmp_path: Path, version: int,
                        tables: tuple[str, ...]) -> Path:
    """A copy of `store` as it was before schema `version` (without its `tables`), opened by a
    writer that does not rate (e.g. `ingest`): migrated, not rated since."""
    old = tmp_path / f"v{version - 1}.duckdb"
    shutil.copy(store, old)
    con = duckdb.connect(str(old))
    for table in tables:
        con.execute(f"DROP TABLE {table}")
    con.execute("DELETE FROM schema_version WHERE version >= $v", {"v": version})
    con.close()
    connect(old).close()
    return old


def test_utilisation_of_a_store_upgraded_but_not_rated_since_derives_the_same(tiny_store,
                                                                               tmp_path):
    """A v5 store opened by a writer that does not rate (e.g. `ingest`) is upgraded to v6 with
    empty time-by-month tables: until its next rating the numbers come from the status
    events, never zeros."""
    old = _upgraded_not_rated(tiny_store, tmp_path, 6,
                              ("session_months", "session_tails", "session_periods"))
    as_of = ms("2026-11-20T00:00:00.000Z")
    with read_store(old) as con:
        assert con.execute("SELECT count(*) FROM session_months").fetchall() == [(0,)]
        upgraded = overview.utilisation(con, NOV, as_of)
    with read_store(tiny_store) as con:
        assert upgraded == overview.utilisation(con, NOV, as_of)
    assert upgraded.running_ms > 0


def test_top_spenders_of_a_store_upgraded_but_not_rated_since_are_the_same(tiny_store,
                                                                            tmp_path):
    """A v6 store upgraded to v7 by a writer that does not rate has an empty
    `session_periods` until its next rating: the Overview then groups the period's lines and
    joins the sessions' time by month."""
    old = _upgraded_not_rated(tiny_store, tmp_path, 7, ("session_periods",))
    as_of = ms("2026-11-20T00:00:00.000Z")
    with read_store(old) as con:
        assert con.execute("SELECT count(*) FROM session_periods").fetchall() == [(0,)]
        upgraded = {by: overview.top_spenders(con, NOV, by) for by in ("team", "session")}
        time = overview.utilisation(con, NOV, as_of)
    with read_store(tiny_store) as con:
        for by, frame in upgraded.items():
            assert frame.equals(overview.top_spenders(con, NOV, by)), by
        assert time == overview.utilisation(con, NOV, as_of)
    assert upgraded["team"]["sessions"].tolist() == [1, 1]


def test_chargeback_adds_up_to_the_invoice(tiny_store):
    with read_store(tiny_store) as con:
        report = chargeback.chargeback_report(con, NOV, "team")
        narrowed = chargeback.chargeback_report(con, Filters("2026-11", teams=("search",)),
                                                "project")
    assert report["total"] == report["invoice_total"] == D("1.25")
    assert dict(zip(report["table"]["team"], report["table"]["total"], strict=True)) == {
        "platform": 0.75, "search": 0.50}
    assert narrowed["total"] == D("0.50") and list(narrowed["table"]["project"]) == ["scan"]


@pytest.mark.parametrize(("what", "fmt"), [("chargeback", "csv"), ("charges", "parquet"),
                                           ("focus", "csv")])
def test_downloads(tiny_store, what, fmt):
    with read_store(tiny_store) as con:
        data = chargeback.export_bytes(con, NOV, what, fmt)
    if fmt == "parquet":
        assert data[:4] == b"PAR1"
    else:
        header = data.decode().splitlines()[0]
        assert {"chargeback": "team,", "focus": "BilledCost,"}[what] in header


def test_sessions_list_and_one_session(tiny_store):
    with read_store(tiny_store) as con:
        listed = sessions.session_list(con, NOV)
        found = sessions.session_list(con, NOV, search="market")
        detail = sessions.session_detail(con, "sesn_A", ms("2026-11-20T00:00:00.000Z"))
    assert list(listed["session_id"]) == ["sesn_A", "sesn_B"]
    assert list(listed["cost"]) == [0.75, 0.50]  # as the session's own invoice lines
    assert list(found["session_id"]) == ["sesn_B"]
    iv = detail["intervals"]
    assert list(iv["status"]) == ["running", "idle", "running", "idle"]
    assert list(iv["duration_ms"][:3]) == [3_600_000, 3_600_000, 1_800_000]
    assert detail["info"]["team"] == "platform" and detail["cost"] == D("0.75")
    assert len(detail["requests"]) == 1
    bill = detail["bill"]
    assert list(zip(bill["meter"], bill["token_class"].fillna(""), bill["amount"],
                    strict=True)) == [("runtime", "", 0.12), ("tokens", "input", 0.25),
                                      ("tokens", "output", 0.38)]



def test_a_fast_mode_session_bill_says_fast_where_fast_rates_applied(tmp_path):
    # Opus 5.5 in fast mode (book 2026-08-07: fast $8/$40 per MTok, standard $4/$20): one
    # request says 'fast', one 'standard'. The stored lines are both of the 'standard' price
    # list; the bill names the fast one by its rate.
    #   fast: input 100,000 x $8 = $0.80, output 10,000 x $40 = $0.40
    #   standard: input 100,000 x $4 = $0.40, output 10,000 x $20 = $0.20
    import json

    from meter.ingest import ingest_lines
    from tests.app.conftest import agent, rate_and_store, request
    from tests.conftest import session_record

    fast_agent = agent("agent_f", "fixer", "claude-opus-5-5")
    fast_agent["model"]["speed"] = "fast"
    said = []
    for eid, at, speed in (("f1", "09:00", "fast"), ("f2", "09:10", "standard")):
        event = request("sesn_F", eid, f"2026-11-03T{at}:00.000Z", input=100_000,
                        output=10_000)
        event["model_usage"]["speed"] = speed
        said.append(event)
    events = [session_record("sesn_F", created_at="2026-11-03T08:00:00.000Z",
                             agent=fast_agent), *said]
    path = tmp_path / "fast.duckdb"
    con = connect(path)
    try:
        assert ingest_lines(con, [json.dumps(e) for e in events], source="fast.jsonl",
                            max_future_ms=10**12).quarantined == 0
    finally:
        con.close()
    rate_and_store(path)
    with read_store(path) as con:
        bill = sessions.session_detail(con, "sesn_F", ms("2026-11-20T00:00:00.000Z"))["bill"]
    assert list(zip(bill["token_class"], bill["tier"], bill["unit_price"], bill["amount"],
                    strict=True)) == [("input", "fast", 8.0, 0.80),
                                      ("input", "standard", 4.0, 0.40),
                                      ("output", "fast", 40.0, 0.40),
                                      ("output", "standard", 20.0, 0.20)]


def test_data_page_numbers(tiny_store):
    with read_store(tiny_store) as con:
        data = status.data_status(con, tiny_store)
    counts = dict(zip(data["counts"]["table"], data["counts"]["rows"], strict=True))
    assert counts["charges"] == 9 and counts["quarantine"] == 1
    assert data["quarantine"]["lines"].tolist() == [1]
    assert data["rating_runs"]["charge_lines"].tolist() == [9]
    books = status.price_books(ms("2026-11-20T00:00:00.000Z"))
    assert books["in force"].sum() == 1


def test_identity_scenario_equals_the_baseline_and_the_invoice(tiny_store):
    from pricing.scenario import Scenario

    with read_store(tiny_store) as con:
        result = whatif.run_scenario(con, NOV, Scenario(), ms("2026-11-20T00:00:00.000Z"))
    assert result["baseline_total"] == result["scenario_total"] == D("1.25")
    assert result["sessions"] == 2


def test_runtime_price_lever(tiny_store):
    scenario = whatif.build_scenario(None, whatif.Levers(runtime_usd_per_hour=D("0.16")))
    with read_store(tiny_store) as con:
        result = whatif.run_scenario(con, NOV, scenario, ms("2026-11-20T00:00:00.000Z"))
    meters = dict(zip(result["meters"]["meter"], result["meters"]["delta"], strict=True))
    assert meters == {"runtime": 0.14, "tokens": 0.0, "web_search": 0.0}
    assert result["scenario_total"] == D("1.39")


def test_scenario_toml_reads_back(tmp_path):
    from pricing.scenario import load_scenario

    scenario = whatif.build_scenario(None, whatif.Levers(
        runtime_usd_per_hour=D("0.10"), move_from="claude-opus-5", move_to="claude-sonnet-5",
        move_percent=D(40), move_multiplier=D("1.2"), cache_hit_rate_percent=D(70),
        growth_percent_per_month=D(5), runtime_granularity="minute"), name="mine")
    path = tmp_path / "mine.toml"
    path.write_text(whatif.scenario_toml(scenario))
    assert load_scenario(path) == scenario


def test_batches_are_cache_friendly(tiny_store):
    text = batches.encode(f=NOV, scenario={"name": "x"}, n=D("1.5"))
    assert batches.decode(text) == {"f": NOV, "scenario": {"name": "x"}, "n": "1.5"}
    assert batches.run("overview", tiny_store, f=NOV)["mtd"].total == D("1.25")


# --- live data ---------------------------------------------------------------------------


def test_a_write_changes_the_version_so_a_refresh_shows_new_data(tmp_path):
    path = build_tiny_store(tmp_path / "live.duckdb")
    before = store_version(path)
    with read_store(path) as con:
        assert store_state(con, path).sessions == 4
    con = connect(path)
    con.execute("INSERT INTO sessions (session_id) VALUES ('sesn_new')")
    con.close()
    assert store_version(path) != before
    with read_store(path) as con:
        assert store_state(con, path).sessions == 5


def _hold_write_lock(path: str, seconds: float, ready) -> None:
    con = connect(path)
    ready.set()
    time.sleep(seconds)
    con.close()


def test_reader_waits_for_a_writer_in_another_process(tmp_path):
    path = build_tiny_store(tmp_path / "locked.duckdb")
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    writer = ctx.Process(target=_hold_write_lock, args=(str(path), 1.0, ready))
    writer.start()
    try:
        assert ready.wait(30)
        started = time.monotonic()
        with read_store(path) as con:  # retries until the writer lets go
            assert store_state(con, path).sessions == 4
        assert time.monotonic() - started > 0.2
    finally:
        writer.join(30)


def test_reading_a_missing_store_never_creates_it(tmp_path):
    with pytest.raises(StoreError):
        with read_store(tmp_path / "none.duckdb"):
            pass
    assert not (tmp_path / "none.duckdb").exists()


def test_a_sampled_estimate_is_scaled_to_the_actual_spend(demo_store):
    from pricing.scenario import Scenario

    with read_store(demo_store) as con:
        state = store_state(con, demo_store)
        f = Filters(period=state.periods[-1])
        actual = overview.month_to_date(con, f).total
        result = whatif.run_scenario(con, f, Scenario(), state.rated_as_of_ms,
                                     sample_percent=30)
    assert result["estimated"] and "30% sample" in result["notes"][0]
    assert result["baseline_total"] == actual
    assert abs(result["scenario_total"] - actual) <= D("0.05")  # identity, cents of rounding


def test_a_sample_copies_every_event_of_its_sessions_and_no_other(demo_store):
    with read_store(demo_store) as con:
        f = Filters(period=store_state(con, demo_store).periods[-1])
        n = whatif._shadow_events(con, f, sample_percent=30)
        sampled = {r[0] for r in con.execute(
            "SELECT DISTINCT session_id FROM charges WHERE period = $p "
            "AND hash(session_id) % 100 < 30", {"p": f.period}).fetchall()}
        assert n == len(sampled) > 0
        db = con.execute("SELECT current_database()").fetchall()[0][0]
        for table in ("sessions", "status_events", "model_requests", "usage_snapshots"):
            copied = con.execute(f"SELECT * FROM temp.main.{table} ORDER BY ALL").fetchall()
            stored = con.execute(f"SELECT * FROM {db}.main.{table} ORDER BY ALL").fetchall()
            ids = [c[0] for c in con.execute(f"DESCRIBE temp.main.{table}").fetchall()]
            at = ids.index("session_id")
            assert copied and copied == [r for r in stored if r[at] in sampled], table


def test_sample_size_targets_ten_thousand_sessions():
    assert whatif.sample_percent_for(5_000) is None
    assert whatif.sample_percent_for(688_198) == 2
    assert whatif.sample_percent_for(25_000) == 40


def test_the_dashboard_opens_on_the_last_full_month_while_the_current_one_is_days_old():
    from reports.dashboard.filters import default_period

    periods = ("2026-12", "2026-11", "2026-10")
    assert default_period(periods, ms("2026-12-04T10:55:00.000Z")) == "2026-11"
    assert default_period(periods, ms("2026-12-07T23:59:59.999Z")) == "2026-11"
    assert default_period(periods, ms("2026-12-08T00:00:00.000Z")) == "2026-12"
    # a store whose newest month is not the as-of's (rated long after), one month, none
    assert default_period(periods, ms("2027-01-03T00:00:00.000Z")) == "2026-12"
    assert default_period(("2026-12",), ms("2026-12-02T00:00:00.000Z")) == "2026-12"
    assert default_period((), ms("2026-12-02T00:00:00.000Z")) is None
    assert default_period(periods, None) == "2026-12"


def test_the_demo_runs_from_the_readmes_first_day_to_today_while_that_is_short():
    from datetime import date

    from agenttally._simulation import DEMO_START, demo_window

    assert DEMO_START == date(2026, 10, 2)  # + 60 days = the README's whole November
    assert demo_window(date(2026, 11, 30)) == (DEMO_START, 60)
    assert demo_window(date(2026, 12, 4)) == (DEMO_START, 64)
    assert demo_window(date(2027, 1, 29)) == (DEMO_START, 120)
    assert demo_window(date(2027, 1, 30)) == (date(2026, 12, 2), 60)
    assert demo_window(date(2026, 11, 1)) == (date(2026, 9, 3), 60)
