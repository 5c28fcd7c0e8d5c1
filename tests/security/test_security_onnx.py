"""Hostile .onnx inputs for every place that opens one (runtime, split planning, serving):
directories, empty / garbage / truncated files, other protobufs, external-data references
that escape the model's folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeslim.edge import analyze, split_model
from edgeslim.errors import ArtifactError
from edgeslim.runtime import load_model
from edgeslim.runtime.onnx_file import load_onnx
from edgeslim.serve.app import ModelServer
from edgeslim.serve.config import ServeSettings

SRC = str(Path(__file__).resolve().parents[2] / "src")
OPENERS = {"load_model": load_model, "analyze": analyze, "serve": lambda path: ModelServer(path, ServeSettings()), "load_onnx": load_onnx}


def _add_model(location: str | None = None) -> onnx.ModelProto:
    """y = x + w, with w (4 floats) inline or as external data at ``location``."""
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    if location is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = k, v
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "add",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _bad_files(tmp_path: Path, digits_onnx: Path) -> dict[str, tuple[Path, str]]:
    good = digits_onnx.read_bytes()
    files = {"empty": (b"", "is empty"), "garbage": (b"\x00\xffnot an onnx model at all" * 40, "not an ONNX model"),
             "truncated": (good[:len(good) // 2], "not an ONNX model"),
             "header only": (good[:64], "not an ONNX model"),
             "other protobuf": (numpy_helper.from_array(np.ones(8, np.float32), "t").SerializeToString(),
                                "not an ONNX model")}
    out = {}
    for name, (data, expect) in files.items():
        path = tmp_path / f"{name.replace(' ', '-')}.onnx"
        path.write_bytes(data)
        out[name] = (path, expect)
    (tmp_path / "folder.onnx").mkdir()
    out["directory"] = (tmp_path / "folder.onnx", "is a directory")
    return out


@pytest.mark.parametrize("opener", list(OPENERS))
def test_non_models_are_refused_with_one_clear_error(opener, tmp_path, digits_onnx):
    for what, (path, expect) in _bad_files(tmp_path, digits_onnx).items():
        with pytest.raises(ArtifactError, match=expect) as e:
            OPENERS[opener](path)
        assert "\n" not in str(e.value) and str(path) in str(e.value), what


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.bin", "link.bin"])
def test_external_data_outside_the_models_folder_is_refused(location, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (folder / "link.bin").symlink_to(tmp_path / "outside.bin")  # a link that leaves the folder
    path = folder / "m.onnx"
    path.write_bytes(_add_model(location).SerializeToString())
    for name, open_ in OPENERS.items():
        with pytest.raises(ArtifactError, match="outside the model's folder"):
            open_(path)
    with pytest.raises(ArtifactError, match="outside the model's folder"):
        split_model(path, "y", tmp_path / "split")


def test_external_data_beside_the_model_loads(tmp_path):
    path = tmp_path / "m.onnx"
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    path.write_bytes(_add_model("w.bin").SerializeToString())
    y = load_model(path).session.run(None, {"x": np.ones((1, 4), np.float32)})[0]
    assert np.array_equal(y, [[1, 2, 3, 4]])
    assert np.array_equal(numpy_helper.to_array(load_onnx(path).graph.initializer[0]), [0, 1, 2, 3])
    (tmp_path / "w.bin").unlink()
    with pytest.raises(ArtifactError, match="not a file beside the model"):
        load_model(path)


def test_command_line_refuses_bad_onnx_without_a_traceback(tmp_path, digits_onnx):
    bad = _bad_files(tmp_path, digits_onnx)
    escaping = tmp_path / "escaping.onnx"
    escaping.write_bytes(_add_model("../../etc/passwd").SerializeToString())
    for args in (["run", str(bad["garbage"][0]), str(tmp_path / "x.png")], ["layers", str(bad["truncated"][0])],
                 ["split", str(bad["directory"][0]), "--at", "y", "--out", str(tmp_path / "s")],
                 ["layers", str(escaping)]):
        proc = subprocess.run([sys.executable, "-m", "edgeslim.cli", *args], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": SRC})
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert "refusing to load it" in proc.stderr, proc.stderr
