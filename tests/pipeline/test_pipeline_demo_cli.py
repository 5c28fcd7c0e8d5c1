"""`edgeslim demo` end to end on a tiny Fashion-MNIST (the first 600 / 200 images of the real
files) with a one-stage recipe: the command's wiring, its table and its report files."""
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import edgeslim.pipeline.demo as demo
from edgeslim.cli import app
from edgeslim.data.datasets import find_fashion_mnist
from edgeslim.data.idx import read_idx

runner = CliRunner()
FILES = {"train-images-idx3-ubyte": 600, "train-labels-idx1-ubyte": 600, "t10k-images-idx3-ubyte": 200,
         "t10k-labels-idx1-ubyte": 200}


@pytest.fixture
def tiny_fashion_mnist(tmp_path) -> Path:
    src = find_fashion_mnist()
    if src is None:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "tiny-fashion-mnist"
    out.mkdir()
    for stem, n in FILES.items():
        a = read_idx(next(src.glob(stem + "*")))[:n].astype(np.uint8)
        header = bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
        with gzip.open(out / f"{stem}.gz", "wb") as f:
            f.write(header + a.tobytes())
    return out


def test_demo_trains_compresses_and_compares(tiny_fashion_mnist, tmp_path, monkeypatch):
    # the demo's own recipe measures latency layouts (minutes on a loaded 2-core machine); one
    # unstructured prune without fine-tuning exercises the same path
    monkeypatch.setattr(demo, "demo_recipe", lambda *a: {
        "name": "tiny", "max_accuracy_drop": 100, "bench": {"rounds": 2, "warmup": 1},
        "stages": [{"type": "prune", "sparsity": 0.5, "finetune": {"epochs": 0}}]})
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "1", "--data-dir", str(tiny_fashion_mnist),
                            "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "baseline vs compressed (ONNX Runtime)" in r.output and "[5/5] benchmarking" in r.output
    assert "baseline float32" in r.output and "smaller file; report:" in r.output
    report = json.loads((out / "report.json").read_text())
    assert [row["model"] for row in report["rows"]] == ["baseline float32", "pruned float32"]
    assert (out / "report.md").exists() and (out / "baseline.onnx").exists() and (out / "compressed.onnx").exists()
