"""Chargeback on tiny stores; every amount is worked out by hand in the comments.

Prices (book anthropic-list 2026-08-07): runtime $0.08 per session-hour, Opus 5 input $5 per
million tokens. So one running hour is $0.08 and 10,000 input tokens are $0.05.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from decimal import Decimal

import pytest

from meter.ingest import ingest_lines
from meter.store import connect
from pricing.pricebook import load_pricebooks
from pricing.rating import RatingOptions, rate
from reports.allocation import AllocationError, AllocationRules, load_rules
from reports.chargeback import build_chargeback
from reports.invoice import build_invoice
from tests.conftest import iso, ms, session_record, status

BOOKS = load_pricebooks()
D = Decimal


def agent_ref(agent_id: str) -> dict:
    return {"id": agent_id, "version": 1, "name": agent_id,
            "model": {"id": "claude-opus-5", "speed": "standard", "inference_geo": "global"}}


def session(sid, *, team=None, agent="agent_plain", env="env_plain", run_ms=3_600_000,
            tokens=0, day="2026-11-03", **tags):
    """A session that runs `run_ms` from 09:00 and uses `tokens` Opus 5 input tokens."""
    metadata = {**({"team": team} if team else {}), **tags}
    start = ms(f"{day}T09:00:00.000Z")
    events = [session_record(sid, agent=agent_ref(agent), environment_id=env, metadata=metadata)]
    if run_ms:
        events += [status(sid, f"{sid}_r", iso(start), "running"),
                   status(sid, f"{sid}_i", iso(start + run_ms), "idle")]
    if tokens:
        events.append({"session_id": sid, "type": "session.usage", "id": f"{sid}_u",
                       "processed_at": iso(start + 1), "usage": {
                           "input_tokens": tokens, "output_tokens": 0,
                           "cache_read_input_tokens": 0,
                           "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                              "ephemeral_1h_input_tokens": 0},
                           "server_tool_use": {"web_search_requests": 0}}})
    return events


DIMENSIONS = [
    {"type": "agent", "id": "agent_beta", "metadata": {"team": "beta"}},
    {"type": "agent", "id": "agent_plain"},
    {"type": "environment", "id": "env_team", "metadata": {"team": "gamma"}},
    {"type": "environment", "id": "env_shared", "metadata": {"team": "shared"}},
    {"type": "environment", "id": "env_plain"},
]


def rated(events):
    con = connect(":memory:")
    lines = [json.dumps(e) for e in DIMENSIONS + events]
    result = ingest_lines(con, lines, source="t", max_future_ms=10**12)
    assert result.quarantined == 0, result.errors
    rate(con, BOOKS, RatingOptions(as_of_ms=ms("2026-12-01T00:00:00Z")))
    return con


def totals(report) -> dict[tuple, Decimal]:
    return {tuple(g.group.values()): g.total for g in report.groups}


def rules(**raw) -> AllocationRules:
    return AllocationRules.model_validate(raw)


# --- tag precedence ----------------------------------------------------------------------

PRECEDENCE = [
    *session("s_session", team="alpha", agent="agent_beta", env="env_team"),  # session wins
    *session("s_agent", agent="agent_beta", env="env_team"),                  # agent's tag
    *session("s_env", env="env_team"),                                        # environment's
    *session("s_none"),                                                       # nothing
    *session("s_variant", team="Alpha-Team"),                                 # renamed
]


def test_each_tag_comes_from_the_first_source_that_has_it():
    report = build_chargeback(rated(PRECEDENCE), "2026-11", by=["team"], mode="showback")
    # one running hour each, $0.08
    assert totals(report) == {("alpha",): D("0.08"), ("beta",): D("0.08"),
                              ("gamma",): D("0.08"), ("unallocated",): D("0.08"),
                              ("Alpha-Team",): D("0.08")}
    assert report.total == report.invoice_total == D("0.40")


def test_renames_merge_values_and_the_default_is_configurable():
    report = build_chargeback(
        rated(PRECEDENCE), "2026-11", by=["team"],
        rules=rules(renames={"team": {"Alpha-Team": "alpha", "gamma": "platform"}},
                    tags={"default": "no-team"}))
    assert totals(report) == {("alpha",): D("0.16"), ("beta",): D("0.08"),
                              ("platform",): D("0.08"), ("no-team",): D("0.08")}
    assert report.groups[0].sessions == 2 and report.groups[0].running_hours == D("2.00")


def test_precedence_order_can_put_the_environment_first():
    report = build_chargeback(rated(PRECEDENCE), "2026-11", by=["team"],
                              rules=rules(tags={"precedence": ["environment", "session"]}))
    # s_session and s_agent are in env_team (gamma); s_agent's agent tag is no longer read,
    # s_none has no environment tag and no session tag
    assert totals(report) == {("gamma",): D("0.24"), ("unallocated",): D("0.08"),
                              ("Alpha-Team",): D("0.08")}


def test_untagged_sessions_land_in_unallocated_with_their_usage():
    report = build_chargeback(rated(session("u1", tokens=10_000) + session("u2", run_ms=0,
                                                                          tokens=20_000)),
                              "2026-11", by=["team", "project"])
    (group,) = report.groups
    assert group.group == {"team": "unallocated", "project": "unallocated"}
    # runtime 1 h $0.08; tokens 30,000 x $5/M = $0.15
    assert (group.runtime, group.tokens, group.total) == (
        D("0.08"), {"claude-opus-5": D("0.15")}, D("0.23"))
    assert (group.sessions, group.token_count, group.cost_per_session,
            group.cost_per_running_hour) == (2, 30_000, D("0.12"), D("0.23"))


def test_group_by_two_keys():
    report = build_chargeback(rated(session("a", team="x", project="p1")
                                    + session("b", team="x", project="p2", run_ms=7_200_000)
                                    + session("c", team="y", project="p1")),
                              "2026-11", by=["team", "project"])
    assert totals(report) == {("x", "p2"): D("0.16"), ("x", "p1"): D("0.08"),
                              ("y", "p1"): D("0.08")}


# --- shared costs ------------------------------------------------------------------------

# Teams a, b, c use the shared environment for 1, 2 and 3 hours with 10k, 20k, 30k tokens:
# $0.13, $0.26, $0.39 of their own. Session `pool` in it has no team tag: it falls to the
# environment's tag, "shared", and costs 200,000 tokens = $1.00. Invoice: $0.48 + $1.30.
SHARED = [
    *session("a", team="a", env="env_shared", run_ms=3_600_000, tokens=10_000),
    *session("b", team="b", env="env_shared", run_ms=7_200_000, tokens=20_000),
    *session("c", team="c", env="env_shared", run_ms=10_800_000, tokens=30_000),
    *session("pool", env="env_shared", run_ms=0, tokens=200_000),
]
SHARED_RULE = {"name": "shared sandbox", "key": "team", "environment": "env_shared",
               "tags": {"team": "shared"}}


@pytest.mark.parametrize("driver", ["running_time", "tokens", "cost"])
def test_a_shared_environment_is_split_three_ways_by_a_driver(driver):
    report = build_chargeback(rated(SHARED), "2026-11", by=["team"],
                              rules=rules(shared=[{**SHARED_RULE, "driver": driver}]))
    # every driver is 1:2:3 here. $1.00 -> 16.67, 33.33, 50 cents: floors 16 + 33 + 50 = 99,
    # the cent left over goes to the largest remainder (a's .67)
    assert totals(report) == {("a",): D("0.30"), ("b",): D("0.59"), ("c",): D("0.89"),
                              ("shared",): D("0.00")}
    shared = {g.group["team"]: g.shared for g in report.groups}
    assert shared == {"a": D("0.17"), "b": D("0.33"), "c": D("0.50"), "shared": D("0.00")}
    a = next(g for g in report.groups if g.group["team"] == "a")
    assert (a.runtime, a.tokens) == (D("0.08"), {"claude-opus-5": D("0.22")})
    assert report.total == report.invoice_total == D("1.78")
    # the pool's own session is still counted where it ran
    assert next(g for g in report.groups if g.group["team"] == "shared").sessions == 1


def test_fixed_percentages_split_the_pool():
    rule = {**SHARED_RULE, "driver": "fixed", "percentages": {"a": "50", "b": "30", "c": "20"}}
    report = build_chargeback(rated(SHARED), "2026-11", by=["team"], rules=rules(shared=[rule]))
    assert totals(report) == {("a",): D("0.63"), ("b",): D("0.56"), ("c",): D("0.59"),
                              ("shared",): D("0.00")}


def test_showback_leaves_shared_costs_where_they_fall():
    report = build_chargeback(rated(SHARED), "2026-11", by=["team"], mode="showback",
                              rules=rules(shared=[{**SHARED_RULE, "driver": "running_time"}]))
    assert totals(report) == {("shared",): D("1.00"), ("c",): D("0.39"), ("b",): D("0.26"),
                              ("a",): D("0.13")}
    assert all(g.shared == 0 for g in report.groups)
    assert [g.share_pct for g in report.groups] == [D("56.18"), D("21.91"), D("14.61"),
                                                    D("7.30")]


def test_driver_scope_period_counts_usage_outside_the_environment():
    events = SHARED + session("a2", team="a", run_ms=10_800_000)  # 3 h more for a, elsewhere
    report = build_chargeback(rated(events), "2026-11", by=["team"], rules=rules(
        shared=[{**SHARED_RULE, "driver": "running_time", "scope": "period"}]))
    # 4 : 2 : 3 hours -> 44.44, 22.22, 33.33 cents -> 44 + 22 + 33 = 99, +1 to a
    shared = {g.group["team"]: g.shared for g in report.groups}
    assert shared == {"a": D("0.45"), "b": D("0.22"), "c": D("0.33"), "shared": D("0.00")}
    assert report.total == report.invoice_total == D("2.02")


def test_targets_limit_who_receives_the_pool():
    report = build_chargeback(rated(SHARED), "2026-11", by=["team"], rules=rules(
        shared=[{**SHARED_RULE, "driver": "running_time", "targets": ["b", "c"]}]))
    # 2 : 3 -> 40 and 60 cents
    assert {g.group["team"]: g.shared for g in report.groups}["b"] == D("0.40")
    assert totals(report)[("c",)] == D("0.99")


def test_a_pool_without_driver_usage_stays_and_says_so():
    report = build_chargeback(rated(session("pool", env="env_shared", run_ms=0,
                                            tokens=200_000)), "2026-11", by=["team"],
                              rules=rules(shared=[{**SHARED_RULE, "driver": "running_time"}]))
    assert totals(report) == {("shared",): D("1.00")}
    assert report.warnings == ["shared rule 'shared sandbox': no running time among its "
                               "targets; its $1.00 stays with its own group"]


# --- to the cent -------------------------------------------------------------------------

def test_group_cents_add_up_to_the_invoice_by_largest_remainder():
    # three teams, 225 s each = $0.005 each; the invoice's runtime line is $0.015 -> $0.02
    # (half-even). Rounding each team would give 0 + 0 + 0; largest remainder gives 1 + 1 + 0
    con = rated([e for t in "xyz" for e in session(t, team=t, run_ms=225_000)])
    report = build_chargeback(con, "2026-11", by=["team"])
    assert build_invoice(con, "2026-11", as_of="x").total == D("0.02")
    assert totals(report) == {("x",): D("0.01"), ("y",): D("0.01"), ("z",): D("0.00")}


def test_random_stores_always_match_the_invoice_to_the_cent():
    rng = random.Random(6)
    for _ in range(3):
        events = []
        for i in range(25):
            day = f"2026-11-{rng.randint(1, 28):02d}"
            events += session(f"s{i}", team=rng.choice(["a", "b", "c", None]),
                              env=rng.choice(["env_shared", "env_plain", "env_team"]),
                              run_ms=rng.randint(0, 5_000_000), tokens=rng.randint(0, 99_999),
                              day=day, project=rng.choice(["p", "q"]))
        con = rated(events)
        invoice = build_invoice(con, "2026-11", as_of="x").total
        for mode in ("chargeback", "showback"):
            for driver in ("running_time", "tokens", "cost"):
                report = build_chargeback(con, "2026-11", by=["team", "project"], mode=mode,
                                          rules=rules(shared=[{**SHARED_RULE,
                                                               "driver": driver}]))
                assert report.total == invoice > 0
                assert sum(r[report.columns().index("total")]
                           for r in report.rows(with_total=False)) == invoice


def test_sessions_crossing_midnight_are_one_session_in_the_counts():
    events = session("n", team="a", run_ms=7_200_000, day="2026-11-03")
    events[1]["processed_at"] = "2026-11-03T23:00:00.000Z"
    events[2]["processed_at"] = iso(ms("2026-11-03T23:00:00.000Z") + 7_200_000)
    report = build_chargeback(rated(events), "2026-11", by=["team"])
    assert (report.groups[0].sessions, report.groups[0].total) == (1, D("0.16"))
    assert timedelta(milliseconds=report.groups[0].running_ms) == timedelta(hours=2)


# --- the rules file ----------------------------------------------------------------------

def test_the_example_rules_file_loads():
    loaded = load_rules("data/allocation.toml")
    assert loaded.tags.precedence == ("session", "agent", "environment")
    assert loaded.shared


@pytest.mark.parametrize(("text", "message"), [
    ('[[shared]]\nname = "x"\nkey = "team"\nenviroment = "e"\ndriver = "cost"\n',
     "shared[0].enviroment: unknown key"),
    ('[[shared]]\nname = "x"\nkey = "team"\nenvironment = "e"\ndriver = "fixed"\n'
     'percentages = { a = "50", b = "40" }\n', "shared[0]: percentages add up to 90, not 100"),
    ('[[shared]]\nname = "x"\nkey = "team"\nenvironment = "e"\ndriver = "fixed"\n'
     'percentages = { a = 50.0, b = "50" }\n', "shared[0].percentages.a: write percentages as "
     'strings, e.g. "50.0"'),
    ('[[shared]]\nname = "x"\nkey = "team"\ndriver = "cost"\n',
     "shared[0]: says nothing about which charges are shared"),
    ('[[shared]]\nname = "x"\nkey = "team"\nagent = "g"\ndriver = "bytes"\n',
     "shared[0].driver: Input should be 'running_time', 'tokens', 'cost' or 'fixed'"),
    ('[tags]\nprecedence = ["session", "account"]\n', "tags.precedence[1]: Input should be"),
    ('[renames.team]\na = "b"\nb = "c"\n', "renames.team: 'b' is both renamed and a rename "
     "target"),
    ("[tags\n", "not valid TOML"),
])
def test_rule_errors_name_the_file_and_the_field(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(AllocationError) as info:
        load_rules(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_report_forms_are_stable():
    report = build_chargeback(rated(SHARED), "2026-11", by=["team"],
                              rules=rules(shared=[{**SHARED_RULE, "driver": "running_time"}]))
    data = json.loads(report.to_json())
    assert data["total"] == data["invoice_total"] == "1.78"
    assert data["groups"][0] == {
        "group": {"team": "c"},
        "cost": {"runtime": "0.24", "tokens": {"claude-opus-5": "0.65"}, "web_search": "0.00"},
        "shared": "0.50", "total": "0.89", "share_pct": "50.00", "sessions": 1,
        "running_hours": "3.00", "tokens": 30_000, "cost_per_session": "0.89",
        "cost_per_running_hour": "0.30"}
    assert report.columns() == [
        "team", "sessions", "running_hours", "tokens", "cost_runtime",
        "cost_tokens:claude-opus-5", "cost_web_search", "shared", "total", "share_pct",
        "cost_per_session", "cost_per_running_hour"]
    assert report.rows()[-1][:1] + report.rows()[-1][-4:] == [
        "TOTAL", D("1.78"), D("100.00"), D("0.44"), D("0.30")]


# --- the CLI -----------------------------------------------------------------------------

def store_file(tmp_path, events):
    """A store on disk holding `events` (plus the dimensions), closed so the CLI can open it."""
    path = tmp_path / "store.duckdb"
    con = connect(path)
    result = ingest_lines(con, [json.dumps(e) for e in DIMENSIONS + events], source="t",
                          max_future_ms=10**12)
    assert result.quarantined == 0, result.errors
    con.close()
    return str(path)


def test_cli_chargeback_prints_json_csv_and_writes_parquet(tmp_path, capsys):
    from agenttally.cli import main

    db = store_file(tmp_path, SHARED)
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text('[[shared]]\nname = "sandbox"\nkey = "team"\n'
                          'environment = "env_shared"\ntags = { team = "shared" }\n'
                          'driver = "running_time"\n')
    common = ["--db", db, "--period", "2026-11", "--as-of", "2026-12-01", "--by", "team",
              "--rules", str(rules_path)]
    assert main(["chargeback", *common, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {g["group"]["team"]: g["total"] for g in data["groups"]} == {
        "a": "0.30", "b": "0.59", "c": "0.89", "shared": "0.00"}
    assert main(["chargeback", *common, "--showback", "--format", "csv"]) == 0
    lines = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    assert lines[0][:6] == ["team", "sessions", "running_hours", "tokens", "cost_runtime",
                            "cost_tokens:claude-opus-5"]
    # numbers compared as numbers: the CSV renderer may write 1.00 as 1
    assert [lines[1][0], *map(D, lines[1][1:6])] == ["shared", 1, 0, 200_000, 0, 1]
    assert [lines[-1][0], *map(D, lines[-1][1:6])] == ["TOTAL", 4, 6, 260_000, D("0.48"),
                                                       D("1.30")]
    assert main(["chargeback", *common]) == 0
    assert "invoice total 1.78; shared costs redistributed" in capsys.readouterr().out
    assert main(["chargeback", *common, "-o", str(tmp_path / "cb.parquet")]) == 0
    assert (tmp_path / "cb.parquet").stat().st_size > 0


def test_cli_rule_errors_are_one_line(tmp_path, capsys):
    from agenttally.cli import main

    db = store_file(tmp_path, SHARED)
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text('[tags]\ndefualt = "x"\n')
    assert main(["chargeback", "--db", db, "--period", "2026-11", "--rules",
                 str(rules_path)]) == 2  # malformed input
    assert capsys.readouterr().err == (f"agenttally chargeback: {rules_path}: tags.defualt: "
                                       "unknown key\n")


# --- grouping keys: refused when unknown, warned when unused ------------------------------

def _api_chargeback(db, by, period="2026-11"):
    import agenttally

    with agenttally.open_store(db, read_only=True) as store:
        return agenttally.chargeback(store, period, by=by, as_of="2026-12-01")


def test_a_key_no_record_carries_is_refused_by_the_api_naming_the_known_keys(tmp_path):
    import agenttally
    from reports.chargeback import DimensionError

    db = store_file(tmp_path, SHARED + session("p", team="a", project="web"))
    with pytest.raises(DimensionError) as info:
        _api_chargeback(db, ["team", "nonexistent_column"])
    assert isinstance(info.value, agenttally.UsageError)
    assert str(info.value) == (
        "'nonexistent_column' is not a tag key of any session, agent or environment in the "
        "store; expected one of project, team, or tag:nonexistent_column to group by it anyway")
    assert (info.value.value, info.value.known) == ("nonexistent_column", ("project", "team"))
    assert "--by" not in str(info.value)  # the library names no flag


def test_keys_are_looked_up_only_in_the_sources_the_rules_read(tmp_path):
    from reports.chargeback import DimensionError, check_dimensions

    db = store_file(tmp_path, session("s", agent="agent_beta"))  # team only on the agent
    with open_store_ro(db) as con:
        assert [d.key for d in check_dimensions(con, ["team"])] == ["team"]
        with pytest.raises(DimensionError) as info:
            check_dimensions(con, ["team"], rules(tags={"precedence": ["session"]}))
    assert str(info.value) == ("'team' is not a tag key of any session in the store (none "
                               "carries any tag); expected tag:team to group by it anyway")


def open_store_ro(db):
    from meter.store import open_store

    return open_store(db, read_only=True)


def test_tag_prefix_groups_by_a_key_no_record_carries_and_warns(tmp_path):
    db = store_file(tmp_path, SHARED)
    report = _api_chargeback(db, ["tag:cost_center"])
    assert report.by == ("cost_center",)
    assert totals(report) == {("unallocated",): D("1.78")} and report.total == D("1.78")
    assert report.warnings == ["no session, agent or environment of 2026-11 carries tag "
                               "'cost_center': all of the period's cost is under 'unallocated'"]
    assert json.loads(report.to_json())["warnings"] == report.warnings


def test_a_key_carried_only_in_another_period_warns_instead_of_refusing(tmp_path):
    db = store_file(tmp_path, SHARED + session("old", team="a", project="web", day="2026-10-05"))
    report = _api_chargeback(db, ["project"])
    assert totals(report) == {("unallocated",): D("1.78")}
    assert report.warnings == ["no session, agent or environment of 2026-11 carries tag "
                               "'project': all of the period's cost is under 'unallocated'"]
    assert _api_chargeback(db, ["team"]).warnings == []  # every session has a team somewhere


def test_an_empty_store_refuses_no_key_and_a_period_without_usage_warns_nothing(tmp_path):
    db = store_file(tmp_path, [])
    report = _api_chargeback(db, ["anything"])
    assert (report.groups, report.warnings) == ([], [])


@pytest.mark.parametrize(("by", "line"), [
    ("nonexistent_column",
     "agenttally chargeback: --by: 'nonexistent_column' is not a tag key of any session, agent "
     "or environment in the store; expected one of team, or tag:nonexistent_column to group by "
     "it anyway"),
    ("team;DROP TABLE events",
     "agenttally chargeback: --by: 'team;DROP TABLE events' is not a tag key; expected letters, "
     "digits and _ . : / - (e.g. team), or tag:<key>"),
    (",", "agenttally chargeback: --by: no tag key to group by; expected a comma list of tag "
          "keys, e.g. team,project"),
])
def test_cli_refuses_unusable_keys_with_exit_2_and_one_line(tmp_path, capsys, by, line):
    from agenttally.cli import main

    db = store_file(tmp_path, SHARED)
    common = ["--db", db, "--period", "2026-11", "--as-of", "2026-12-01", "--by", by]
    assert main(["chargeback", *common]) == 2
    assert capsys.readouterr() == ("", line + "\n")
    assert main(["export", "chargeback", *common, "-o", str(tmp_path / "cb.csv")]) == 2
    assert capsys.readouterr() == ("", line.replace("agenttally chargeback",
                                                     "agenttally export") + "\n")
    assert not (tmp_path / "cb.csv").exists()


def test_cli_warns_on_stderr_when_no_session_carries_the_tag(tmp_path, capsys):
    from agenttally.cli import main

    db = store_file(tmp_path, SHARED)
    assert main(["chargeback", "--db", db, "--period", "2026-11", "--as-of", "2026-12-01",
                 "--by", "team,tag:cost_center", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["by"] == ["team", "cost_center"]
    assert err == ("warning: no session, agent or environment of 2026-11 carries tag "
                   "'cost_center': all of the period's cost is under 'unallocated'\n")
