"""Run the inference server: blocking (``edgeslim serve-tail``) or in a background thread
on an ephemeral loopback port (tests, benchmarks, demos), always with an optional bound on
the number of requests after which the server stops by itself."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Iterable, Iterator

from .app import create_app


def _config(app, max_requests: int | None, log_level: str):
    import uvicorn

    return uvicorn.Config(app, log_level=log_level, limit_max_requests=max_requests, access_log=False,
                          lifespan="off")


def serve(model: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, threads: int = 1,
          cpus: Iterable[int] | None = None, max_requests: int | None = None, log_level: str = "info") -> None:
    """Serve ``model`` until interrupted (or until ``max_requests`` requests were answered)."""
    import uvicorn

    config = _config(create_app(model, threads, cpus), max_requests, log_level)
    config.host, config.port = host, port
    uvicorn.Server(config).run()


@contextlib.contextmanager
def serve_in_thread(app, max_requests: int | None = 1000, startup_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port in a daemon thread; yields the base URL and
    stops the server on exit (it also stops by itself after ``max_requests`` requests)."""
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, max_requests, "warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"edgeslim-server-{port}")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the loopback inference server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
