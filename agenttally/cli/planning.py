"""Verbs of the planning side: forecast, budgets, whatif, commit."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import agenttally
from agenttally.cli import iso_ms, span_arg
from agenttally.cli.pricing import _rating_args
from meter.settings import setting
from meter.vocabulary import GROUP_SQL, to_epoch_ms
from reports.render import render

if TYPE_CHECKING:
    from pricing.scenario import Scenario
    from pricing.whatif import Comparison
    from reports.forecast import Interval

BUDGETS_ENV = "AGENTTALLY_BUDGETS"
DEFAULT_BUDGETS = "data/budgets.toml"


def _interval_cells(i: Interval) -> list[Decimal]:
    return [i.mean, i.lo80, i.hi80, i.lo95, i.hi95]


def _pct(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.1f}"


# --- forecast ----------------------------------------------------------------------------


def cmd_forecast(args: argparse.Namespace) -> int:
    horizon = args.horizon if args.horizon in ("month", "quarter") else int(args.horizon)
    with agenttally.open_store(args.db, read_only=True) as store:
        report = agenttally.forecast_report(
            store, by=args.by, horizon=horizon, as_of=to_epoch_ms(args.as_of),
            pricebooks=args.pricebooks, span_cache_ttl=args.span_cache_ttl,
            scenario=args.scenario, n_paths=args.paths,
            seed=args.seed, backtest_horizon=args.backtest_horizon if args.backtest else None,
            origins=args.origins)
    as_of, backtests, notes = report.as_of_ms, report.backtests, report.notes
    scenario_name = report.scenario
    rows = [[line.group, line.window,
             *([line.actual_to_date] if line.actual_to_date is not None else []),
             *_interval_cells(line.forecast), line.history_days, line.method]
            for line in report.lines]
    daily_rows = [[d.day, d.group, d.median, d.mean, d.lo80, d.hi80, d.lo95, d.hi95]
                  for d in report.daily]
    head = ["group", "period", "actual_to_date"] if args.horizon in ("month", "quarter") \
        else ["group", "days"]
    columns = head + ["forecast", "lo80", "hi80", "lo95", "hi95", "history_days", "method"]
    daily_columns = ["day", "group", "median", "mean", "lo80", "hi80", "lo95", "hi95"]
    bt_columns = ["group", "method", "MAPE", "sMAPE", "month_end_MAPE", "coverage80",
                  "coverage95", "points"]
    bt_rows = [[bt.group, s.method, _num(s.mape), _num(s.smape), _num(s.period_end_mape),
                _num(s.coverage80), _num(s.coverage95), s.points]
               for bt in backtests for s in bt.scores]
    if args.format == "json":
        out: dict[str, Any] = {"as_of": iso_ms(as_of), "by": args.by,
                               "scenario": scenario_name,
                               "forecast": json.loads(render(columns, rows, "json"))}
        if args.daily:
            out["daily"] = json.loads(render(daily_columns, daily_rows, "json"))
        if backtests:
            out["backtest"] = json.loads(render(bt_columns, bt_rows, "json"))
        print(json.dumps(out, indent=2))
        return 0
    if args.format == "csv":  # one table: the backtest, else the daily rows, else the summary
        shown = (bt_columns, bt_rows) if backtests else \
            (daily_columns, daily_rows) if args.daily else (columns, rows)
        print(render(shown[0], shown[1], "csv").rstrip("\n"))
        return 0
    print(f"Forecast by {args.by} as of {iso_ms(as_of)}"
          + (f" under scenario {scenario_name}" if scenario_name else "")
          + " (USD; 80% and 95% prediction intervals)")
    print(render(columns, rows))
    for note in notes:
        print(f"note: {note}")
    if args.daily:
        print("\nDaily")
        print(render(daily_columns, daily_rows))
    if backtests:
        print(f"\nBacktest: rolling origin, up to {args.origins} origins, "
              f"{args.backtest_horizon}-day horizon (percent)")
        print(render(bt_columns, bt_rows))
        for bt in backtests:
            if bt.improvement is not None and bt.origins:
                print(f"{bt.group}: model MAPE {bt.improvement:.1f}% lower than the better "
                      f"baseline (target >= 20%); 80% interval coverage "
                      f"{_pct(bt.score('model').coverage80)}% (target 75-85%)")
            for note in bt.notes:
                print(f"{bt.group}: {note}")
    return 0


def _num(value: float | None) -> float | None:
    return None if value is None or value != value else round(value, 1)


# --- budgets -----------------------------------------------------------------------------


def _day(d: date | None) -> str:
    """A forecast day as MM-DD; none: not within the budget's period."""
    return d.isoformat()[5:] if d else "after the period"


def cmd_budgets(args: argparse.Namespace) -> int:
    as_of = to_epoch_ms(args.as_of)
    with agenttally.open_store(args.db, read_only=True) as store:
        statuses = agenttally.budgets(store, args.budgets, as_of=as_of,
                                      pricebooks=args.pricebooks,
                                      span_cache_ttl=args.span_cache_ttl,
                                      scenario=args.scenario, n_paths=args.paths,
                                      seed=args.seed)
    from pricing.scenario import load_scenario
    scenario = load_scenario(args.scenario) if args.scenario else None
    if args.format == "json":
        print(json.dumps([_status_json(s) for s in statuses], indent=2))
        return 0
    rows = []
    for s in statuses:
        c = s.crossing
        crossing = ""
        if c is not None:
            crossing = (f"crossed {c.crossed_on}" if c.crossed_on else
                        "not in the period (median)" if c.median is None else
                        f"~{_day(c.median)} (80%: {_day(c.p10)} .. {_day(c.p90)})")
        rows.append([s.budget.name, s.period, s.budget.amount, s.actual, str(s.used_percent),
                     s.forecast_end.mean, f"{s.forecast_end.lo80}..{s.forecast_end.hi80}",
                     f"{100 * s.p_overrun:.0f}%", crossing, _thresholds(s)])
    # (thresholds: the chance each is reached within the period, and the median day it is)
    columns = ["budget", "period", "amount", "actual", "used_%", "forecast_end", "80%_range",
               "p_overrun", "crosses_100%", "thresholds"]
    if args.format == "csv":
        print(render(columns, rows, "csv").rstrip("\n"))
        return 0
    print(f"Budgets as of {iso_ms(as_of)}" + (f" under scenario {scenario.name}"
                                               if scenario else ""))
    print(render(columns, rows))
    if rows:
        print("thresholds: the chance each share of the budget is reached within its period, "
              "and the day it is likely reached (~MM-DD)")
    for s in statuses:
        for note in s.notes + ([s.note] if s.method.startswith(("fallback", "none")) else []):
            print(f"note: {s.budget.name}: {note}")
    return 0


def _thresholds(s: Any) -> str:
    parts = []
    for t in s.thresholds:
        if t.crossed_on:
            parts.append(f"{t.percent}% crossed {_day(t.crossed_on)}")
        else:
            likely = f"{t.percent}%: {100 * t.probability:.0f}% chance"
            parts.append(likely + (f", ~{_day(t.median)}" if t.median else ""))
    return "; ".join(parts)


def _status_json(s: Any) -> dict[str, Any]:
    def d(x: date | None) -> str | None:
        return x.isoformat() if x else None

    f = s.forecast_end
    return {
        "budget": s.budget.name, "group": s.budget.group, "value": s.budget.value,
        "period": s.period, "start": d(s.start), "end": d(s.end - timedelta(days=1)),
        "amount": str(s.budget.amount), "actual": str(s.actual),
        "used_percent": str(s.used_percent),
        "forecast_end": {"mean": str(f.mean), "lo80": str(f.lo80), "hi80": str(f.hi80),
                         "lo95": str(f.lo95), "hi95": str(f.hi95)},
        "p_overrun": round(s.p_overrun, 4), "method": s.method, "note": s.note,
        "thresholds": [{"percent": t.percent, "amount": str(t.amount),
                        "crossed_on": d(t.crossed_on), "probability": round(t.probability, 4),
                        "median": d(t.median), "p10": d(t.p10), "p90": d(t.p90)}
                       for t in s.thresholds],
        "notes": s.notes,
    }


# --- whatif ------------------------------------------------------------------------------


def cmd_whatif(args: argparse.Namespace) -> int:
    from agenttally.cli.chargeback import _by_flag
    from agenttally.cli.pricing import contract_of
    scenario = agenttally.load_scenario(args.scenario_file)
    contracts = contract_of(args)
    with agenttally.open_store(args.db, read_only=True) as store, _by_flag():
        # (--by: a tag group no session carries is refused before the re-rating)
        report = agenttally.whatif_report(
            store, scenario, period=args.period, by=args.by, as_of=to_epoch_ms(args.as_of),
            pricebooks=args.pricebooks, span_cache_ttl=args.span_cache_ttl, contract=contracts)
    comparison = report.comparison
    if args.format == "json":
        print(_comparison_json(comparison, scenario))
        return 0
    if args.format == "csv":
        cols = ["group", "meter", "baseline", "scenario", "delta", "delta_percent"]
        rows = [[r.group, r.meter, r.baseline, r.scenario, r.delta, _signed(r.delta_percent)]
                for r in comparison.rows]
        print(render(cols, rows, "csv").rstrip("\n"))
        return 0
    total = report.total()
    meter_rows = [[r.meter, r.baseline, r.scenario, r.delta, _signed(r.delta_percent)]
                  for r in [*comparison.by_meter(), replace(total, meter="TOTAL")]]
    print(f"What-if {scenario.name} vs baseline, period {report.period}, as of "
          f"{iso_ms(report.as_of_ms)} (USD)")
    if scenario.description:
        print(scenario.description.strip())
    print(render(["meter", "baseline", "scenario", "delta", "delta_%"], meter_rows))
    if args.by:
        print(f"\nby {args.by}:")
        print(render([args.by, "baseline", "scenario", "delta", "delta_%"],
                     [[g.group, g.baseline, g.scenario, g.delta, _signed(g.delta_percent)]
                      for g in report.by_group()]))
    if comparison.contract is not None:
        both = comparison.contract
        print(f"\nunder contract (baseline: {both.baseline_contract or 'none'}, scenario: "
              f"{both.scenario_contract or 'none'}):")
        print(render(["line", "baseline", "scenario", "delta"],
                     [[label, b, s_, s_ - b] for label, b, s_ in both.rows]))
    for note in comparison.notes:
        print(f"note: {note}")
    return 0


def _signed(value: Decimal | None) -> str:
    if value is None:
        return ""
    value = Decimal(value).quantize(Decimal("0.1"))
    return f"+{value}" if value > 0 else str(value)


def _comparison_json(c: Comparison, scenario: Scenario) -> str:
    def row(r: Any) -> dict[str, Any]:
        return {"group": r.group, "meter": r.meter, "baseline": str(r.baseline),
                "scenario": str(r.scenario), "delta": str(r.delta),
                "delta_percent": None if r.delta_percent is None else str(r.delta_percent)}

    return json.dumps({
        "scenario": scenario.name, "description": scenario.description, "period": c.period,
        "by": c.by, "rows": [row(r) for r in c.rows],
        "by_meter": [row(r) for r in c.by_meter()],
        "baseline_total": str(c.baseline_total), "scenario_total": str(c.scenario_total),
        "delta": str(c.scenario_total - c.baseline_total), "notes": list(c.notes),
        **({"contract": {"baseline_contract": c.contract.baseline_contract,
                         "scenario_contract": c.contract.scenario_contract,
                         "rows": [{"line": label, "baseline": str(b), "scenario": str(s),
                                   "delta": str(s - b)} for label, b, s in c.contract.rows],
                         "baseline_due": str(c.contract.baseline_due),
                         "scenario_due": str(c.contract.scenario_due)}}
           if c.contract is not None else {}),
    }, indent=2)


# --- commit ------------------------------------------------------------------------------


def _amounts(text: str) -> list[Decimal]:
    from decimal import InvalidOperation
    try:
        values = [Decimal(t.strip()) for t in text.split(",") if t.strip()]
    except InvalidOperation:
        values = []
    if not values or any(not v.is_finite() or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected a comma list of USD amounts per period, "
                                         f"e.g. 30000,40000,50000, got {text!r}")
    return values


def _percent(text: str) -> Decimal:
    from decimal import InvalidOperation
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 100, e.g. 10, "
                                         f"got {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def cmd_commit(args: argparse.Namespace) -> int:
    from agenttally.cli.pricing import contract_of
    contracts = contract_of(args)
    if args.discount is None and contracts is None:
        raise agenttally.UsageError("--discount: give the commitment discount in percent, "
                                    "e.g. 10 (or --contract FILE with a commitment)")
    as_of = to_epoch_ms(args.as_of)
    with agenttally.open_store(args.db, read_only=True) as store:
        outlook = agenttally.commitment(
            store, args.levels, discount_percent=args.discount, per=args.per,
            meters=args.meters, models=args.models, contract=contracts, by=args.by,
            as_of=as_of, pricebooks=args.pricebooks, span_cache_ttl=args.span_cache_ttl,
            n_paths=args.paths, seed=args.seed)
    meters = outlook.meters
    columns = ["level", "group", "eligible_spend", "expected_saving", "saving_p10",
               "saving_p90", "p_underused_%", "expected_true_up"]
    rows = [[o.level, o.group, o.expected_eligible, o.expected_saving, o.saving_p10,
             o.saving_p90, Decimal(repr(100 * o.p_underused)).quantize(Decimal("0.1")),
             o.expected_true_up] for o in outlook.options]
    if args.format == "json":
        print(json.dumps({
            "as_of": iso_ms(as_of), "window": outlook.window, "per": outlook.per,
            "discount_percent": str(outlook.discount_percent), "by": outlook.by,
            "eligible_share": {g: str(v.quantize(Decimal("0.0001")))
                               for g, v in sorted(outlook.eligible_share.items())},
            "options": json.loads(render(columns, rows, "json")), "notes": outlook.notes},
            indent=2))
        return 0
    if args.format == "csv":
        print(render(columns, rows, "csv").rstrip("\n"))
        return 0
    print(f"Commitment outlook for {outlook.window} ({outlook.per}, {outlook.discount_percent}% "
          f"off{' ' + ', '.join(meters) if meters else ''}) as of {iso_ms(as_of)}, "
          f"by {outlook.by} (USD; {args.paths} forecast paths)")
    print(render(columns, rows))
    print("expected_saving: mean net saving against list price (discount on the eligible "
          "spend less the true-up); p_underused: the chance the true-up is paid (a group: of "
          "falling short of its pro-rata part); p10/p90: the saving's 80% range")
    for note in outlook.notes:
        print(f"note: {note}")
    return 0


# --- registration ------------------------------------------------------------------------


def _horizon(text: str) -> str:
    if text in ("month", "quarter"):
        return text
    if text.isdigit() and int(text) > 0:
        return text
    raise argparse.ArgumentTypeError(f"expected a number of days, month or quarter, got {text!r}")


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", help="forecast under a what-if scenario TOML (its growth "
                                      "applies from --as-of on)")
    p.add_argument("--paths", type=int, default=2000, help="simulated sample paths (2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sample paths (0)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from agenttally.cli import _add_common

    p = sub.add_parser(
        "forecast", help="forecast daily cost with 80%%/95%% prediction intervals",
        description="Forecast cost per group: Theta and exponential smoothing with weekly "
                    "seasonality on log daily cost; groups add up to the organisation; each "
                    "future day priced with the price book in force on it (a flat fallback "
                    "under 14 days of history, which says so).",
        epilog="examples:\n  agenttally forecast --by team --horizon 30 --backtest\n"
               "  agenttally forecast --horizon month --scenario data/scenarios/"
               "opus-to-sonnet.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=True)
    _rating_args(p)
    p.add_argument("--by", default="total", choices=list(GROUP_SQL), help="group (total)")
    p.add_argument("--horizon", type=_horizon, default="30",
                   help="days ahead, or month / quarter for the period-end total (30)")
    p.add_argument("--daily", action="store_true",
                   help="also print the daily forecasts (with --format csv: only them)")
    p.add_argument("--backtest", action="store_true",
                   help="score the model against seasonal-naive and run-rate baselines "
                        "(with --format csv, only this table is printed)")
    p.add_argument("--backtest-horizon", type=int, default=14, help="days per origin (14)")
    p.add_argument("--origins", type=int, default=12, help="backtest origins (12)")
    _sampling_args(p)
    p.set_defaults(func=cmd_forecast)

    p = sub.add_parser(
        "budgets", help="budgets: actual, forecast at period end, overrun odds, crossing dates",
        description="Each budget's period: actual to date, forecast at period end with its "
                    "80%% range, probability of overrun, and when each threshold is crossed "
                    "(median day and 80%% range over simulated paths).",
        epilog="example:\n  agenttally budgets --budgets data/budgets.toml --as-of 2026-11-20",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=True)
    _rating_args(p)
    p.add_argument("--budgets", default=setting(BUDGETS_ENV) or DEFAULT_BUDGETS,
                   help=f"budgets TOML (${BUDGETS_ENV} or {DEFAULT_BUDGETS})")
    _sampling_args(p)
    p.set_defaults(func=cmd_budgets)

    p = sub.add_parser(
        "whatif", help="re-rate the same usage under a scenario, side by side with the baseline",
        description="Baseline vs scenario per meter (and group) with deltas; money exact, "
                    "each line rounded half-even to the cent.",
        epilog="examples:\n  agenttally whatif data/scenarios/opus-to-sonnet.toml --by team\n"
               "  agenttally whatif data/scenarios/build-vs-buy.toml --period 2026-Q4 "
               "--format json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=True)
    _rating_args(p)
    p.add_argument("scenario_file", metavar="SCENARIO.toml", help="the scenario")
    p.add_argument("--period", type=span_arg,
                   help="YYYY-MM, YYYY-Qn, YYYY or all, e.g. 2026-Q4 (default: the month of "
                        "--as-of)")
    p.add_argument("--by", choices=list(GROUP_SQL), help="also compare per group")
    from agenttally.cli.pricing import contract_arg as _contract_arg
    _contract_arg(p)
    p.set_defaults(func=cmd_whatif)

    p = sub.add_parser(
        "commit", help="should we commit? expected saving and true-up odds per commitment level",
        description="For each committed spend level: the expected net saving against list "
                    "price and the probability the commitment is underused (a true-up paid), "
                    "in total and per group, from the forecast's sample paths over the next "
                    "whole month (or quarter, year).",
        epilog="examples:\n  agenttally commit --levels 30000,40000,50000 --discount 10 "
               "--meters tokens\n  agenttally commit --levels 1500,2000 --contract "
               "data/contracts/example-2026.toml --by team --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fmt=True)
    _rating_args(p)
    from agenttally.cli.pricing import contract_arg
    p.add_argument("--levels", type=_amounts, required=True,
                   help="commitment levels in USD per period, e.g. 30000,40000,50000")
    p.add_argument("--discount", type=_percent, default=None,
                   help="the commitment's discount in percent on eligible spend, e.g. 10")
    p.add_argument("--per", choices=("month", "quarter", "year"), default=None,
                   help="commitment period (month)")
    p.add_argument("--meters", type=_names, default=None,
                   help="eligible meters, e.g. tokens (default: all)")
    p.add_argument("--models", type=_names, default=None,
                   help="eligible models, e.g. claude-opus-5 (default: all)")
    p.add_argument("--by", default="team", choices=list(GROUP_SQL), help="group (team)")
    contract_arg(p)
    p.add_argument("--paths", type=int, default=2000, help="simulated sample paths (2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sample paths (0)")
    p.set_defaults(func=cmd_commit)
