"""Collector throughput against the emulator: events/s stored from 100 concurrent streams.

    python -m bench.bench_collect [--sessions 100] [--events 2000] [--quick] [--json]

The emulator runs as its own process (`agenttally emulate`), so that on a 2-core machine the
emulator and the collector each get a core, as they would against the real API. Two runs:

- live: 100 sessions are created after the collector has started (so each is followed from
  birth, one SSE stream per session), then all emit their events within two seconds, faster
  than anything can consume them: the rate measured is the collector's ceiling, from the first
  event received to the last event committed to the store.
- back-fill: the same day with everything already emitted, collected with `--once` (paginated
  event listings, 1,000 events per page).

The client-side read limiter is raised to 100,000 requests/min for the local emulator; at the
real API's 1,200/min, connecting 100 streams (plus their back-fills) alone takes ~10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import fmt_rate, load_line, machine_line, table
from meter.collector import ApiClient, Collector, CollectorConfig
from meter.store import open_store
from meter.vocabulary import iso_ms, parse_api_time

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-ant-bench-not-a-real-key"
T0 = parse_api_time("2026-11-03T09:00:00.000Z")
CYCLE = [
    ("session.status_running", {}),
    ("span.model_request_start", {}),
    ("span.model_request_end", {"is_error": False, "model_usage": {
        "input_tokens": 3571, "output_tokens": 727, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 6656, "speed": "standard"}}),
    ("agent.tool_use", {"name": "bash", "input": {"command": "ls"},
                        "evaluated_permission": "allow"}),
    ("agent.tool_result", {"content": [], "is_error": False}),
    ("agent.message", {"content": [{"type": "text", "text": "done"}]}),
    ("session.usage", {"usage": {
        "input_tokens": 5000, "output_tokens": 3200, "cache_read_input_tokens": 20000,
        "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 0},
        "list_cost": {"amount": "187", "currency": "USD"}, "active_seconds": 342.5,
        "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0}}}),
    ("session.status_idle", {"stop_reason": {"type": "end_turn"}}),
]


def bench_day(sessions: int, events: int, path: Path) -> int:
    """A pacer session at T0 (starts the clock), then `sessions` created at T0+1 s whose
    events all fall in [T0+3 s, T0+5 s). Returns the number of events written."""
    with path.open("w") as fh:
        fh.write(json.dumps({"type": "session", "id": "sesn_pacer", "created_at": iso_ms(T0),
                             "status": "idle", "metadata": {}}) + "\n")
        lines = []
        for s in range(sessions):
            sid = f"sesn_b{s:04d}"
            last = T0 + 3000 + (events - 1) * 2000 // events
            fh.write(json.dumps({
                "type": "session", "id": sid, "created_at": iso_ms(T0 + 1000),
                "updated_at": iso_ms(last), "status": "idle", "environment_id": "env_01",
                "agent": {"id": "agent_01", "version": 1, "name": "coder", "model": {
                    "id": "claude-opus-5", "speed": "standard", "inference_geo": "global"}},
                "metadata": {"team": f"t{s % 7}"}}) + "\n")
            for n in range(events):
                kind, extra = CYCLE[n % len(CYCLE)]
                lines.append(json.dumps({
                    "session_id": sid, "type": kind, "id": f"sevt_b{s:04d}_{n:06d}",
                    "processed_at": iso_ms(T0 + 3000 + n * 2000 // events), **extra}))
        fh.write("\n".join(lines) + "\n")
    return sessions * events


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Emulator:
    """`agenttally emulate` in a child process."""

    def __init__(self, events: Path, speed: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agenttally.cli.collect", "emulate", "--events", str(events),
             "--port", str(self.port), "--speed", speed, "--ping-interval", "1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url + "/_emulator/state", timeout=1)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _collect(url: str, db: Path, total: int, *, once: bool, streams: int) -> dict:
    cfg = CollectorConfig(max_streams=streams, poll_interval_s=0.25, sweep_interval_s=30,
                          progress_interval_s=3600)
    marks: dict[str, float] = {}
    async with ApiClient(url, api_key=KEY, read_rpm=100_000,
                         max_connections=cfg.max_requests + 4, max_streams=streams + 4) as client:
        collector = Collector(client, db, cfg)

        async def watch():
            while collector.stats.stored < total:
                if "first" not in marks and collector.stats.received:
                    marks["first"] = time.perf_counter()
                await asyncio.sleep(0.002)
            marks["last"] = time.perf_counter()
            collector.stop()

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        marks["start"] = time.perf_counter()
        watcher = asyncio.create_task(watch())
        stats = await collector.run(once=once)
        if once:
            marks.setdefault("last", time.perf_counter())
            watcher.cancel()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    first = marks.get("first", marks["start"])
    seconds = marks["last"] - first
    return {"events": stats.stored, "seconds": round(seconds, 3),
            "events_per_s": round(stats.stored / seconds) if seconds else None,
            "from_stream": stats.from_stream, "from_backfill": stats.from_backfill,
            "streams": stats.streams_opened, "reconnects": stats.reconnects,
            "flushes": stats.flushes,
            "requests": client.stats.requests, "collector_cpu_s": round(cpu, 2),
            "events_per_cpu_s": round(stats.stored / cpu) if cpu else None}


def run(sessions: int, events: int, streams: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        day = Path(tmp) / "bench.jsonl"
        total = bench_day(sessions, events, day)
        results = {"sessions": sessions, "events": total, "cpus": os.cpu_count()}
        for name, speed, once in (("live", "1", False), ("backfill", "instant", True)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            emulator = Emulator(day, speed)
            try:
                db = Path(tmp) / f"{name}.duckdb"
                results[name] = asyncio.run(_collect(emulator.url, db, total, once=once,
                                                     streams=streams))
            finally:
                emulator.close()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            results[name]["emulator_cpu_s"] = round(
                after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)
            with open_store(db, read_only=True) as con:
                stored, distinct = con.execute(
                    "SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
            assert stored == distinct == total, (name, stored, distinct, total)
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_collect",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--events", type=int, default=2000, help="events per session")
    parser.add_argument("--streams", type=int, default=100, help="max concurrent streams")
    parser.add_argument("--quick", action="store_true", help="100 sessions x 200 events")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    events = 200 if args.quick else args.events
    results = run(args.sessions, events, args.streams)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"collect benchmark: {results['sessions']} sessions x {events:,} events = "
          f"{results['events']:,} events; the emulator runs in its own process")
    print(machine_line())
    print(load_line())
    rows = []
    runs = (("live", f"live, {args.streams} streams"), ("backfill", "back-fill --once"))
    for name, label in runs:
        r = results[name]
        via = (f"{r['from_stream'] / max(r['events'], 1):.0%} streamed" if name == "live"
               else f"{r['requests']:,} requests")
        rows.append((label, f"{r['events']:,}", f"{r['seconds']:.2f}",
                     fmt_rate(r["events_per_s"] or 0), f"{r['collector_cpu_s']:.1f}",
                     fmt_rate(r["events_per_cpu_s"] or 0), f"{r['emulator_cpu_s']:.1f}",
                     r["flushes"], via))
    print(table(["run", "events", "seconds", "events/s", "collector CPU s", "events/CPU-s",
                 "emulator CPU s", "flushes", "how"], rows))
    print("events/s: first event received to last event committed; CPU-s: the collector's "
          "process CPU time (incl. DuckDB) over the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
