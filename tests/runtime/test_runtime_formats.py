"""Every format behind one Runner: names, batches, torch-free loading, bench across runtimes,
eval and serve on exported files."""
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeslim.cli import app
from edgeslim.errors import ArtifactError
from edgeslim.runtime import benchmark, load_model
from edgeslim.runtime.formats import sidecar_path

FORMATS = ["onnx", "openvino", "tflite", "executorch"]
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert", "executorch": "executorch"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_runner_interface_by_name_and_any_batch(exported, digits, fmt):
    runner = load_model(exported(fmt)["path"])
    onnx = load_model(exported("onnx")["path"])
    assert runner.format == RUNTIMES[fmt]
    assert [i.shape for i in runner.inputs] == [(None, 1, 32, 32)] and runner.inputs[0].dtype == "float32"
    assert runner.outputs[0].shape[0] is None
    for rows in (1, 3, 70):  # 70: past ExecuTorch's planned batch, LiteRT's fixed batch of 1
        x = digits.test.x[:rows].numpy()
        out = runner.run({runner.input_name: x})
        assert set(out) == {o.name for o in runner.outputs}
        np.testing.assert_allclose(out[runner.outputs[0].name], onnx.predict(x), atol=1e-4)


@pytest.mark.parametrize("fmt", ["openvino", "tflite"])
def test_openvino_and_litert_run_without_torch(exported, blank_image, torch_free, fmt):
    out = torch_free("import edgeslim.runtime as rt\n"
                     f"print(rt.load_model({exported(fmt)['path']!r}).classify_image({str(blank_image)!r}).class_name)")
    assert out.strip().splitlines()[-1] in [str(i) for i in range(10)]


def test_runtime_package_imports_no_format_module_until_a_file_needs_it():
    code = ("import sys, edgeslim.runtime\n"
            "bad = [m for m in ('torch', 'executorch', 'openvino', 'ai_edge_litert') if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_bench_runs_every_format_on_the_same_inputs(exported, format_missing, tmp_path):
    paths = [exported("onnx")["path"]] + [exported_path for f in FORMATS[1:]
                                          if not format_missing(f) for exported_path in [exported(f)["path"]]]
    if len(paths) == 1:
        pytest.skip("no format beside ONNX is installed")
    chart = tmp_path / "bench.png"
    r = CliRunner().invoke(app, ["bench", *paths, "--batch", "2", "--threads", "1", "--rounds", "2", "--warmup", "1",
                                 "--chart", str(chart), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)  # stderr has the native runtimes' own log lines
    assert [x["model"] for x in res] == paths and res[0]["speedup"] == 1.0
    for x in res:
        assert x["p50_ms"] <= x["p90_ms"] <= x["p99_ms"] and x["session_init_ms"] > 0 and x["peak_rss_mb"] > 0
        assert x["max_abs_diff"] < 1e-4 and x["top1_agreement"] == 1.0 and x["agreement_samples"] == 64
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_refuses_models_with_different_inputs(exported, digits_onnx, tmp_path):
    from edgeslim.export import export_onnx
    from edgeslim.models.registry import create

    other = export_onnx(create("seed-cnn", input_size=16), tmp_path / "small.onnx", (1, 16, 16))
    with pytest.raises(ArtifactError, match="differs"):
        benchmark([digits_onnx, other], rounds=1, warmup=0)


@pytest.mark.parametrize("fmt", ["openvino", "tflite", "executorch"])
def test_eval_on_an_exported_file(exported, fmt):
    r = CliRunner().invoke(app, ["eval", exported(fmt)["path"], "--json", "--limit", "100"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    ref = json.loads(CliRunner().invoke(app, ["eval", exported("onnx")["path"], "--json", "--limit", "100"]).stdout)
    assert got["evaluated_with"] == RUNTIMES[fmt] and got["accuracy"] == ref["accuracy"]


@pytest.mark.parametrize("fmt", ["openvino", "tflite"])
def test_serve_accepts_every_format(exported, digits, fmt):
    from fastapi.testclient import TestClient

    from edgeslim.serve import tensor_format as tf
    from edgeslim.serve.app import create_app
    from edgeslim.serve.config import ServeSettings

    app = create_app(exported(fmt)["path"], ServeSettings(max_batch=4))
    assert app.state.model_server.max_batch == 4, "the batch axis is dynamic in every format"
    x = digits.test.x[:2].numpy()
    r = TestClient(app).post("/v1/infer", content=tf.encode(x))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(tf.decode(r.content), load_model(exported("onnx")["path"]).predict(x), atol=1e-4)


def test_a_broken_sidecar_is_refused_in_one_line(exported, tmp_path):
    import shutil

    path = tmp_path / "m.tflite"
    shutil.copy(exported("tflite")["path"], path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_model(path)
    path.write_bytes(b"garbage")
    sidecar_path(path).unlink()
    with pytest.raises(ArtifactError, match="LiteRT cannot load"):
        load_model(path)
