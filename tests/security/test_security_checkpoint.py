"""Hostile checkpoint folders: code-running model.json, pickles, header bombs, mixed files,
and a writer killed at every commit point. Every input is built here."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeslim.cli import app
from edgeslim.errors import CheckpointError
from edgeslim.models import create, load_checkpoint, save_checkpoint, trusted_code
from edgeslim.models.checkpoint import COMMITTED, CRASH_ENV, PENDING, build_architecture

SRC = str(Path(__file__).resolve().parents[2] / "src")
META = {"input_shape": [1, 32, 32], "dataset": "digits", "class_names": [str(i) for i in range(10)]}


def _cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real command line in a fresh interpreter (as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "edgeslim.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": SRC, **(env or {})})


def _assert_clean_refusal(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, one line of error message on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and proc.stderr.lstrip().startswith("error:")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    text = " ".join(proc.stderr.split())
    for n in needles:
        assert n in text, text


@pytest.fixture
def hostile_folder(tmp_path):
    """Valid weights (a real seed-cnn) whose model.json names os:system with a shell command."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "ckpt"
    save_checkpoint(create("seed-cnn", width=0.25), folder, META)
    meta = json.loads((folder / "model.json").read_text())
    meta["architecture"] = {"name": "os:system", "kwargs": {"command": f"touch {marker}"}}
    (folder / "model.json").write_text(json.dumps(meta))
    return folder, marker


def test_code_running_model_json_is_refused_by_the_library(hostile_folder):
    folder, marker = hostile_folder
    with pytest.raises(CheckpointError, match=r"names the class 'os:system'.*trust_code=True"):
        load_checkpoint(folder)
    # even a caller who trusts code only gets nn.Module subclasses, never any callable
    for trust in (True, ["os:system"]):
        with pytest.raises(CheckpointError, match="not an nn.Module subclass"):
            load_checkpoint(folder, trust_code=trust)
    meta = json.loads((folder / "model.json").read_text())
    meta["architecture"] = {"name": "subprocess:Popen", "kwargs": {"args": ["touch", str(marker)]}}
    (folder / "model.json").write_text(json.dumps(meta))
    with trusted_code(True), pytest.raises(CheckpointError, match="not an nn.Module subclass"):
        load_checkpoint(folder)
    assert not marker.exists()


@pytest.mark.parametrize("command", [["eval", "--dataset", "digits"], ["export"]])
def test_code_running_model_json_is_refused_by_the_cli(hostile_folder, command):
    folder, marker = hostile_folder
    proc = _cli(command[0], str(folder), *command[1:])
    _assert_clean_refusal(proc, "'os:system'", "--trust-code", "--allow-class")
    proc = _cli("--trust-code", command[0], str(folder), *command[1:])
    _assert_clean_refusal(proc, "not an nn.Module subclass")
    assert not marker.exists()


def test_user_classes_need_an_explicit_opt_in(tmp_path):
    from edgeslim.models.zoo import LeNet5

    folder = tmp_path / "user"
    save_checkpoint(LeNet5(num_classes=3), folder, META)
    name = "edgeslim.models.zoo:LeNet5"
    with pytest.raises(CheckpointError, match="not a registered model"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="not a registered model"):
        load_checkpoint(folder, trust_code=["some.other:Net"])  # an allow-list names exact classes
    assert load_checkpoint(folder, trust_code=[name]).model.classifier[-1].out_features == 3
    with trusted_code([name]):  # what `edgeslim --allow-class` sets for the command it runs
        assert isinstance(load_checkpoint(folder).model, LeNet5)
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)  # the context ended
    runner = CliRunner()
    out = tmp_path / "user.eslim"
    r = runner.invoke(app, ["pack", str(folder), "--out", str(out)])
    assert r.exit_code != 0 and isinstance(r.exception, CheckpointError)
    for opt_in in (["--allow-class", name], ["--trust-code"]):
        r = runner.invoke(app, [*opt_in, "pack", str(folder), "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
    assert out.exists()


def test_model_arguments_must_be_plain_json():
    with pytest.raises(CheckpointError, match="plain JSON"):
        build_architecture({"name": "seed-cnn", "kwargs": {"width": object()}})
    with pytest.raises(CheckpointError, match="unknown model"):
        build_architecture({"name": "no-such-model", "kwargs": {}})
    with pytest.raises(CheckpointError, match="does not take"):
        build_architecture({"name": "seed-cnn", "kwargs": {"evil": 1}})
    with pytest.raises(CheckpointError, match="must be an object"):
        build_architecture(["os:system"])


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickles_never_run(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "ckpt"
    save_checkpoint(create("seed-cnn", width=0.25), folder, META)
    good_meta = json.loads((folder / "model.json").read_text())
    # a torch.save pickle renamed weights.safetensors, with and without the recorded digest
    torch.save({"x": _Payload(marker)}, folder / "weights.safetensors")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(folder)
    (folder / "model.json").write_text(json.dumps({k: v for k, v in good_meta.items() if k != "weights_sha256"}))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(folder)
    # a pickle as model.json
    save_checkpoint(create("seed-cnn", width=0.25), folder, META)
    (folder / "model.json").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="not a JSON document"):
        load_checkpoint(folder)
    (folder / "model.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_safetensors_header_bomb_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(create("seed-cnn", width=0.25), folder, META)
    meta = json.loads((folder / "model.json").read_text())
    del meta["weights_sha256"]  # reach the parser
    (folder / "model.json").write_text(json.dumps(meta))
    for claimed in (2**62, 2**31, 10**8):
        (folder / "weights.safetensors").write_bytes(struct.pack("<Q", claimed) + b'{"a":' + b" " * 64)
        with pytest.raises(CheckpointError, match="not a valid safetensors"):
            load_checkpoint(folder)


def test_a_model_json_bigger_than_the_limit_is_refused(tmp_path, monkeypatch):
    import edgeslim.models.checkpoint as ck

    folder = tmp_path / "ckpt"
    save_checkpoint(create("seed-cnn", width=0.25), folder, META)
    monkeypatch.setattr(ck, "MAX_META_BYTES", 100)
    with pytest.raises(CheckpointError, match="more than the 100"):
        load_checkpoint(folder)


def test_files_of_two_checkpoints_are_not_mixed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_checkpoint(create("seed-cnn", width=0.25), a, {**META, "metrics": {"accuracy": 0.1}})
    save_checkpoint(create("seed-cnn", width=0.25), b, {**META, "metrics": {"accuracy": 0.9}})
    shutil.copyfile(b / "weights.safetensors", a / "weights.safetensors")
    with pytest.raises(CheckpointError, match="does not match the sha256 recorded in model.json"):
        load_checkpoint(a)


def test_directories_and_missing_paths_are_refused(tmp_path):
    (tmp_path / "c" / "weights.safetensors").mkdir(parents=True)
    (tmp_path / "c" / "model.json").mkdir()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path / "nowhere")


def _state(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "weights.safetensors").read_bytes(), (folder / "model.json").read_bytes()


# Each named step of save_checkpoint, in order; the first two come before the commit point.
CRASH_POINTS = ["weights-staged", "staged", "committed", "moved-weights.safetensors", "moved-model.json"]


def test_train_killed_at_every_commit_point_leaves_old_or_new(tmp_path):
    """`edgeslim train --out EXISTING` killed (os._exit, no cleanup) at each step of the write:
    the folder then loads as exactly the old checkpoint (crash before the commit point) or as
    the new one (after it), never a mix, and the next load leaves no hidden files behind."""
    old = tmp_path / "old"
    save_checkpoint(create("seed-cnn", width=0.25), old, {**META, "metrics": {"accuracy": 0.0}, "tag": "old"})
    (old / "notes.txt").write_text("kept")  # files beside a checkpoint survive a save
    old_state = _state(old)
    for i, point in enumerate(CRASH_POINTS):
        folder = tmp_path / f"run-{point}"
        shutil.copytree(old, folder)
        proc = _cli("train", "--model", "seed-cnn", "--dataset", "digits", "--epochs", "1", "--seed", str(i),
                    "--out", str(folder), env={CRASH_ENV: point})
        assert proc.returncode == 75, (point, proc.stderr[-2000:])  # it died at that step
        assert (folder / PENDING).exists() or (folder / COMMITTED).exists() or point == "moved-model.json"
        ckpt = load_checkpoint(folder)
        if CRASH_POINTS.index(point) < CRASH_POINTS.index("committed"):
            assert _state(folder) == old_state and ckpt.meta["tag"] == "old", point
        else:
            assert _state(folder) != old_state and "tag" not in ckpt.meta, point
            assert ckpt.meta["dataset"] == "digits" and ckpt.meta["train_config"]["seed"] == i
        assert sorted(p.name for p in folder.iterdir()) == ["model.json", "notes.txt", "weights.safetensors"]
