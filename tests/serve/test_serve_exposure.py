"""What makes the server safe to expose: the token, TLS, body/concurrency/time limits, the NaN
policy, metrics, quiet client disconnects, and the checks made before it listens. Loopback only."""
from __future__ import annotations

import logging
import socket
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from edgeslim.errors import ConfigError
from edgeslim.serve import tensor_format as tf
from edgeslim.serve.app import create_app
from edgeslim.serve.auth import TOKEN_ENV, load_token
from edgeslim.serve.client import ServerError, SplitClient
from edgeslim.serve.config import (BindSettings, ServeSettings, check_exposure, check_tls, listening_socket,
                                   make_settings, resolve_host)
from edgeslim.serve.server import serve, serve_in_thread

from .conftest import TOKEN

AUTH = {"authorization": f"Bearer {TOKEN}"}


def _x(seed=0, n=1):
    return np.random.default_rng(seed).standard_normal((n, 1, 32, 32)).astype(np.float32)


def _wait_for(condition, timeout_s=10.0):
    """Poll until ``condition()`` holds (bounded); the server works in its own thread."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _stalled_upload(url: str, path="/v1/infer", declared=10_000, sent=100, token=TOKEN) -> socket.socket:
    """A raw connection that announces ``declared`` body bytes and sends only ``sent``."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n"
                 f"content-length: {declared}\r\n\r\n".encode() + bytes(sent))
    return sock


def test_token_is_required_everywhere_but_health(whole_cnn):
    client = TestClient(create_app(whole_cnn, token=TOKEN))
    body = tf.encode(_x())
    assert client.post("/v1/infer", content=body).status_code == 401
    wrong = client.post("/v1/infer", content=body, headers={"authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/infer", content=body, headers={"authorization": TOKEN}).status_code == 401  # no scheme
    ok = client.post("/v1/infer", content=body, headers=AUTH)
    assert ok.status_code == 200 and tf.decode(ok.content).shape == (1, 10)
    for path in ("/metrics", "/openapi.json", "/docs", "/redoc", "/anything"):
        assert client.get(path).status_code == 401, path
    for path in ("/openapi.json", "/docs", "/redoc"):  # not served at all
        assert client.get(path, headers=AUTH).status_code == 404, path
    assert client.get("/health").json() == {"status": "ok"}  # no model details without the token
    details = client.get("/health", headers=AUTH).json()
    assert details["model"] == "cnn.onnx" and details["input_shape"] == [None, 1, 32, 32]


def test_load_token_from_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert load_token() is None
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert load_token() == TOKEN
    f = tmp_path / "token"
    f.write_text("  file-token-0123456789abcdef\n")
    assert load_token(f) == "file-token-0123456789abcdef"  # the file wins over the environment
    f.write_text("short")
    with pytest.raises(ConfigError, match="at least 16"):
        load_token(f)
    with pytest.raises(ConfigError, match="cannot read the token file"):
        load_token(tmp_path / "missing")


def test_tls_round_trip_with_a_self_signed_certificate(whole_cnn, tls_files):
    cert, key = tls_files
    app = create_app(whole_cnn, token=TOKEN)
    with serve_in_thread(app, max_requests=20, bind=BindSettings(tls_cert=cert, tls_key=key)) as url:
        assert url.startswith("https://")
        import ssl

        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
            r = client.post(url + "/v1/infer", content=tf.encode(_x()), headers=AUTH)
            assert r.status_code == 200 and tf.decode(r.content).shape == (1, 10)
        with SplitClient(url, token=TOKEN, verify=cert) as device:  # the project's client, offload mode
            assert device.infer(_x()).output.shape == (1, 10)
        with SplitClient(url, token=TOKEN) as untrusting:  # system CAs only: the certificate is refused
            with pytest.raises(ServerError, match="cannot connect|CERTIFICATE"):
                untrusting.infer(_x())
        with httpx.Client() as plain:  # plain HTTP to the TLS port gets no answer
            with pytest.raises(httpx.HTTPError):
                plain.get(url.replace("https://", "http://") + "/health")


def test_tls_needs_both_files_that_match(tls_files, tmp_path):
    cert, key = tls_files
    with pytest.raises(ConfigError, match="go together"):
        check_tls(BindSettings(tls_cert=cert))
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        check_tls(BindSettings(tls_cert=tmp_path / "bad.pem", tls_key=key))
    check_tls(BindSettings(tls_cert=cert, tls_key=key))


def test_body_limit_declared_and_counted(whole_cnn):
    app = create_app(whole_cnn, ServeSettings(max_body_bytes=1000))
    assert app.state.max_body_bytes == 1000
    client = TestClient(app)
    small = tf.encode(np.zeros(4, np.float32))
    big = bytes(5000)
    r = client.post("/v1/infer", content=big)  # declared Content-Length 5000
    assert r.status_code == 413 and "5000 bytes exceeds the limit" in r.json()["error"]
    r = client.post("/v1/infer", content=iter([big]))  # chunked: no Content-Length, counted while reading
    assert r.status_code == 413 and "exceeds the limit of 1,000 bytes" in r.json()["error"]
    r = client.post("/v1/infer", content=small, headers={"content-length": "abc"})
    assert r.status_code == 413
    assert client.post("/v1/infer", content=small).status_code == 422  # within the limit: reaches the model check


def test_default_body_limit_is_sized_from_the_model(whole_cnn):
    from edgeslim.serve.config import BODY_CAP_BYTES, BODY_FLOOR_BYTES, default_max_body_bytes

    assert create_app(whole_cnn).state.max_body_bytes == BODY_FLOOR_BYTES  # 4 KiB rows: the floor
    assert default_max_body_bytes(3 * 224 * 224 * 4, 8) == 4 * (8 * 3 * 224 * 224 * 4 + 64)
    assert default_max_body_bytes(10**9, 1) == BODY_CAP_BYTES
    assert default_max_body_bytes(None, 1) == BODY_CAP_BYTES


def test_streamed_body_over_the_limit_on_a_real_server(whole_cnn):
    app = create_app(whole_cnn, ServeSettings(max_body_bytes=5000))  # one 4,120-byte input fits
    with serve_in_thread(app, max_requests=10) as url, httpx.Client() as client:
        r = client.post(url + "/v1/infer", content=iter([bytes(2000)] * 3))  # chunked, 6000 bytes
        assert r.status_code == 413
        assert client.post(url + "/v1/infer", content=tf.encode(_x())).status_code == 200


def test_concurrency_cap_429_stalled_upload_408_and_quiet_disconnect(whole_cnn, caplog):
    app = create_app(whole_cnn, ServeSettings(max_concurrency=2, request_timeout=1.0), token=TOKEN)
    metrics = app.state.metrics
    with serve_in_thread(app, max_requests=50) as url, httpx.Client() as client:
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addHandler(caplog.handler)
        try:
            stalled = [_stalled_upload(url) for _ in range(2)]
            _wait_for(lambda: metrics.value("edgeslim_requests_in_flight") == 2)
            busy = client.post(url + "/v1/infer", content=tf.encode(_x()), headers=AUTH)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            assert client.get(url + "/health").status_code == 200  # health is never capped
            for sock in stalled:  # the stalled uploads time out
                assert sock.recv(4096).startswith(b"HTTP/1.1 408")
                sock.close()
            _wait_for(lambda: metrics.value("edgeslim_requests_in_flight") == 0)
            gone = _stalled_upload(url)  # a client that disconnects mid-upload
            _wait_for(lambda: metrics.value("edgeslim_requests_in_flight") == 1)
            gone.close()
            _wait_for(lambda: metrics.value("edgeslim_client_disconnects_total") == 1)
            assert client.post(url + "/v1/infer", content=tf.encode(_x()), headers=AUTH).status_code == 200
        finally:
            uvicorn_log.removeHandler(caplog.handler)
    assert metrics.value("edgeslim_errors_total", code="429") == 1
    assert metrics.value("edgeslim_errors_total", code="408") == 2
    assert metrics.value("edgeslim_requests_total", route="/v1/infer", code="499") == 1
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]


def test_nonfinite_inputs_are_refused_unless_allowed(whole_cnn):
    x = _x()
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    r = TestClient(create_app(whole_cnn)).post("/v1/infer", content=tf.encode(x))
    assert r.status_code == 422 and "1 NaN and 2 infinite" in r.json()["error"]
    allowed = TestClient(create_app(whole_cnn, ServeSettings(allow_nonfinite=True)))
    assert allowed.post("/v1/infer", content=tf.encode(x)).status_code == 200


def test_metrics_count_requests_by_route_and_code(whole_cnn):
    client = TestClient(create_app(whole_cnn, token=TOKEN))
    for seed in range(3):
        assert client.post("/v1/infer", content=tf.encode(_x(seed)), headers=AUTH).status_code == 200
    assert client.post("/v1/infer", content=b"junk", headers=AUTH).status_code == 400
    assert client.post("/v1/infer", content=b"junk").status_code == 401
    assert client.get("/nowhere", headers=AUTH).status_code == 404
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples}
    assert samples[("edgeslim_requests_total", (("code", "200"), ("route", "/v1/infer")))] == 3
    assert samples[("edgeslim_requests_total", (("code", "400"), ("route", "/v1/infer")))] == 1
    assert samples[("edgeslim_requests_total", (("code", "401"), ("route", "/v1/infer")))] == 1
    assert samples[("edgeslim_requests_total", (("code", "404"), ("route", "other")))] == 1  # no label per path
    assert samples[("edgeslim_errors_total", (("code", "401"),))] == 1
    assert samples[("edgeslim_request_duration_seconds_count", (("route", "/v1/infer"),))] == 5
    assert samples[("edgeslim_requests_in_flight", ())] == 0  # /metrics itself is not counted


def test_port_and_host_are_checked_before_listening(whole_cnn):
    for port in (0, 99999, -1):
        with pytest.raises(ConfigError, match=f"port={port}.*65535|port={port}.*greater than or equal to 1"):
            make_settings(BindSettings, port=port)
    with pytest.raises(ConfigError, match="max_batch"):
        make_settings(ServeSettings, max_batch=0)
    with pytest.raises(ConfigError, match="not an IP address"):
        resolve_host("no such host", 8000)
    with pytest.raises(ConfigError, match="not an IP address"):
        resolve_host("bad..host.invalid", 8000)
    taken = listening_socket("127.0.0.1", 0)
    taken.listen()  # another server on that port
    try:
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            listening_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_a_server_beyond_loopback_needs_a_token(whole_cnn):
    everywhere = BindSettings(host="0.0.0.0", port=8000)
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0.*--insecure-no-auth"):
        serve(whole_cnn, bind=everywhere)  # refused before the model loads or a port is taken
    assert any("without TLS" in w for w in check_exposure(everywhere, resolve_host("0.0.0.0", 8000), TOKEN))
    insecure = BindSettings(host="0.0.0.0", insecure_no_auth=True)
    assert any("without authentication" in w for w in check_exposure(insecure, resolve_host("0.0.0.0", 8000), None))
    assert check_exposure(BindSettings(host="localhost"), resolve_host("localhost", 8000), None) == []


def test_client_errors_are_edgeslim_errors():
    with pytest.raises(ConfigError, match="invalid server URL"):
        SplitClient("127.0.0.1:8000")  # no scheme
    with pytest.raises(ConfigError, match="invalid server URL"):
        SplitClient("http://")
    free = listening_socket("127.0.0.1", 0)
    port = free.getsockname()[1]
    free.close()  # nobody listens there now
    with SplitClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ServerError, match=f"cannot connect to http://127.0.0.1:{port}"):
            client.infer(np.zeros((1, 4), np.float32))
        with pytest.raises(ConfigError, match="an image needs a head model.*--head"):
            client.load_image("x.png")
