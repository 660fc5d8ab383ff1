"""`agenttally serve`: the dashboard on the local store, with something to show at first start.

It checks the port, has `agenttally.prepare_store` open (or create) the store, seed the demo
profile when the store holds no event and rate the usage exactly as `agenttally rate` does,
then replaces itself with `streamlit run app.py` bound to 127.0.0.1, the store passed as
AGENTTALLY_DB.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from datetime import date
from pathlib import Path

import agenttally
from meter.settings import shipped

APP = shipped("app.py")


def prepare_store(path: Path, *, demo: bool = True, demo_days: int | None = None,
                  rate: bool = True, pricebooks: str | None = None) -> None:
    """`agenttally.prepare_store`, saying what it does: the seeding on stderr (before its
    seconds of work), the rating on stdout."""
    def seeding(first: date) -> None:
        print(f"{path}: empty store, seeding the demo profile from {first} to today...",
              file=sys.stderr)

    prepared = agenttally.prepare_store(path, demo=demo, demo_days=demo_days, rate=rate,
                                        pricebooks=pricebooks, on_seed=seeding)
    if prepared.seeded_from is not None:
        print(f"seeded {prepared.seeded_sessions:,} sessions, "
              f"{prepared.seeded_events:,} events", file=sys.stderr)
    run = prepared.run
    if run is not None:
        print(f"rated as of {run.as_of}: {run.charge_lines:,} charge lines, "
              f"{run.unrated_lines:,} unrated")


def port_in_use(address: str, port: int) -> bool:
    """Whether `address:port` cannot be bound now, as Streamlit would bind it (with
    SO_REUSEADDR: a port left in TIME_WAIT by a dashboard just stopped is free)."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                       socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


def streamlit_command(address: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", address,
            "--server.port", str(port), "--server.headless", "true"]


def cmd_serve(args: argparse.Namespace) -> int:
    from meter.errors import UsageError
    from meter.store import default_db_path
    path = Path(args.db or default_db_path()).resolve()
    # Before seeding and rating (seconds): Streamlit would print the URL, then fail.
    if port_in_use(args.address, args.port):
        raise UsageError(f"--port {args.port}: {args.address}:{args.port} is in use (another "
                         "dashboard?); pass --port N to use another port")
    if not APP.exists():
        raise FileNotFoundError(f"{APP}: the dashboard is not installed; reinstall "
                                "AgentTally (pip install .) or run from a clone")
    prepare_store(path, demo=not args.no_demo, demo_days=args.demo_days,
                  rate=not args.no_rate, pricebooks=args.pricebooks)
    env = dict(os.environ, AGENTTALLY_DB=str(path))
    command = streamlit_command(args.address, args.port)
    print(f"dashboard: http://{args.address}:{args.port}  (store {path})", file=sys.stderr)
    # The app's .streamlit/config.toml and data/ (scenarios, budgets) are read from the
    # repository root.
    os.chdir(APP.parent)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
    return 0  # not reached


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from agenttally.cli import _add_common

    p = sub.add_parser(
        "serve", help="open the dashboard (seeds the demo into an empty store, rates it)",
        description="Prepare the store (demo data when empty, fresh charges) and run the "
                    "Streamlit dashboard on 127.0.0.1.",
        epilog="examples:\n  agenttally serve\n"
               "  agenttally serve --db data/prod.duckdb --port 8502 --no-demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    p.add_argument("--port", type=int, default=8501, help="port to listen on (8501)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to bind (127.0.0.1: this machine only)")
    p.add_argument("--no-demo", action="store_true",
                   help="do not seed the demo profile into an empty store")
    p.add_argument("--demo-days", type=int,
                   help="days of demo data to seed, ending today (default: from 2026-10-02, "
                        "the README's demo, to today; the last 60 days once that is over 120)")
    p.add_argument("--no-rate", action="store_true",
                   help="serve the charges as last rated (skip `agenttally rate`)")
    p.add_argument("--pricebooks", help="folder of price book TOML files (default: "
                                        "data/pricebooks)")
    p.set_defaults(func=cmd_serve)


__all__ = ["cmd_serve", "port_in_use", "prepare_store", "register", "streamlit_command"]

