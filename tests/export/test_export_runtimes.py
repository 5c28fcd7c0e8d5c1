"""Exports to OpenVINO IR, LiteRT .tflite and ExecuTorch .pte: parity with PyTorch, metadata that
travels, int8, refusals, and the one-line message when a format's extra is missing."""
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeslim.cli import app, main
from edgeslim.errors import ArtifactError, ConfigError, MissingExtraError
from edgeslim.export import Export, export
from edgeslim.runtime import load_model
from edgeslim.runtime.formats import require, sidecar_path

FORMATS = ["onnx", "openvino", "tflite", "executorch"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_float_export_matches_pytorch_and_carries_metadata(exported, digits_checkpoint, fmt):
    r = exported(fmt)
    _, ckpt = digits_checkpoint
    assert r["format"] == fmt and r["parity_inputs"] == "digits test images" and r["samples"] == 256
    assert r["max_abs_diff"] < 1e-4 and r["top1_agreement"] == 1.0
    runner = load_model(r["path"])
    assert runner.class_names == ckpt.class_names
    assert runner.input_shape == tuple(ckpt.input_shape)
    assert runner.preprocess == type(runner.preprocess).from_dict(ckpt.meta["preprocess"])
    assert runner.metadata["dataset"] == ckpt.meta["dataset"]


@pytest.mark.parametrize("fmt", ["tflite", "executorch"])
def test_formats_without_a_metadata_field_write_a_json_sidecar(exported, fmt):
    path = exported(fmt)["path"]
    assert json.loads(sidecar_path(path).read_text())["class_names"]


def test_openvino_keeps_the_metadata_inside_the_ir(exported):
    from pathlib import Path

    xml = Path(exported("openvino")["path"])
    assert xml.with_suffix(".bin").is_file() and not sidecar_path(xml).exists()
    assert exported("openvino")["bytes"] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert b"class_names" in xml.read_bytes()


@pytest.mark.parametrize("fmt", ["openvino", "tflite", "executorch"])
def test_int8_export_is_smaller_and_agrees(digits_checkpoint, exported, tmp_path, fmt):
    float_report = exported(fmt)
    folder, _ = digits_checkpoint
    suffix = {"openvino": ".xml", "tflite": ".tflite", "executorch": ".pte"}[fmt]
    r = export(folder, Export(format=fmt, int8=True), out=tmp_path / f"q{suffix}").summary
    assert r["int8"] and r["top1_agreement"] >= 0.95
    assert r["bytes"] < 0.5 * float_report["bytes"]
    # ai-edge-quantizer (tflite int8) runs in a child process: its absl logging never enters this one
    assert "ai_edge_quantizer" not in sys.modules


def test_openvino_converts_our_int8_qdq_onnx(digits_checkpoint, exported, tmp_path):
    exported("openvino")
    folder, _ = digits_checkpoint
    q = export(folder, Export(int8=True), out=tmp_path / "q.onnx").summary
    r = export(tmp_path / "q.onnx", Export(format="openvino"), out=tmp_path / "q.xml").summary
    assert r["int8"] and r["parity_reference"] == "onnxruntime on q.onnx"
    # with 7-bit weights where this CPU's int8 kernels saturate (reduce_range auto), both runtimes compute
    # the QDQ graph exactly; with full-range weights on an AVX2 CPU they differed on 2.3% of the digits
    assert r["top1_agreement"] >= 0.99, "OpenVINO runs the QDQ graph as ONNX Runtime does"
    assert q["bytes"] < 0.5 * exported("onnx")["bytes"]


def test_parity_failure_refuses_and_removes_the_files(digits_checkpoint, exported, tmp_path, monkeypatch):
    exported("openvino")
    import edgeslim.export.api as api

    monkeypatch.setattr(api, "FLOAT_TOLERANCE", 0.0)
    with pytest.raises(ArtifactError, match="parity check failed"):
        export(digits_checkpoint[0], Export(format="openvino"), out=tmp_path / "m.xml")
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_is_one_line_naming_the_install_command(digits_checkpoint, tmp_path, monkeypatch, capsys):
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeslim\[openvino\]'"):
        require("edgeslim_no_such_module", "openvino", "--format openvino")
    import edgeslim.export.tflite_export as tfl

    monkeypatch.setattr(tfl, "litert_python", lambda: None)
    with pytest.raises(SystemExit) as e:
        main(["export", str(digits_checkpoint[0]), "--format", "tflite", "--out", str(tmp_path / "m.tflite")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code != 0 and len(err) == 1 and err[0].startswith("error: ")
    assert "pip install 'edgeslim[litert]'" in err[0] and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(tfl, "quantizer_python", lambda: None)
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeslim\[litert-quantize\]'"):
        tfl.quantize_tflite(b"", np.zeros((1, 1, 32, 32), np.float32))


def test_bad_format_and_suffix_are_refused(digits_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="format: .*'onnx', 'openvino', 'tflite', 'executorch' or 'best'"):
        export(digits_checkpoint[0], Export(format="coreml"), out=tmp_path / "m.x")
    with pytest.raises(ConfigError, match=r"must end in \.pte"):
        export(digits_checkpoint[0], Export(format="executorch"), out=tmp_path / "m.onnx")


def test_export_best_keeps_the_fastest_that_agrees(digits_checkpoint, exported, format_missing, tmp_path):
    exported("openvino")  # at least one format beside ONNX
    r = CliRunner().invoke(app, ["export", str(digits_checkpoint[0]), "--format", "best",
                                 "--out", str(tmp_path / "best"), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    bench = {b["runtime"]: b for b in report["benchmark"]}
    assert report["format"] in FORMATS and "fastest that agrees" in report["reason"]
    winner = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert", "executorch": "executorch"}
    assert bench[winner[report["format"]]]["p50_ms"] == min(b["p50_ms"] for b in bench.values()
                                                            if b["top1_agreement"] >= 0.99)
    assert load_model(report["path"]).predict(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 10)
    assert sorted(p.name for p in tmp_path.iterdir())[0].startswith("best.")
    for fmt in FORMATS:
        assert ("skipped" in report["candidates"][fmt]) == bool(format_missing(fmt))
