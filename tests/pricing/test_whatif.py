"""What-if scenarios on tiny stores: each lever with its money worked out by hand.

The base fixture is the official worked example (reference section 5): Opus 5, one hour
running, 50,000 input and 15,000 output tokens = $0.25 + $0.375 + $0.08 = $0.705.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from meter.ingest import ingest_lines
from meter.store import connect
from pricing.pricebook import load_pricebooks
from pricing.rating import RatingOptions
from pricing.scenario import ScenarioError, load_scenario, parse_scenario
from pricing.whatif import compare, period_months, run_whatif
from reports.invoice import build_invoice
from tests.conftest import ms, session_record, span, status
from tests.pricing.test_rating import SESSIONS, agent, snapshot, worked_example

BOOKS = load_pricebooks()
AS_OF = "2026-12-31T00:00:00Z"
SCENARIOS = Path(__file__).resolve().parents[2] / "data" / "scenarios"


def store(events):
    con = connect(":memory:")
    result = ingest_lines(con, [json.dumps(e) for e in events], source="t",
                          max_future_ms=10**12)
    assert result.quarantined == 0, result.errors
    return con


def whatif(events, raw, as_of=AS_OF):
    con = store(events)
    w = run_whatif(con, BOOKS, parse_scenario(raw), RatingOptions(as_of_ms=ms(as_of)))
    return con, w


def total(con, table="whatif_scenario", where="true"):
    value = con.execute(f"SELECT sum(amount_exact) FROM {table} WHERE {where}").fetchall()[0][0]
    return Decimal(value or 0)


WORKED = worked_example("s", 50_000, 0)


# --- identity ----------------------------------------------------------------------------


def test_identity_scenario_equals_the_baseline_to_the_cent_and_exactly():
    events = WORKED + [e for evs in SESSIONS.values() for e in evs]
    con, w = whatif(events, {})
    assert w.scenario.is_identity and w.notes == ()
    assert total(con) == total(con, "whatif_baseline") > Decimal("0.705")
    differ = con.execute("""SELECT count(*) FROM (
        (SELECT * FROM whatif_baseline EXCEPT ALL SELECT * FROM whatif_scenario) UNION ALL
        (SELECT * FROM whatif_scenario EXCEPT ALL SELECT * FROM whatif_baseline))""").fetchall()
    assert differ == [(0,)]
    comparison = compare(con, by="team", period="2026-11", what_if=w)
    assert all(r.delta == 0 for r in comparison.rows)
    assert comparison.baseline_total == comparison.scenario_total


def test_the_connection_is_left_rated_as_the_baseline():
    con, _ = whatif(WORKED, {"prices": {"runtime_usd_per_hour": "1"},
                             "usage": {"runtime_cut_percent": 50}})
    assert total(con, "charges") == Decimal("0.705")
    # the staged running time is restored, not left cut in half
    assert con.execute("SELECT sum(ms) FROM runtime_days").fetchall() == [(3_600_000,)]
    assert con.execute("SELECT DISTINCT runtime_usd_per_hour FROM pb_books").fetchall()[0][0] \
        == Decimal("0.08")


# --- prices ------------------------------------------------------------------------------


def test_runtime_price_change():
    con, _ = whatif(WORKED, {"prices": {"runtime_usd_per_hour": "0.16"}})
    assert total(con, where="meter = 'runtime'") == Decimal("0.16")
    assert total(con) == Decimal("0.785")


def test_token_rate_set_for_one_class_and_scaled_for_all_models():
    # output $30/M: 15,000 x 30 = 0.45; input x 0.5 on every model: 50,000 x 2.5 = 0.125
    con, _ = whatif(WORKED, {"prices": {"tokens": [
        {"model": "claude-opus-5", "token_classes": ["output"], "usd_per_mtok": "30"},
        {"model": "*", "token_classes": ["input"], "multiplier": "0.5"}]}})
    assert total(con, where="token_class = 'output'") == Decimal("0.45")
    assert total(con, where="token_class = 'input'") == Decimal("0.125")
    assert total(con) == Decimal("0.655")


def test_web_search_price_change():
    events = [session_record("w"), snapshot("w", "w1", "2026-11-03T09:00:00Z", searches=7)]
    con, _ = whatif(events, {"prices": {"web_search_usd_per_1000": "12"}})
    # 7 x $10/1,000 = 0.07 -> 7 x $12/1,000 = 0.084
    assert (total(con, "whatif_baseline"), total(con)) == (Decimal("0.07"), Decimal("0.084"))


def test_a_model_the_books_lack_can_be_priced_by_the_scenario():
    events = [session_record("f", agent=agent("claude-fable-5-2")),
              snapshot("f", "f1", "2026-11-03T09:00:00Z", input=1_000_000, output=100_000)]
    con, w = whatif(events, {"prices": {"add_models": [
        {"id": "claude-fable-5-2", "input": "8", "output": "40", "cache_write_5m": "10",
         "cache_write_1h": "16", "cache_read": "0.20"}]}})
    # baseline: unrated, so zero; scenario: $8 + 100,000 x $40/M = $12
    assert (total(con, "whatif_baseline"), total(con)) == (0, Decimal("12"))


def test_discount_is_a_negative_line_on_the_listed_meters():
    con, _ = whatif(WORKED, {"prices": {"discount": {"percent": "15", "meters": ["tokens"]}}})
    # 15% of 0.625 = 0.09375
    assert total(con, where="meter = 'discount'") == Decimal("-0.09375")
    assert total(con) == Decimal("0.61125")


def test_commitment_bills_the_shortfall_of_a_finished_month():
    con, _ = whatif(WORKED, {"prices": {"commitment": {"usd_per_month": "1"}}})
    assert total(con, where="meter = 'commitment'") == Decimal("0.295")
    assert total(con) == Decimal("1")


def test_commitment_of_a_month_in_progress_is_pro_rata():
    # as of Nov 16 00:00, 15 of 30 days: $2 commits $1 so far; shortfall 1 - 0.705
    con, w = whatif(WORKED, {"prices": {"commitment": {"usd_per_month": "2"}}},
                    as_of="2026-11-16T00:00:00Z")
    assert total(con, where="meter = 'commitment'") == Decimal("0.295")
    assert any("pro rata" in n for n in w.notes)


# --- billing policy ----------------------------------------------------------------------


def test_idle_time_billed_at_a_rate_up_to_a_cap():
    # idle from 10:00 until as-of, capped at 30 min: 0.5 h x $0.04 = $0.02
    con, _ = whatif(WORKED, {"billing": {"idle_usd_per_hour": "0.04", "idle_max_minutes": 30}})
    assert total(con, where="meter = 'idle'") == Decimal("0.02")
    assert con.execute("SELECT quantity FROM whatif_scenario WHERE meter = 'idle'"
                       ).fetchall() == [(1_800_000,)]


def test_minimum_per_session_tops_up_small_sessions_only():
    events = WORKED + [session_record("t"), status("t", "t1", "2026-11-03T09:00:00Z", "running"),
                       status("t", "t2", "2026-11-03T09:00:00.450Z", "idle")]
    con, _ = whatif(events, {"billing": {"minimum_per_session_usd": "0.50"}})
    # s costs 0.705 (no top-up); t costs 450 ms = 0.00001 -> topped up by 0.49999
    assert total(con, where="meter = 'minimum'") == Decimal("0.49999")
    assert total(con, where="session_id = 't'") == Decimal("0.50")


def test_idle_and_minimum_lines_also_for_a_session_without_a_record():
    # Only status events for session "n": 1 h running (0.08), 1 h idle at $0.02, topped up
    # to $1: idle 0.02, minimum 1 - 0.10 = 0.90.
    events = [status("n", "n1", "2026-11-03T01:00:00Z", "running"),
              status("n", "n2", "2026-11-03T02:00:00Z", "idle"),
              status("n", "n3", "2026-11-03T03:00:00Z", "terminated")]
    con, _ = whatif(events, {"billing": {"idle_usd_per_hour": "0.02",
                                         "minimum_per_session_usd": "1"}})
    assert sorted(con.execute("SELECT meter, amount_exact FROM whatif_scenario").fetchall()) \
        == [("idle", Decimal("0.02")), ("minimum", Decimal("0.90")),
            ("runtime", Decimal("0.08"))]


def test_per_started_minute_rounds_each_running_stretch_up():
    events = [session_record("g"),
              status("g", "g1", "2026-11-03T09:00:00Z", "running"),
              status("g", "g2", "2026-11-03T09:00:30Z", "idle"),
              status("g", "g3", "2026-11-03T09:05:00Z", "running"),
              status("g", "g4", "2026-11-03T09:05:30Z", "idle")]
    con, _ = whatif(events, {"billing": {"runtime_granularity": "minute"}})
    # per ms: 2 x 30 s on one day = one charge line of 60,000 ms -> 0.001333...33 at 1e-18
    # (the engine rounds once per line); per started minute: 2 x 60 s -> twice as much
    assert total(con, "whatif_baseline") == Decimal("0.001333333333333333")
    assert total(con) == Decimal("0.002666666666666667")  # 120,000 ms, rounded once
    assert con.execute("SELECT quantity FROM whatif_scenario").fetchall() == [(120_000,)]


def test_per_started_hour():
    events = [session_record("h"), status("h", "h1", "2026-11-03T09:00:00.000Z", "running"),
              status("h", "h2", "2026-11-03T10:00:00.001Z", "idle")]
    con, _ = whatif(events, {"billing": {"runtime_granularity": "hour"}})
    assert total(con) == Decimal("0.16")


# --- usage -------------------------------------------------------------------------------


def test_move_half_of_a_models_traffic_with_a_token_multiplier():
    con, _ = whatif(WORKED, {"usage": {"move": [
        {"from_model": "claude-opus-5", "to_model": "claude-sonnet-5", "percent": 50,
         "token_multiplier": "1.2"}]}})
    # Opus keeps 25,000 in + 7,500 out = 0.125 + 0.1875; Sonnet 5 gets 30,000 in x $2 = 0.06
    # and 9,000 out x $10 = 0.09
    assert total(con, where="model = 'claude-opus-5'") == Decimal("0.3125")
    assert total(con, where="model = 'claude-sonnet-5'") == Decimal("0.15")
    assert total(con) == Decimal("0.5425")


def test_a_move_rounds_once_per_usage_line_not_per_request_group():
    # Two requests of 1 input token on Opus 5 the same day, one saying its speed and one not:
    # one usage line of 2 tokens, half of which (1) moves to Sonnet 5; rounding each request
    # (0.5 -> 1, half away from zero) would move both.
    said = span("m", "m1", "2026-11-03T09:00:00Z", input=1)
    said["model_usage"]["speed"] = "standard"
    events = [session_record("m"), said, span("m", "m2", "2026-11-03T10:00:00Z", input=1)]
    con, _ = whatif(events, {"usage": {"move": [
        {"from_model": "claude-opus-5", "to_model": "claude-sonnet-5", "percent": 50}]}})
    assert sorted(con.execute("SELECT model, quantity FROM whatif_scenario "
                              "WHERE meter = 'tokens'").fetchall()) == [
        ("claude-opus-5", 1), ("claude-sonnet-5", 1)]


def test_moving_to_a_model_without_a_price_is_reported_unrated():
    con, w = whatif(WORKED, {"usage": {"move": [
        {"from_model": "claude-opus-5", "to_model": "claude-fable-5-2", "percent": 100}]}})
    assert total(con) == Decimal("0.08")
    assert w.notes == ("the scenario leaves 65,000 tokens of claude-fable-5-2 unrated "
                       "(model not in price book); they are in neither total",)


def test_raising_the_cache_hit_rate_reproduces_the_official_cached_example():
    # 80% of 50,000 prompt tokens read from cache: the reference's second worked example
    con, _ = whatif(WORKED, {"usage": {"cache_hit_rate_percent": 80}})
    assert total(con) == Decimal("0.525")


def test_cache_hit_rate_never_lowers_an_existing_rate_and_can_target_one_model():
    cached = worked_example("c", 10_000, 40_000)  # already 80%
    con, _ = whatif(cached, {"usage": {"cache_hit_rate_percent": 50}})
    assert total(con) == Decimal("0.525")
    con, _ = whatif(WORKED, {"usage": {"cache_hit_rate_percent": 80,
                                       "cache_hit_models": ["claude-sonnet-5"]}})
    assert total(con) == Decimal("0.705")


def test_cutting_running_time():
    con, _ = whatif(WORKED, {"usage": {"runtime_cut_percent": 25}})
    assert total(con, where="meter = 'runtime'") == Decimal("0.06")


def test_session_growth_compounds_monthly_from_growth_from():
    events = WORKED + [session_record("d", agent=agent("claude-opus-5")),
                       snapshot("d", "d1", "2026-12-03T09:00:00Z", input=1_000_000),
                       snapshot("d", "d2", "2026-12-03T10:00:00Z", input=1_000_000)]
    con, w = whatif(events, {"usage": {"session_growth_percent_per_month": 10,
                                       "growth_from": "2026-11-01"}})
    # November (month 0) unchanged; December x 1.1: 1,000,000 x $5 = $5 -> $5.50
    assert total(con, where="period = '2026-11'") == Decimal("0.705")
    assert total(con, where="period = '2026-12'") == Decimal("5.5")
    assert w.notes == ()


def test_growth_without_a_start_only_drives_forecasts():
    con, w = whatif(WORKED, {"usage": {"session_growth_percent_per_month": 10}})
    assert total(con) == Decimal("0.705") and "forecasts only" in w.notes[0]


# --- build vs buy ------------------------------------------------------------------------


def test_build_vs_buy_replaces_runtime_with_a_sandbox_and_adds_fixed_costs():
    con, w = whatif(WORKED, {"build_vs_buy": {
        "sandbox_usd_per_hour": "0.12", "utilisation_percent": 40,
        "fixed_usd_per_month": "100", "batch_share_percent": 50}})
    # sandbox: 1 h / 0.4 x $0.12 = $0.30; batch: 50% of tokens at 50% off = -0.625 / 4;
    # fixed $100 for November (a finished month)
    rows = dict(con.execute("SELECT meter, sum(amount_exact) FROM whatif_scenario GROUP BY 1"
                            ).fetchall())
    assert rows == {"sandbox": Decimal("0.3"), "tokens": Decimal("0.625"),
                    "batch_discount": Decimal("-0.15625"), "fixed": Decimal("100")}
    by_meter = {r.meter: (r.baseline, r.scenario) for r in compare(con, what_if=w,
                                                                      period="2026-11").by_meter()}
    assert by_meter["runtime"] == (Decimal("0.08"), Decimal("0.00"))
    assert by_meter["sandbox"] == (Decimal("0.00"), Decimal("0.30"))


def test_sandbox_utilisation_that_does_not_divide_evenly_is_exact_to_the_atto_dollar():
    con, _ = whatif(WORKED, {"build_vs_buy": {"sandbox_usd_per_hour": "0.10",
                                              "utilisation_percent": 30}})
    # 0.10 / 0.3 = 0.333... per hour, half-even at 1e-18
    assert total(con, where="meter = 'sandbox'") == Decimal("0.333333333333333333")


# --- the comparison ----------------------------------------------------------------------


def test_compare_per_team_adds_up_to_the_invoice_to_the_cent():
    events = WORKED + [session_record("r", metadata={"team": "research"},
                                      agent=agent("claude-opus-5")),
                       snapshot("r", "r1", "2026-11-03T09:00:00Z", input=1_000)]
    con, w = whatif(events, {"prices": {"runtime_usd_per_hour": "0.16"}})
    c = compare(con, by="team", period="2026-11", what_if=w)
    # The invoice's input line is 0.25 + 0.005 = 0.255 -> 0.26 (half-even, once); its 26 cents
    # are apportioned by exact share: platform 25.49 -> 25, research 0.51 -> 0 + the cent
    # left over (the larger remainder). Rounding each team apart (0.25 and 0.005 -> 0.00)
    # would lose that cent. Output 0.375 -> 0.38, all platform's.
    assert [(r.group, r.meter, r.baseline, r.scenario, r.delta, r.delta_percent)
            for r in c.rows] == [
        ("platform", "runtime", Decimal("0.08"), Decimal("0.16"), Decimal("0.08"),
         Decimal("100.0")),
        ("platform", "tokens", Decimal("0.63"), Decimal("0.63"), Decimal("0.00"),
         Decimal("0.0")),
        ("research", "tokens", Decimal("0.01"), Decimal("0.01"), Decimal("0.00"),
         Decimal("0.0"))]
    assert c.baseline_total == build_invoice(con, "2026-11", as_of="").total == Decimal("0.72")
    assert compare(con, period="2026-12", what_if=w).rows == []


def test_period_months():
    assert period_months("2026-Q4") == ["2026-10", "2026-11", "2026-12"]
    assert period_months("2026-11") == ["2026-11"] and period_months("all") is None
    with pytest.raises(ValueError, match="YYYY-MM, YYYY-Qn"):
        period_months("Q4")


# --- scenario files ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_example_scenarios_load_and_apply_to_the_books(path):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert len(scenario.apply_to_books(BOOKS)) == len(BOOKS)


@pytest.mark.parametrize(("raw", "message"), [
    ({"prices": {"runtime_usd_per_hour": 0.1}},
     'prices.runtime_usd_per_hour: write decimals as a string, e.g. "0.1"'),
    ({"prices": {"runtime_usd": "0.1"}}, "prices.runtime_usd: unknown key"),
    ({"usage": {"move": [{"from_model": "a", "to_model": "a", "percent": 5}]}},
     "usage.move[0]: from_model and to_model are the same model"),
    ({"usage": {"cache_hit_rate_percent": 120}}, "usage.cache_hit_rate_percent: "),
    ({"build_vs_buy": {"sandbox_usd_per_hour": "1", "utilisation_percent": 50},
      "billing": {"minimum_per_session_usd": "1"}}, "build_vs_buy replaces Managed Agents"),
    ({"prices": {"tokens": [{"model": "claude-opus-5"}]}},
     "prices.tokens[0]: give exactly one of usd_per_mtok or multiplier"),
])
def test_bad_scenarios_name_the_field_and_the_fix(raw, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, source="s.toml")
    assert f"s.toml: {message}" in str(err.value)


def test_a_rate_change_for_a_model_no_book_prices_says_how_to_add_it():
    with pytest.raises(ScenarioError, match=r"prices.tokens\[0\].model: 'claude-x' is in no "
                                            r"price book; price it under \[\[prices.add_models"):
        parse_scenario({"prices": {"tokens": [{"model": "claude-x", "multiplier": "2"}]}}
                       ).apply_to_books(BOOKS)


# --- the CLI -----------------------------------------------------------------------------


def _worked_store_and_double_runtime(tmp_path):
    """A store of the worked example and a scenario doubling the runtime price."""
    db = tmp_path / "s.duckdb"
    con = connect(db)
    ingest_lines(con, [json.dumps(e) for e in WORKED], source="t", max_future_ms=10**12)
    con.close()
    scenario = tmp_path / "double.toml"
    scenario.write_text('[prices]\nruntime_usd_per_hour = "0.16"\n')
    return db, scenario


def test_whatif_cli_prints_baseline_scenario_and_deltas(tmp_path, capsys):
    from agenttally.cli import main

    db, scenario = _worked_store_and_double_runtime(tmp_path)
    assert main(["whatif", str(scenario), "--db", str(db), "--as-of", "2026-12-01",
                 "--period", "2026-11", "--by", "team"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "What-if double vs baseline, period 2026-11, as of " \
                     "2026-12-01T00:00:00.000Z (USD)"
    assert out[1:6] == [
        "meter    baseline  scenario  delta  delta_%",
        "-------  --------  --------  -----  -------",
        "runtime      0.08      0.16   0.08  +100.0",
        "tokens       0.63      0.63   0.00  0.0",
        "TOTAL        0.71      0.79   0.08  +11.3",
    ]
    assert main(["whatif", str(scenario), "--db", str(db), "--as-of", "2026-12-01",
                 "--period", "2026-11", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["baseline_total"], data["scenario_total"], data["delta"]) == \
        ("0.71", "0.79", "0.08")  # the baseline equals `agenttally invoice`


def test_whatif_by_a_tag_group_no_session_carries_is_refused_naming_the_flag(tmp_path, capsys):
    """`--by project` where no session carries a project tag would put every cent in
    '(none)' without a word: refused as chargeback refuses it (exit 2, one line naming --by,
    the value and the tag keys the sessions carry); an unknown group is refused by the flag's
    choices, and the API raises the DimensionError."""
    import agenttally
    from agenttally.cli import main

    db, scenario = _worked_store_and_double_runtime(tmp_path)
    argv = ["whatif", str(scenario), "--db", str(db), "--as-of", "2026-12-01",
            "--period", "2026-11", "--by"]
    assert main([*argv, "project"]) == 2
    assert capsys.readouterr() == ("", (
        "agenttally whatif: --by: 'project' is not a tag key of any session in the store "
        "(their tag keys: team); a what-if groups by team or project tags, or by total, meter, "
        "model, agent, environment\n"))
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "nonexistent"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "agenttally whatif: --by: invalid choice: 'nonexistent' (choose from 'total', 'team', "
        "'project', 'meter', 'model', 'agent', 'environment')\n")
    with agenttally.open_store(db, read_only=True) as store, pytest.raises(
            agenttally.DimensionError, match="'project' is not a tag key") as refused:
        agenttally.whatif(store, scenario, period="2026-11", by="project", as_of="2026-12-01")
    assert (refused.value.value, refused.value.known) == ("project", ("team",))
    assert main([*argv, "team"]) == 0
