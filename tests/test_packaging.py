"""A non-editable install works away from the source tree: the wheel carries the price books,
profiles and dashboard, and `simulate`, `rate`, `invoice` and `serve` run from it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # builds a wheel and a venv: about 15 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with only the wheel installed (no deps: those come from this venv's
    site-packages on PYTHONPATH, which holds no copy of our packages)."""
    base = tmp_path_factory.mktemp("pkg")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(base / "wheel"), str(ROOT)], check=True, cwd=base)
    [wheel] = (base / "wheel").glob("agenttally-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    subprocess.run([str(base / "venv/bin/pip"), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTTALLY_")}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    work = base / "work"
    work.mkdir()
    return base / "venv/bin/agenttally", env, work


def test_simulate_rate_and_invoice_run_with_the_shipped_data(installed):
    agenttally, env, work = installed

    def run(*argv: str) -> str:
        done = subprocess.run([str(agenttally), *argv], env=env, cwd=work, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = run("--help")
    assert "environment:" in where
    run("simulate", "--profile", "demo", "--start", "2026-11-01", "--days", "2", "--seed", "7",
        "--into", "s.duckdb")
    assert "charge lines" in run("rate", "--db", "s.duckdb", "--as-of", "2026-11-03")
    invoice = json.loads(run("invoice", "--db", "s.duckdb", "--period", "2026-11",
                             "--as-of", "2026-11-03", "--format", "json"))
    assert float(invoice["total"]) > 0 and not invoice["unrated"]
    # the code ran from the install, not from this source tree
    origin = subprocess.run([str(agenttally.parent / "python"), "-c",
                             "import pricing.pricebook as p; print(p.default_pricebook_dir())"],
                            env=env, cwd=work, capture_output=True, text=True,
                            check=True).stdout
    assert str(ROOT) not in origin and "share/agenttally/data/pricebooks" in origin


def test_serve_runs_the_installed_dashboard(installed):
    agenttally, env, work = installed
    port = _free_port()
    server = subprocess.Popen([str(agenttally), "serve", "--db", str(work / "d.duckdb"),
                               "--demo-days", "2", "--port", str(port)], env=env, cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and server.poll() is None and not healthy:
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/_stcore/health",
                                    timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        assert healthy, server.stdout.read().decode() if server.poll() is not None else "timeout"
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "<title>" in page.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
