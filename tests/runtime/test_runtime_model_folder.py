"""A checkpoint folder is accepted wherever a model file is expected: its exported model, or
one line saying to export it (not ONNX Runtime's traceback)."""
import json
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

from edgeslim.cli import main
from edgeslim.errors import ArtifactError
from edgeslim.runtime import benchmark, load_model
from edgeslim.runtime.onnx_file import model_file


@pytest.fixture
def folders(tmp_path, digits_checkpoint, digits_onnx):
    """An exported checkpoint folder (with model.onnx) and one never exported."""
    ckpt, _ = digits_checkpoint
    exported, bare = tmp_path / "exported", tmp_path / "bare"
    for folder in (exported, bare):
        folder.mkdir()
        for f in ("model.json", "weights.safetensors"):
            shutil.copy(ckpt / f, folder / f)
    shutil.copy(digits_onnx, exported / "model.onnx")
    return exported, bare


def test_model_file_picks_the_folders_export(tmp_path):
    assert model_file(tmp_path / "m.onnx") == tmp_path / "m.onnx"  # a file (even a missing one) is itself
    (tmp_path / "model.eslim").write_bytes(b"x")
    assert model_file(tmp_path) == tmp_path / "model.eslim"
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert model_file(tmp_path) == tmp_path / "model.onnx"
    assert model_file(tmp_path, (".eslim", ".onnx")) == tmp_path / "model.eslim"
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"no exported model in it \(model.onnx\); .*run `edgeslim export"):
        model_file(tmp_path, (".onnx",))


def test_library_runs_and_benchmarks_a_folder(folders):
    exported, bare = folders
    assert load_model(exported).path == exported / "model.onnx"
    (res,) = benchmark([exported], rounds=1, warmup=0)
    assert res["model"] == str(exported / "model.onnx")
    assert res["file_bytes"] == (exported / "model.onnx").stat().st_size  # the file's, not the folder's
    with pytest.raises(ArtifactError, match="edgeslim export"):
        load_model(bare)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_model_command_takes_a_folder(folders, tmp_path, capsys):
    exported, bare = folders
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    commands = [["run", "{m}", img, "--json"], ["bench", "{m}", "--rounds", "1", "--warmup", "0", "--json"],
                ["layers", "{m}", "--runs", "1", "--json"], ["plan", "{m}", "--json"],
                ["split", "{m}", "--at", "/features/features.2/MaxPool_output_0", "--out", tmp_path / "split"],
                ["serve", "{m}", "--port", free_port(), "--max-requests", "0"]]
    for args in commands:
        for folder in (bare, exported):
            with pytest.raises(SystemExit) as e:
                main([str(folder) if a == "{m}" else str(a) for a in args])
            out, err = capsys.readouterr()
            if folder is bare:
                assert e.value.code == 2 and err.count("\n") == 1, (args, err)
                assert f"run `edgeslim export {bare}` first" in err
            else:
                assert e.value.code == 0, (args, err)
    assert (exported / "model.plan.png").exists()  # a folder's default plot goes inside it
    assert (tmp_path / "split" / "head.onnx").exists()
