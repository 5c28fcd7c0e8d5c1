"""Network emulation inside the HTTP client's transport (loopback use; stdlib + httpx only).

Each request pays: uplink serialisation of its bytes through a token bucket at the uplink
rate, half the round-trip time, the real server round trip on 127.0.0.1, half the RTT, and the
response bytes through a token bucket at the downlink rate. The bucket holds one MTU, so
a payload of B bytes takes about B / rate, as on a saturated real link.
"""
from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import httpx

MTU_BYTES = 1500


def nodelay_transport(verify: bool | str | os.PathLike = True) -> httpx.HTTPTransport:
    """A plain HTTP transport with TCP_NODELAY: without it, a request sent as two writes
    (headers, body) waits ~40 ms for a delayed ACK (Nagle), which would swamp loopback timings.
    ``verify``: check the server's TLS certificate (a CA/certificate file for a self-signed one)."""
    if isinstance(verify, (str, os.PathLike)):
        verify = ssl.create_default_context(cafile=str(verify))
    return httpx.HTTPTransport(verify=verify, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


@dataclass(frozen=True)
class Link:
    uplink_mbps: float
    downlink_mbps: float
    rtt_ms: float

    @classmethod
    def of(cls, profile) -> "Link":
        """From any object with uplink_mbps, downlink_mbps and rtt_ms (e.g. a NetworkProfile)."""
        return cls(float(profile.uplink_mbps), float(profile.downlink_mbps), float(profile.rtt_ms))


class TokenBucket:
    """Bytes may pass at ``rate`` bytes/s with bursts of at most ``burst`` bytes."""

    def __init__(self, rate_bytes_per_s: float, burst: int = MTU_BYTES):
        self.rate, self.burst = rate_bytes_per_s, burst
        self.tokens, self.stamp = float(burst), time.perf_counter()
        self.lock = threading.Lock()

    def consume(self, nbytes: int) -> None:
        """Block until ``nbytes`` have passed (sent chunk by chunk, each at most one burst)."""
        with self.lock:
            remaining = nbytes
            while remaining > 0:
                chunk = min(remaining, self.burst)
                now = time.perf_counter()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens < chunk:
                    time.sleep((chunk - self.tokens) / self.rate)
                    now = time.perf_counter()
                    self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                    self.stamp = now
                self.tokens -= chunk
                remaining -= chunk


def request_bytes(request: httpx.Request, body: bytes) -> int:
    line = len(request.method) + len(request.url.raw_path) + 11  # "POST /path HTTP/1.1\r\n"
    return line + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2 + len(body)


def response_bytes(response: httpx.Response, body: bytes) -> int:
    return 17 + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2 + len(body)


class EmulatedNetworkTransport(httpx.BaseTransport):
    """Wraps a real transport and delays traffic as ``link`` would. Refuses non-loopback hosts:
    the emulation is for tests and demos on this machine."""

    def __init__(self, link: Link, inner: httpx.BaseTransport | None = None):
        self.link = link
        self.inner = inner or nodelay_transport()
        self.up = TokenBucket(link.uplink_mbps * 1e6 / 8)
        self.down = TokenBucket(link.downlink_mbps * 1e6 / 8)
        self.last_uplink_bytes = self.last_downlink_bytes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host not in ("127.0.0.1", "localhost", "::1", "testserver"):
            raise httpx.ConnectError(f"network emulation is loopback-only; refusing {request.url.host}")
        body = request.read()
        self.last_uplink_bytes = request_bytes(request, body)
        self.up.consume(self.last_uplink_bytes)
        time.sleep(self.link.rtt_ms / 2e3)
        response = self.inner.handle_request(request)
        content = response.read()
        self.last_downlink_bytes = response_bytes(response, content)
        time.sleep(self.link.rtt_ms / 2e3)
        self.down.consume(self.last_downlink_bytes)
        return httpx.Response(response.status_code, headers=response.headers, content=content,
                              request=request)

    def close(self) -> None:
        self.inner.close()
