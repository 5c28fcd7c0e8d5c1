"""Server settings (pydantic) and the checks made before the server listens: port and host,
TLS files, and the rule that a server reachable beyond loopback needs a token."""
from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError

BODY_FLOOR_BYTES = 4 * 2**20  # room for a photo upload to /v1/classify
BODY_CAP_BYTES = 64 * 2**20
BODY_HEADROOM = 4  # the default limit is this many times the largest legitimate tensor request


class ServeSettings(BaseModel):
    """What the app enforces on every request. ``max_body_bytes=None``: sized from the model input
    (``default_max_body_bytes``)."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: Optional[int] = Field(None, ge=64)
    max_concurrency: int = Field(32, ge=1, description="requests served at once; more get 429")
    request_timeout: float = Field(30.0, gt=0, description="seconds a request body may take to arrive; then 408")
    allow_nonfinite: bool = Field(False, description="accept NaN/Inf in float inputs (default: 422)")
    max_batch: int = Field(1, ge=1, le=4096, description="rows run as one ONNX Runtime batch")
    max_wait_ms: float = Field(2.0, ge=0, le=10_000, description="how long a batch waits to fill up")
    max_image_pixels: int = Field(4096 * 4096, ge=1)


class BindSettings(BaseModel):
    """Where the server listens and how it is exposed."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    tls_cert: Optional[Path] = None
    tls_key: Optional[Path] = None
    insecure_no_auth: bool = False


Settings = TypeVar("Settings", bound=BaseModel)


def make_settings(cls: type[Settings], **values: Any) -> Settings:
    """``cls(**values)`` with pydantic's errors turned into one ConfigError naming each bad field."""
    try:
        return cls(**values)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}={x.get('input')!r}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"invalid server setting: {problems}") from None


def default_max_body_bytes(row_bytes: int | None, max_batch: int) -> int:
    """A few times the largest legitimate tensor request (``max_batch`` rows), at least
    BODY_FLOOR_BYTES, at most BODY_CAP_BYTES; the cap when a row's size is not fixed."""
    if row_bytes is None:
        return BODY_CAP_BYTES
    return min(BODY_CAP_BYTES, max(BODY_FLOOR_BYTES, BODY_HEADROOM * (max_batch * row_bytes + 64)))


def resolve_host(host: str, port: int) -> list[tuple]:
    """getaddrinfo results for listening on ``host``; ConfigError when it is not an address or a name
    this machine resolves."""
    if not host or len(host) > 253 or any(c.isspace() for c in host):
        raise ConfigError(f"--host {host!r} is not an IP address or a host name")
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP,
                                  flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"--host {host!r} is not an IP address or a host name this machine resolves ({e})") from None


def is_loopback(addresses: list[tuple]) -> bool:
    return all(ipaddress.ip_address(a[4][0].split("%")[0]).is_loopback for a in addresses)


def check_tls(bind: BindSettings) -> None:
    """Both TLS files or neither, readable, and a certificate that matches its key."""
    if (bind.tls_cert is None) != (bind.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both (or neither, for plain HTTP)")
    if bind.tls_cert is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(bind.tls_cert, bind.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load the TLS certificate {bind.tls_cert} with key {bind.tls_key}: {e}") from None


def check_exposure(bind: BindSettings, addresses: list[tuple], token: str | None) -> list[str]:
    """Refuse a server reachable from other machines without a token (unless ``insecure_no_auth``);
    returns warnings for what is allowed but risky."""
    if is_loopback(addresses):
        return []
    if token is None and not bind.insecure_no_auth:
        raise ConfigError(f"refusing to serve on {bind.host} (reachable beyond this machine) without a token: "
                          "give --token-file (or $EDGESLIM_TOKEN), or --insecure-no-auth to accept that risk")
    warnings = []
    if token is None:
        warnings.append(f"serving on {bind.host} without authentication (--insecure-no-auth)")
    if bind.tls_cert is None:
        warnings.append(f"serving on {bind.host} without TLS: requests{' and the token' if token else ''} "
                        "travel in clear text; give --tls-cert/--tls-key")
    return warnings


def listening_socket(host: str, port: int, addresses: list[tuple] | None = None) -> socket.socket:
    """A bound TCP socket (TCP_NODELAY comes from proto=IPPROTO_TCP: asyncio only sets it on
    accepted sockets whose proto says TCP, and without it every response waits ~40 ms for a
    delayed ACK). ConfigError when the address cannot be used."""
    family, _, proto, _, address = (addresses or resolve_host(host, port))[0]
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None
    return sock
