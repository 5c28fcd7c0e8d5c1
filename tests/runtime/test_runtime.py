
import numpy as np
import pytest
from PIL import Image

from edgeslim.runtime import benchmark, load_model


def test_importing_runtime_never_imports_torch(digits_onnx, blank_image, torch_free):
    out = torch_free("import edgeslim.runtime as rt\n"
                     f"print(rt.load_model({str(digits_onnx)!r}).classify_image({str(blank_image)!r}).class_name)")
    assert out.strip() in [str(i) for i in range(10)]


def test_classify_matches_test_set_prediction(digits_onnx, digits, tmp_path):
    """A test image written to PNG and read back through the runtime's preprocessing is
    classified exactly as the in-memory tensor is."""
    runner = load_model(digits_onnx)
    pre = digits.preprocess
    agree = 0
    for i in range(20):
        x = digits.test.x[i:i + 1].numpy()
        pixels = (x[0, 0, 12:20, 12:20] * pre.std[0] + pre.mean[0]) * 255
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)).save(path)
        agree += runner.classify_image(path).class_index == int(runner.predict(x).argmax())
    assert agree == 20


def test_wrong_size_and_colour_are_converted(digits_onnx, tmp_path):
    img = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 60, 3), dtype=np.uint8)).save(img)
    p = load_model(digits_onnx).classify_image(img)
    assert 0 <= p.probability <= 1 and abs(p.probabilities.sum() - 1) < 1e-6


def test_unreadable_image_is_a_clear_error(digits_onnx, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        load_model(digits_onnx).classify_image(bad)
    with pytest.raises(ValueError, match="not found"):
        load_model(digits_onnx).classify_image(tmp_path / "missing.png")


def test_wrong_input_shape(digits_onnx):
    with pytest.raises(ValueError, match="input shape"):
        load_model(digits_onnx).predict(np.zeros((1, 1, 28, 28), np.float32))


def test_bench_measures_models_side_by_side(digits_onnx):
    res = benchmark([digits_onnx, digits_onnx], batch=4, threads=1, warmup=2, rounds=3, iters_per_round=2)
    assert len(res) == 2 and res[0]["speedup"] == 1.0
    for r in res:
        assert r["p50_ms"] > 0 and r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput_per_s"] > 0 and r["file_bytes"] > 0 and r["threads"] == 1
        assert r["session_init_ms"] > 0 and r["peak_rss_mb"] > 0
