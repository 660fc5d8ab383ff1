"""Ledger benchmark (issue 16): rating what changed vs rating everything, on one store.

The store: the large profile (twelve teams, sixteen agents) over two months, its session rate
scaled so that the store holds >= 10M events (`--scale`, default 0.2: ~12M), written by the
simulator. The last minute of events is taken out and put back, as an append of new events
would land (a new ingest id), and in the same run:

- `rate --full`: every session rated again and the ledger rewritten (best of `--repeat`);
- `rate` after the minute is appended: only the sessions that changed (best of `--repeat`
  cycles of take-out / rate / put-back / rate);
- `invoice` of the current period by a read-only reader, the ledger current;
- `invoice` by a read-only reader with the ledger one minute behind (the reader rates the
  stale sessions on its connection);
- before the ledger: `invoice` rating the whole store on the connection (what every read did).

The incremental ledger must equal a full rating to the money unit (asserted).

    python -m bench.bench_ledger [--scale 0.2] [--days 60] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import agenttally
from bench.common import machine_line, new_session_lines, out_dir, peak_rss_gib, table
from meter.settings import shipped
from meter.simulator import Simulation, load_profile, write_store
from meter.store import connect
from meter.vocabulary import Period, iso_ms, parse_instant
from pricing.ledger import bring_up_to_date
from pricing.pricebook import load_pricebooks
from pricing.rating import RatingOptions, rate
from reports.invoice import build_invoice

START = date(2026, 9, 10)
# The tables an event lands in (besides `events`); the minute is moved in all of them.
EVENT_TABLES = ("events", "status_events", "model_requests", "usage_snapshots", "tool_uses",
                "threads", "session_updates", "other_events")
TARGETS = {"rate": 1.0, "invoice": 0.5, "full": 3.0, "speedup": 20.0}


def build_store(scale: float, days: int, force: bool = False) -> Path:
    return build_store_of("large", scale, days, force)


def build_store_of(name: str, scale: float, days: int, force: bool = False) -> Path:
    """A store of profile `name`'s fleet, its sessions per day x `scale`, over `days` from
    START: built once, kept in bench/out (bench_spark reuses them)."""
    path = out_dir() / f"ledger-{name}-x{scale:g}-{days}d.duckdb"
    if path.exists() and not force:
        return path
    path.unlink(missing_ok=True)
    profile = load_profile(shipped(f"data/profiles/{name}.toml"))
    teams = tuple(t.model_copy(update={"sessions_per_day": t.sessions_per_day * scale})
                  for t in profile.teams)
    profile = profile.model_copy(update={"teams": teams})
    from agenttally._simulation import schedule_for

    start_ms = parse_instant(START.isoformat())
    schedule = schedule_for(start_ms, start_ms + (days + 7) * 86_400_000)
    sim = Simulation(profile, schedule, start=START, days=days, seed=7)
    con = connect(path)
    try:
        result = write_store(con, sim)
    finally:
        con.close()
    print(f"built {path.name}: {result.events:,} events, {result.sessions:,} sessions",
          flush=True)
    return path


def _take_out(con, cut_ms: int) -> None:
    """Move the events after `cut_ms` into hold_* tables (as if they had not arrived)."""
    for t in EVENT_TABLES:
        con.execute(f"CREATE OR REPLACE TABLE hold_{t} AS SELECT * FROM {t} WHERE at_ms > $c",
                    {"c": cut_ms})
        con.execute(f"DELETE FROM {t} WHERE at_ms > $c", {"c": cut_ms})


def _put_back(con) -> int:
    """Append the held minute as a new ingest; returns its events."""
    ingest = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log"
                         ).fetchall()[0][0]
    con.execute("INSERT INTO ingest_log (ingest_id, source, started_ms) VALUES (?, 'bench', 0)",
                [ingest])
    n = con.execute("SELECT count(*) FROM hold_events").fetchall()[0][0]
    con.execute("INSERT INTO events SELECT * REPLACE ($i AS ingest_id) FROM hold_events",
                {"i": ingest})
    for t in EVENT_TABLES[1:]:
        con.execute(f"INSERT INTO {t} SELECT * FROM hold_{t}")
    return int(n)


def _small_append(work: Path) -> tuple[float, float, str]:
    """Ingest 301 lines (a new session: its record and 250 events; 50 stored events again)
    into the big store; and, on the same ids, the duplicate check as it was (a hash of every
    stored id). Returns (ingest s, old check s, summary)."""
    import json

    from meter.ingest import ingest_path

    con = connect(work)
    sid = "sesn_bench_small_append"
    last = con.execute("SELECT max(at_ms) FROM events").fetchall()[0][0]
    lines = new_session_lines(sid, "sevt_bench", last)
    lines += [json.dumps({"session_id": s, "id": e, "type": "session.status_idle",
                          "processed_at": iso_ms(at)}) for s, e, at in con.execute(
        "SELECT session_id, event_id, at_ms FROM status_events ORDER BY event_id LIMIT 50"
    ).fetchall()]
    path = work.with_suffix(".small.jsonl")
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    result = ingest_path(con, path, max_future_ms=10**13)
    append_s = time.perf_counter() - started
    con.execute("CREATE OR REPLACE TEMP TABLE ids AS SELECT event_id FROM events "
                "WHERE session_id = $s OR event_id IN (SELECT event_id FROM events "
                "ORDER BY event_id LIMIT 50)", {"s": sid})
    started = time.perf_counter()
    con.execute("SELECT count(*) FROM ids WHERE event_id NOT IN (SELECT event_id FROM events)"
                ).fetchall()
    before_s = time.perf_counter() - started
    con.close()
    path.unlink()
    return append_s, before_s, result.summary().split(": ", 1)[-1]


def _best(times: list[float]) -> float:
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ledger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="scale 0.01 over 20 days")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.days = 0.01, 20
    print("== ledger: incremental rating vs a full re-rate ==")
    print(machine_line())
    base = build_store(args.scale, args.days, args.rebuild)
    work = base.with_name(base.stem + "-work.duckdb")
    shutil.copyfile(base, work)
    Path(f"{work}.wal").unlink(missing_ok=True)
    books = load_pricebooks()
    con = connect(work)
    # "now": noon on the last full day; what the simulator made after it has not happened
    last_ms = con.execute("SELECT max(at_ms) FROM events").fetchall()[0][0]
    now_ms = last_ms - last_ms % 86_400_000 - 86_400_000 + 43_200_000
    for t in EVENT_TABLES:
        con.execute(f"DELETE FROM {t} WHERE at_ms > $n", {"n": now_ms})
    con.execute("CHECKPOINT")
    events, sessions = con.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM sessions)").fetchall()[0]
    last_ms = now_ms
    cut_ms = now_ms - 60_000
    print(f"store: {events:,} events, {sessions:,} sessions, "
          f"{iso_ms(con.execute('SELECT min(at_ms) FROM events').fetchall()[0][0])} .. "
          f"{iso_ms(last_ms)}", flush=True)

    _take_out(con, cut_ms)
    full = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        bring_up_to_date(con, books, RatingOptions(as_of_ms=cut_ms), full=True)
        full.append(time.perf_counter() - started)
    minute = incremental = 0
    increments, stale = [], []
    for cycle in range(args.repeat):
        if cycle:
            _take_out(con, cut_ms)
            bring_up_to_date(con, books, RatingOptions(as_of_ms=cut_ms))
        minute = _put_back(con)
        started = time.perf_counter()
        run = bring_up_to_date(con, books, RatingOptions(as_of_ms=now_ms))
        increments.append(time.perf_counter() - started)
        stale.append(run.sessions_rated)
        incremental = run.sessions_rated
        assert run.kind == "incremental", run
    ledger = con.execute("SELECT count(*), sum(amount_units) FROM main.charges").fetchall()[0]
    rate(con, books, RatingOptions(as_of_ms=now_ms))
    fresh = con.execute("SELECT count(*), sum(amount_units) FROM temp.main.charges"
                        ).fetchall()[0]
    assert ledger == fresh, (ledger, fresh)
    same = con.execute("SELECT count(*) FROM (SELECT * FROM main.charges EXCEPT ALL "
                       "SELECT * FROM temp.main.charges)").fetchall()[0][0]
    assert same == 0, f"{same} ledger lines differ from a full rating"
    con.close()

    period = str(Period.containing(now_ms))
    reads = {}
    with agenttally.open_store(work, read_only=True) as store:
        for label in ("current", "current"):
            started = time.perf_counter()
            bill = agenttally.invoice(store, period, as_of=now_ms)
            reads[label] = time.perf_counter() - started
        total = bill.total
        started = time.perf_counter()
        rate(store.connection, books, RatingOptions(as_of_ms=now_ms))
        before = build_invoice(store.connection, period, as_of=iso_ms(now_ms))
        reads["whole"] = time.perf_counter() - started
        assert before.total == total, (before.total, total)
    # a reader while the ledger is a minute behind
    con = connect(work)
    _take_out(con, cut_ms)
    bring_up_to_date(con, books, RatingOptions(as_of_ms=cut_ms))
    _put_back(con)
    con.close()
    with agenttally.open_store(work, read_only=True) as store:
        started = time.perf_counter()
        behind = agenttally.invoice(store, period, as_of=now_ms)
        reads["behind"] = time.perf_counter() - started
    assert behind.total == total, (behind.total, total)

    append_s, before_s, append_result = _small_append(work)

    rate_s, full_s = _best(increments), _best(full)
    rows = [
        ("rate --full (every session)", f"{full_s:.2f} s", f"{sessions:,}",
         f"< {TARGETS['full']:.0f} s", "yes" if full_s < TARGETS["full"] else "NO"),
        (f"rate after a 1-minute append ({minute:,} events)", f"{rate_s * 1000:.0f} ms",
         f"{incremental:,}", f"< {TARGETS['rate'] * 1000:.0f} ms",
         "yes" if rate_s < TARGETS["rate"] else "NO"),
        ("  speed-up over rate --full", f"{full_s / rate_s:.0f}x", "",
         f">= {TARGETS['speedup']:.0f}x", "yes" if full_s / rate_s >= TARGETS["speedup"]
         else "NO"),
        (f"invoice {period}, ledger current (read-only)", f"{reads['current'] * 1000:.0f} ms",
         "-", f"< {TARGETS['invoice'] * 1000:.0f} ms",
         "yes" if reads["current"] < TARGETS["invoice"] else "NO"),
        (f"invoice {period}, ledger 1 minute behind", f"{reads['behind'] * 1000:.0f} ms",
         "-", "", ""),
        (f"invoice {period} rating the whole store (before)", f"{reads['whole']:.2f} s",
         f"{sessions:,}", "", ""),
        (f"ingest 301 lines ({append_result})", f"{append_s * 1000:.0f} ms", "", "", ""),
        ("  the duplicate check hashing all stored ids (before)", f"{before_s:.2f} s", "", "",
         ""),
    ]
    print(table(("step", "time (best)", "sessions rated", "target", "met"), rows))
    print(f"all runs: full {', '.join(f'{t:.2f}' for t in full)} s; incremental "
          f"{', '.join(f'{t * 1000:.0f}' for t in increments)} ms ({stale} sessions); "
          f"invoice total {total}; peak RSS {peak_rss_gib():.1f} GiB")
    print("the ledger after the incremental runs equals a full rating line for line")
    work.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
