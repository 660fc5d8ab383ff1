"""What every benchmark shares: a clock, a machine line, a results table and a scratch folder.

Numbers from different machines are not comparable, so each report starts with the machine it
ran on; ratios between implementations run side by side in the same process are what a report
is about.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

OUT_DIR = Path(__file__).resolve().parent / "out"  # git-ignored: generated inputs, stores


def out_dir() -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUT_DIR


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@dataclass
class Clock:
    """Wall seconds and this process's CPU seconds (all threads) of a timed block.

    On a machine shared with other work, wall time is inflated by waiting for a core while
    CPU time is not, so a report shows both.
    """

    wall: float = 0.0
    cpu: float = 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def stopwatch() -> Iterator[Clock]:
    """`with stopwatch() as t: ...` then `t.wall` and `t.cpu` hold the block's seconds."""
    clock = Clock()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    try:
        yield clock
    finally:
        clock.wall = time.perf_counter() - wall
        clock.cpu = _cpu_seconds() - cpu


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a missing optional module is just "-"
        return "-"


def machine_line() -> str:
    """One line naming the hardware and the versions the numbers depend on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {_cpu_model()}, {cores} cores, {_ram_gib():.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"duckdb {_version('duckdb')}, pandas {_version('pandas')}, "
        f"numpy {_version('numpy')}, pyarrow {_version('pyarrow')}"
    )


def load_line() -> str:
    """The load average: other work on the machine slows every contender, unevenly."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average: unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = " (other processes compete for the cores: absolute times are pessimistic)" \
        if one > 0.5 * (cores or 1) else ""
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {cores} cores{busy}"


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def fmt_rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f}M"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f}k"
    return f"{per_s:.0f}"


def new_session_lines(session_id: str, event_prefix: str, start_ms: int,
                      events: int = 250) -> list[str]:
    """A small append's new part: a session's record created at `start_ms` and `events`
    status events a second apart (running, idle, ...), as JSONL lines."""
    import json

    from meter.vocabulary import iso_ms

    lines = [json.dumps({
        "type": "session", "id": session_id, "created_at": iso_ms(start_ms), "status": "idle",
        "environment_id": "env_bench", "metadata": {"team": "bench"},
        "agent": {"id": "agent_bench", "version": 1, "name": "bench",
                  "model": {"id": "claude-opus-5", "speed": "standard",
                            "inference_geo": "global"}}})]
    return lines + [json.dumps({"session_id": session_id, "id": f"{event_prefix}_{i:05d}",
                                "type": "session.status_running" if i % 2 == 0
                                else "session.status_idle",
                                "processed_at": iso_ms(start_ms + 1000 * i)})
                    for i in range(events)]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


@dataclass
class SqlTimings:
    """Wall time per SQL statement, keyed by a short label (its first words)."""

    entries: list[tuple[str, float]] = field(default_factory=list)

    def add(self, sql: str, seconds: float) -> None:
        self.entries.append((_label(sql), seconds))

    def top(self, n: int = 8) -> list[tuple[str, float, int]]:
        """The n labels that took longest in total: (label, seconds, calls)."""
        totals: dict[str, list[float]] = {}
        for label, s in self.entries:
            totals.setdefault(label, []).append(s)
        ranked = sorted(((k, sum(v), len(v)) for k, v in totals.items()), key=lambda x: -x[1])
        return ranked[:n]

    def report(self, total_s: float, n: int = 8) -> str:
        rows = [(label, f"{s:.2f}", f"{100 * s / total_s:.0f}%", calls)
                for label, s, calls in self.top(n)]
        return table(["statement", "seconds", "share", "calls"], rows)


def _label(sql: str) -> str:
    text = " ".join(sql.split())
    for marker in ("CREATE OR REPLACE TEMP TABLE ", "CREATE OR REPLACE TEMP VIEW ",
                   "CREATE OR REPLACE TEMP MACRO ", "CREATE TABLE ", "INSERT INTO "):
        if text.upper().startswith(marker):
            words = text[len(marker):].split()
            head = marker.strip().split()
            verb = "INSERT INTO" if head[0] == "INSERT" else "CREATE " + head[-1]
            return f"{verb} {words[0] if words else ''}"
    return text[:60]


class TimedConnection:
    """A DuckDB connection that records how long each `execute` takes.

    Passed where library code expects a connection, it shows which statement dominates without
    changing what runs: the overhead is one clock read per statement.
    """

    def __init__(self, con: Any, timings: SqlTimings | None = None):
        self._con = con
        self.timings = timings if timings is not None else SqlTimings()

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._con.execute(sql, *args, **kwargs)
        finally:
            self.timings.add(sql, time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)
