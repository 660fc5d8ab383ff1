"""Serving the emulator with uvicorn: in the foreground (CLI) or a background thread (tests)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets that say so, and
    # without it each response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _config(app, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                          timeout_graceful_shutdown=1, timeout_keep_alive=30)


class EmulatorServer:
    """The emulator on a real socket, served by uvicorn in a daemon thread.

        with EmulatorServer(create_app(replay)) as server:
            httpx.get(server.url + "/v1/sessions", headers=...)

    `port=0` picks a free port; `url` says which.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app = app
        self._sock = _bind(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._server = uvicorn.Server(_config(app, log_level))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]},
                                        name=f"emulator:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmulatorServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"emulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app, host: str = "127.0.0.1", port: int = 8765, log_level: str = "info") -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn's own handlers)."""
    server = uvicorn.Server(_config(app, log_level))
    server.run(sockets=[_bind(host, port)])
