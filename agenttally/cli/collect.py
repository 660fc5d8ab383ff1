"""`agenttally collect` and `agenttally emulate`: the live collector and the local API emulator.

`agenttally.cli` calls `register(subparsers)`; each subcommand sets `func(args) -> int`.
Run standalone as `python -m agenttally.cli.collect collect ...` too.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

from meter.settings import setting
from meter.vocabulary import VocabularyError, parse_instant

COLLECT_EXAMPLES = """\
examples:
  export ANTHROPIC_API_KEY=sk-ant-...        # read from the environment only, never logged
  agenttally collect --once --since 7d       # back-fill the last week's sessions, then exit
  agenttally collect                         # follow every session live until Ctrl-C
  agenttally collect --base-url http://127.0.0.1:8765   # against `agenttally emulate`
  ANTHROPIC_WEBHOOK_SECRET=whsec_... agenttally collect --webhooks 0.0.0.0:8080
"""

EMULATE_EXAMPLES = """\
examples:
  agenttally emulate --events day.jsonl --speed 600        # 10 API minutes per second
  agenttally emulate --events day.jsonl --speed instant    # everything already happened
  agenttally emulate --sample --fault drop=50 --fault 429=7,retry_after=0.5 --fault dup=10
faults (deterministic counters):
  drop=N  close every stream after N events      stall=N  every Nth stream goes silent
  429=N   every Nth request gets 429             retry_after=S  seconds sent with a 429
  500=N   every Nth request gets 500             slow=S   answer every request S s late
  dup=N   every Nth event is sent twice
"""

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> int:
    """`--since`: an RFC 3339 instant, a date (UTC midnight), or an age like `36h` / `7d`."""
    value = text.strip()
    match = _RELATIVE.match(value)
    if match:
        now = time.time() if now is None else now
        return int((now - float(match.group(1)) * _UNIT_S[match.group(2)]) * 1000)
    try:
        return parse_instant(value)
    except VocabularyError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an instant or an age; expected a date, an RFC 3339 instant with "
            "a zone or an age in s, m, h or d, e.g. 2026-11-01, 2026-11-01T09:00:00Z or 7d"
        ) from None


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"--webhooks {text!r}: expected HOST:PORT or :PORT, e.g. 0.0.0.0:8080")
    return (host.strip("[]") or "0.0.0.0", int(port))


def _speed(text: str) -> float | None:
    if text.lower() in ("instant", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed {text!r}: expected a factor (600 = ten minutes per second), "
            "0 for a manual clock, or 'instant'") from None
    if value < 0:
        raise argparse.ArgumentTypeError("--speed: must be >= 0")
    return value


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("agenttally").setLevel(logging.DEBUG if verbose else logging.INFO)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `collect` and `emulate` to the `agenttally` command line."""
    p = subparsers.add_parser(
        "collect", help="follow the Managed Agents API into the store (live or --once)",
        description="Collect sessions and events from the Managed Agents API into the store. "
        "Live: new and running sessions are streamed (SSE) and back-filled on every "
        "reconnect; Ctrl-C or SIGTERM flushes and exits. The API key is read from "
        "ANTHROPIC_API_KEY.",
        epilog=COLLECT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=argparse.SUPPRESS,
                   help="the store (default: $AGENTTALLY_DB or data/agenttally.duckdb)")
    p.add_argument("--base-url", default=setting("ANTHROPIC_BASE_URL")
                   or "https://api.anthropic.com", help="API root (default: %(default)s)")
    p.add_argument("--since", type=parse_since, default=None, metavar="WHEN",
                   help="only sessions created since WHEN: 2026-11-01, an RFC 3339 time, or 7d")
    p.add_argument("--once", action="store_true",
                   help="back-fill every session once, then exit (no streams)")
    p.add_argument("--webhooks", type=_listen, default=None, metavar="HOST:PORT",
                   help="also receive webhooks here (secret from ANTHROPIC_WEBHOOK_SECRET)")
    p.add_argument("--read-rpm", type=float, default=1200,
                   help="client-side read rate limit, requests/min (default: %(default)s)")
    p.add_argument("--max-streams", type=int, default=100,
                   help="concurrent event streams (default: %(default)s)")
    p.add_argument("--poll-interval", type=float, default=5.0, metavar="S",
                   help="list new and running sessions every S seconds (default: %(default)s)")
    p.add_argument("--sweep-interval", type=float, default=300.0, metavar="S",
                   help="list all sessions every S seconds (default: %(default)s)")
    p.add_argument("--idle-linger", type=float, default=300.0, metavar="S",
                   help="keep streaming an idle session for S seconds (default: %(default)s)")
    p.add_argument("--heartbeat-timeout", type=float, default=60.0, metavar="S",
                   help="reconnect a stream silent for S seconds (default: %(default)s)")
    p.add_argument("--flush-events", type=int, default=1000, metavar="N",
                   help="write a batch every N events ... (default: %(default)s)")
    p.add_argument("--flush-interval", type=float, default=1.0, metavar="S",
                   help="... or every S seconds (default: %(default)s)")
    p.add_argument("--pricebooks",
                   help="price books to rate with after each batch (default: data/pricebooks)")
    p.add_argument("--no-rate", action="store_true",
                   help="store events only; do not bring the charges up to date after each "
                        "batch")
    p.add_argument("-v", "--verbose", action="store_true", help="log every flush and retry")
    p.set_defaults(func=run_collect)

    e = subparsers.add_parser(
        "emulate", help="serve a local Managed Agents API from a JSONL file (tests, demos)",
        description="Serve the Managed Agents read API (sessions, events, SSE stream) from "
        "simulator output, replayed on a clock, with optional fault injection. Any "
        "non-empty x-api-key is accepted unless ANTHROPIC_API_KEY is set here too.",
        epilog=EMULATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", metavar="FILE.jsonl",
                     help="session records and events (with session_id), one JSON per line")
    src.add_argument("--sample", action="store_true", help="serve a built-in sample day")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=8765)
    e.add_argument("--speed", type=_speed, default=1.0,
                   help="replay speed factor, 0 = manual clock, 'instant' (default: 1)")
    e.add_argument("--fault", action="append", default=[], metavar="NAME=VALUE",
                   help="inject faults (repeatable; see below)")
    e.add_argument("--ping-interval", type=float, default=10.0, metavar="S",
                   help="SSE heartbeat period (default: %(default)s)")
    e.set_defaults(func=run_emulate)


def run_collect(args: argparse.Namespace) -> int:
    import agenttally
    from meter.collector import CollectorConfig, CollectorError
    from meter.collector.client import Redactor

    _setup_logging(args.verbose)
    log = logging.getLogger("agenttally.collector")
    cfg = CollectorConfig(
        since_ms=args.since, poll_interval_s=args.poll_interval,
        sweep_interval_s=args.sweep_interval, flush_events=args.flush_events,
        flush_interval_s=args.flush_interval, max_streams=args.max_streams,
        idle_linger_s=args.idle_linger, source=f"collector:{args.base_url}",
    )
    secret = setting("ANTHROPIC_WEBHOOK_SECRET") if args.webhooks else None
    redact = Redactor(setting("ANTHROPIC_API_KEY"), secret)
    if args.webhooks and not secret:
        print("agenttally collect: --webhooks needs ANTHROPIC_WEBHOOK_SECRET (the whsec_... "
              "signing secret from the Console)", file=sys.stderr)
        return 2
    try:
        stats = agenttally.collect(
            getattr(args, "db", None), base_url=args.base_url, config=cfg, once=args.once,
            read_rpm=args.read_rpm, heartbeat_timeout_s=args.heartbeat_timeout,
            webhook_listen=args.webhooks, webhook_secret=secret,
            rate=not args.no_rate, pricebooks=args.pricebooks,
            on_start=lambda c: log.info("collecting from %s into %s", args.base_url, c.db),
        )
    except CollectorError as exc:
        print(f"agenttally collect: {redact(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a message may carry a credential: never print it raw
        if getattr(args, "debug", False):
            raise
        print(f"agenttally collect: {type(exc).__name__}: {redact(exc)}", file=sys.stderr)
        return 1
    print(stats.summary())
    return 0


def run_emulate(args: argparse.Namespace) -> int:
    import agenttally
    from meter.emulator import Faults

    try:
        faults = Faults.parse(args.fault)
    except ValueError as exc:
        print(f"agenttally emulate: {exc}", file=sys.stderr)
        return 2
    if args.events is not None and not os.path.isfile(args.events):
        print(f"agenttally emulate: {args.events}: no such file", file=sys.stderr)
        return 2
    emulator = agenttally.emulator(None if args.sample else args.events, speed=args.speed,
                                   faults=faults, api_key=setting("ANTHROPIC_API_KEY"),
                                   ping_interval_s=args.ping_interval)
    replay = emulator.replay
    print(f"emulating the Managed Agents API at http://{args.host}:{args.port} from "
          f"{emulator.source}: {len(replay.sessions):,} sessions, {replay.total_events:,} "
          "events" + (f" ({replay.skipped:,} lines skipped)" if replay.skipped else "")
          + "; the clock starts at the first request", file=sys.stderr, flush=True)
    emulator.serve(args.host, args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agenttally")
    parser.add_argument("--db", default=None, help="the store")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
