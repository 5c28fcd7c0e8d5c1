"""Dynamic batching (the batcher alone, then through the whole-model app) and the whole-model
routes: each caller gets its own rows, requests really share ONNX Runtime runs, images are classified
as `edgeslim run` classifies them."""
from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import httpx
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image

from edgeslim.runtime import load_model
from edgeslim.serve import tensor_format as tf
from edgeslim.serve.app import create_app
from edgeslim.serve.batching import DynamicBatcher
from edgeslim.serve.config import ServeSettings

from .conftest import CLASS_NAMES


def _gather_through(batcher: DynamicBatcher, inputs: list[np.ndarray]) -> list:
    async def main():
        return await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)

    return asyncio.run(main())


def test_batcher_runs_concurrent_requests_together_and_returns_each_its_rows():
    sizes = []

    def double(x):
        sizes.append(len(x))
        return x * 2

    inputs = [np.full((1, 3), i, np.float32) for i in range(10)] + [np.full((2, 3), 10, np.float32)]
    out = _gather_through(DynamicBatcher(double, max_batch=4, max_wait_s=0.05), inputs)
    for x, y in zip(inputs, out):
        np.testing.assert_array_equal(y, x * 2)
    assert sizes == [4, 4, 4]  # 12 rows in full batches of 4, the 2-row request kept whole


def test_batcher_keeps_incompatible_requests_apart_and_reports_failures():
    shapes = []

    def run(x):
        shapes.append(x.shape)
        if x.shape[1] == 5:
            raise RuntimeError("bad inner shape")
        return x.sum(axis=1)

    inputs = [np.ones((1, 3), np.float32), np.ones((1, 5), np.float32), np.ones((1, 3), np.float32),
              np.ones((1, 3), np.int64)]
    out = _gather_through(DynamicBatcher(run, max_batch=8, max_wait_s=0.01), inputs)
    assert sorted(shapes) == [(1, 3), (1, 5), (2, 3)]  # the two float (1, 3) requests shared a run
    np.testing.assert_array_equal(out[0], [3.0])
    np.testing.assert_array_equal(out[2], [3.0])
    assert isinstance(out[1], RuntimeError) and out[3].dtype == np.int64


def test_app_batches_concurrent_requests_and_matches_batch_one(whole_cnn):
    app = create_app(whole_cnn, ServeSettings(max_batch=8, max_wait_ms=500))
    inputs = [np.random.default_rng(i).standard_normal((1, 1, 32, 32)).astype(np.float32) for i in range(6)]

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await asyncio.gather(*(client.post("/v1/infer", content=tf.encode(x)) for x in inputs))

    responses = asyncio.run(main())
    reference = load_model(whole_cnn, threads=1)
    for x, r in zip(inputs, responses):
        assert r.status_code == 200
        np.testing.assert_allclose(tf.decode(r.content), reference.predict(x), rtol=1e-4, atol=1e-5)
    metrics = app.state.metrics
    runs, rows = metrics.value("edgeslim_batch_size_count"), metrics.value("edgeslim_batch_size_sum")
    assert rows == 6 and runs < 6  # some requests shared an ONNX Runtime run
    assert app.state.model_server.requests == 6


def test_fixed_batch_axis_falls_back_to_batch_one_with_a_warning(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    app = create_app(path, ServeSettings(max_batch=8))
    server = app.state.model_server
    assert server.max_batch == 1 and "cannot be batched" in server.warnings[0]
    r = TestClient(app).post("/v1/infer", content=tf.encode(np.arange(4, dtype=np.float32)[None]))
    assert r.status_code == 200 and tf.decode(r.content).tolist() == [[0, 1, 2, 3]]


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_classify_an_uploaded_image_like_edgeslim_run(whole_cnn, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)  # any size/colour: converted
    (tmp_path / "x.png").write_bytes(_png(pixels))
    expected = load_model(whole_cnn, threads=1).classify_image(tmp_path / "x.png")
    client = TestClient(create_app(whole_cnn, ServeSettings(max_batch=4, max_wait_ms=1)))
    r = client.post("/v1/classify", content=_png(pixels), headers={"content-type": "image/png"})
    assert r.status_code == 200
    got = r.json()
    assert got["class_name"] == expected.class_name == CLASS_NAMES[expected.class_index]
    assert got["probability"] == pytest.approx(expected.probability, rel=1e-4)
    assert list(got["probabilities"]) == CLASS_NAMES and sum(got["probabilities"].values()) == pytest.approx(1.0)
    bad = client.post("/v1/classify", content=b"not an image")
    assert bad.status_code == 422 and "PNG or JPEG" in bad.json()["error"]
    gif = io.BytesIO()
    Image.fromarray(pixels).save(gif, format="GIF")
    assert client.post("/v1/classify", content=gif.getvalue()).status_code == 422  # formats are limited
    small = TestClient(create_app(whole_cnn, ServeSettings(max_image_pixels=100)))
    big = small.post("/v1/classify", content=_png(pixels))
    assert big.status_code == 422 and "30 x 40 pixels" in big.json()["error"]  # width x height


def test_classify_needs_preprocessing_metadata(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    path = tmp_path / "tail.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    r = TestClient(create_app(path)).post("/v1/classify", content=_png(np.zeros((8, 8), np.uint8)))
    assert r.status_code == 422 and "no preprocessing metadata" in r.json()["error"]


def test_the_server_never_imports_torch(whole_cnn):
    code = ("import sys, numpy as np\n"
            "from fastapi.testclient import TestClient\n"
            "import edgeslim.serve as s, edgeslim.serve.server, edgeslim.serve.guard, edgeslim.serve.metrics\n"
            "from edgeslim.serve import tensor_format as tf\n"
            f"app = s.create_app({str(whole_cnn)!r}, s.ServeSettings(max_batch=4), token='t' * 16)\n"
            "r = TestClient(app).post('/v1/infer', content=tf.encode(np.zeros((1, 1, 32, 32), np.float32)),\n"
            "                         headers={'authorization': 'Bearer ' + 't' * 16})\n"
            "assert r.status_code == 200, r.text\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
