"""The checks every request passes before it reaches a route, as one ASGI middleware: the bearer
token, the cap on concurrent requests, metrics, and a quiet end for clients that go away."""
from __future__ import annotations

import time

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from .auth import is_authorized
from .metrics import CLIENT_CLOSED, ServerMetrics

OPEN_ROUTES = {"/health"}  # answered without a token (without model details)
UNCAPPED_ROUTES = {"/health", "/metrics"}  # cheap, and needed most when the server is saturated


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Guard:
    """``routes``: the paths the app serves (metrics label anything else "other", so a scanner
    cannot create one time series per probed path)."""

    def __init__(self, app, token: str | None, metrics: ServerMetrics, max_concurrency: int, routes: set[str]):
        self.app, self.token, self.metrics = app, token, metrics
        self.max_concurrency, self.routes = max_concurrency, routes
        self.in_flight = 0  # only touched on the event loop: no lock needed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        status = 500  # what the metrics record if the app fails before answering

        async def send_and_record(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            if path not in OPEN_ROUTES and not is_authorized(_header(scope, b"authorization"), self.token):
                response = error_response(401, "missing or wrong bearer token: send the header "
                                               "'Authorization: Bearer <token>'", {"www-authenticate": "Bearer"})
                await response(scope, receive, send_and_record)
            elif path not in UNCAPPED_ROUTES and self.in_flight >= self.max_concurrency:
                response = error_response(429, f"the server is busy ({self.max_concurrency} requests in flight); "
                                               "retry shortly", {"retry-after": "1"})
                await response(scope, receive, send_and_record)
            else:
                await self._serve(path, scope, receive, send_and_record)
        except ClientDisconnect:  # the client went away mid-upload: nothing to answer, nothing to log
            status = CLIENT_CLOSED
        finally:
            self.metrics.observe(path if path in self.routes else "other", status, time.perf_counter() - t0)

    async def _serve(self, path, scope, receive, send) -> None:
        counted = path not in UNCAPPED_ROUTES
        if counted:
            self.in_flight += 1
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            if counted:
                self.in_flight -= 1
                self.metrics.in_flight.dec()


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None
