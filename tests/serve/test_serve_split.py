"""The tail server (FastAPI TestClient for validation) and a real loopback split run
(uvicorn in a thread on an ephemeral 127.0.0.1 port, network emulated in the transport)."""
import time

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from edgeslim.edge import analyze, split_model
from edgeslim.serve import tensor_format as tf
from edgeslim.serve.app import create_app
from edgeslim.serve.client import ServerError, SplitClient
from edgeslim.serve.config import ServeSettings
from edgeslim.serve.netem import EmulatedNetworkTransport, Link, TokenBucket
from edgeslim.serve.server import serve_in_thread

CUT = "/features/features.5/MaxPool_output_0"


@pytest.fixture(scope="module")
def split_cnn(tmp_path_factory):
    import torch

    from edgeslim.export import export_onnx
    from edgeslim.models import create

    folder = tmp_path_factory.mktemp("split")
    torch.manual_seed(0)
    path = export_onnx(create("seed-cnn"), folder / "m.onnx", (1, 32, 32), {})
    split_model(path, CUT, folder)
    info = analyze(path)
    return folder, ort.InferenceSession(info.model.SerializeToString(), providers=["CPUExecutionProvider"])


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 1, 32, 32)).astype(np.float32)


def test_server_validates_and_keeps_serving(split_cnn):
    folder, _ = split_cnn
    head = ort.InferenceSession(str(folder / "head.onnx"), providers=["CPUExecutionProvider"])
    cut = head.run(None, {"input": _x()})[0]
    good = tf.encode(cut)
    client = TestClient(create_app(folder / "tail.onnx"))
    bad = {
        "wrong length": (good[:-3], 400, "needs"),
        "bad dtype": (good[:5] + bytes([99]) + good[6:], 400, "dtype code"),
        "bad magic": (b"XXXX" + good[4:], 400, "magic"),
        "huge shape": (tf.encode(np.zeros(1, np.float32))[:8] + np.array([2**31], "<u4").tobytes(), 413,
                       "elements"),
        "wrong shape": (tf.encode(cut[:, :, :4]), 422, "shape"),
        "wrong dtype": (tf.encode(cut.astype(np.float64)), 422, "dtype"),
        "empty": (b"", 400, "shorter"),
    }
    for name, (payload, status, match) in bad.items():
        r = client.post("/v1/infer", content=payload)
        assert r.status_code == status, name
        assert match in r.json()["error"], (name, r.json())
        ok = client.post("/v1/infer", content=good)  # the server still answers correctly
        assert ok.status_code == 200 and tf.decode(ok.content).shape == (1, 10)
    assert client.get("/health").json()["requests"] == len(bad)  # only the good ones reached the model
    big = TestClient(create_app(folder / "tail.onnx", ServeSettings(max_body_bytes=100))).post("/v1/infer", content=good)
    assert big.status_code == 413


def test_loopback_split_run_matches_whole_model(split_cnn):
    folder, whole = split_cnn
    with serve_in_thread(create_app(folder / "tail.onnx"), max_requests=20) as url:
        with SplitClient(url, folder / "head.onnx") as client:
            for seed in range(3):
                r = client.infer(_x(seed))
                np.testing.assert_allclose(r.output, whole.run(None, {"input": _x(seed)})[0], rtol=1e-5, atol=1e-5)
            assert r.uplink_bytes == tf.header_size(4) + 32 * 8 * 8 * 4
        link = Link(uplink_mbps=8.0, downlink_mbps=50.0, rtt_ms=20.0)
        with SplitClient(url, folder / "head.onnx", link=link, quantize=True) as client:
            r = client.infer(_x())
        expected_ms = link.rtt_ms + r.uplink_bytes * 8 / 8e6 * 1e3
        assert r.request_ms >= 0.95 * expected_ms
        assert r.uplink_bytes < 32 * 8 * 8 * 4  # uint8 payload + headers < float32 payload
        assert np.argmax(r.output) == np.argmax(whole.run(None, {"input": _x()})[0])
        with SplitClient(url, None) as offload:  # full offload to a tail server: shape refused, 422
            with pytest.raises(ServerError, match="422"):
                offload.infer(_x())


def test_token_bucket_rate_and_loopback_only():
    bucket = TokenBucket(rate_bytes_per_s=1e6)
    t0 = time.perf_counter()
    bucket.consume(50_000)
    assert 0.045 <= time.perf_counter() - t0 < 0.5
    import httpx

    client = httpx.Client(transport=EmulatedNetworkTransport(Link(1, 1, 0)))
    with pytest.raises(httpx.ConnectError, match="loopback-only"):
        client.get("http://example.com/")
