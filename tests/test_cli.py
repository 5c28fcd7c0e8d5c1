import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from edgeslim.cli import app

runner = CliRunner()


def test_models_lists_registry():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "seed-cnn" in r.output and "efficientnet-lite0" in r.output


def test_train_eval_export_run_bench(tmp_path):
    out = tmp_path / "m"
    r = runner.invoke(app, ["train", "--model", "lenet-300-100", "--dataset", "digits", "--epochs", "2",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(out), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert ev["params"] == 784 * 300 + 300 + 300 * 100 + 100 + 1010  # digits padded to 28x28
    assert {"accuracy", "params", "nonzero_params", "macs", "bytes"} <= set(ev)
    r = runner.invoke(app, ["export", str(out), "--format", "onnx", "--json"])
    assert r.exit_code == 0, r.output
    onnx_path = json.loads(r.output)["onnx"]
    img = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(img)
    r = runner.invoke(app, ["run", onnx_path, str(img), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["class_name"] in [str(i) for i in range(10)]
    r = runner.invoke(app, ["bench", onnx_path, onnx_path, "--batch", "2", "--rounds", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)) == 2


def test_export_optimize_flag(digits_checkpoint, tmp_path):
    folder, _ = digits_checkpoint
    r = runner.invoke(app, ["export", str(folder), "--out", str(tmp_path / "m.onnx"), "--optimize", "always"])
    assert r.exit_code == 0, r.output
    assert "folded max-pool into conv: /features/features.0/Conv" in r.output
    r = runner.invoke(app, ["export", str(folder), "--out", str(tmp_path / "m.onnx"), "--optimize", "fast"])
    assert r.exit_code != 0 and "optimize" in str(r.exception) and "always" in str(r.exception)
