"""Run the inference server: blocking (``edgeslim serve`` / ``serve-tail``) or in a background
thread on an ephemeral loopback port (tests, benchmarks, demos), always with an optional bound on
the number of requests after which the server stops by itself."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Callable, Iterable, Iterator

from .app import create_app
from .config import (BindSettings, ServeSettings, check_exposure, check_tls, is_loopback, listening_socket,
                     resolve_host)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a handler that kept the stream it was
    created with would write to a closed one once a caller swaps stderr back)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _uvicorn_logging() -> None:
    """uvicorn's own logging setup is ``logging.config.dictConfig``, which closes every handler of
    the process first; absl's handler (imported with ExecuTorch / LiteRT tooling) then closes the
    stream it writes to, which under pytest is the capture file. So the server logs through one
    handler of ours on the "uvicorn" logger and leaves the rest of the process's logging alone."""
    logger = logging.getLogger("uvicorn")
    if not any(isinstance(h, _CurrentStderrHandler) for h in logger.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _uvicorn_server(app, max_requests: int | None, log_level: str, bind: BindSettings | None = None):
    import uvicorn

    _uvicorn_logging()
    tls = {"ssl_certfile": str(bind.tls_cert), "ssl_keyfile": str(bind.tls_key)} if bind and bind.tls_cert else {}
    config = uvicorn.Config(app, log_level=log_level, limit_max_requests=max_requests, access_log=False,
                            lifespan="off", log_config=None, **tls)
    return uvicorn.Server(config)


def serve(model: str | os.PathLike, settings: ServeSettings | None = None, bind: BindSettings | None = None, *,
          token: str | None = None, threads: int = 1, cpus: Iterable[int] | None = None,
          public_key: str | os.PathLike | None = None, max_requests: int | None = None,
          log_level: str = "warning", log: Callable[[str], None] | None = None) -> None:
    """Serve ``model`` until interrupted (or until ``max_requests`` requests were answered).
    Everything is checked before the model loads: the port and host, the TLS files, and that a
    host reachable from other machines has a ``token`` (or ``bind.insecure_no_auth``); a problem
    raises ConfigError. ``log`` gets the warnings and the address served (default: stderr)."""
    bind = bind or BindSettings()
    log = log or (lambda line: print(line, file=sys.stderr))
    addresses = resolve_host(bind.host, bind.port)
    check_tls(bind)
    warnings = check_exposure(bind, addresses, token)
    sock = listening_socket(bind.host, bind.port, addresses)
    try:
        app = create_app(model, settings, token=token, threads=threads, cpus=cpus, public_key=public_key)
        server = app.state.model_server
        for w in warnings + server.warnings:
            log(f"warning: {w}")
        scheme = "https" if bind.tls_cert else "http"
        host = f"[{bind.host}]" if ":" in bind.host else bind.host
        log(f"serving {server.name} at {scheme}://{host}:{bind.port} (batch up to {server.max_batch}, "
            f"{'token required' if token else 'no token'}"
            f"{'' if is_loopback(addresses) else ', reachable from other machines'}); Ctrl-C stops")
        _uvicorn_server(app, max_requests, log_level, bind).run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def serve_in_thread(app, max_requests: int | None = 1000, startup_timeout_s: float = 20.0,
                    bind: BindSettings | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port in a daemon thread; yields the base URL and
    stops the server on exit (it also stops by itself after ``max_requests`` requests).
    ``bind`` only contributes its TLS files (the host is always 127.0.0.1, the port free)."""
    if bind is not None:
        check_tls(bind)
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _uvicorn_server(app, max_requests, "warning", bind)
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
        yield f"{'https' if bind and bind.tls_cert else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
