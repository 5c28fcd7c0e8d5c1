"""CLI: distill, keygen, pack --sign, verify --key, and bench/run accepting .eslim files."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from edgeslim.cli import app

runner = CliRunner()


def test_keygen_pack_verify_bench(digits_checkpoint, tmp_path):
    folder, _ = digits_checkpoint
    key = tmp_path / "key"
    r = runner.invoke(app, ["keygen", "--out", str(key)])
    assert r.exit_code == 0 and key.exists() and (tmp_path / "key.pub").exists()
    r = runner.invoke(app, ["keygen", "--out", str(key)])  # the message names the CLI flag
    assert r.exit_code != 0 and "`edgeslim keygen --overwrite`" in str(r.exception)
    assert runner.invoke(app, ["keygen", "--out", str(key), "--overwrite"]).exit_code == 0
    out = tmp_path / "m.eslim"
    r = runner.invoke(app, ["pack", str(folder), "--out", str(out), "--sign", str(key), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["signed"] is True
    r = runner.invoke(app, ["verify", str(out), "--key", str(tmp_path / "key.pub")])
    assert r.exit_code == 0 and "signature verified" in r.output
    r = runner.invoke(app, ["bench", str(out), "--rounds", "1", "--warmup", "0", "--verify",
                            str(tmp_path / "key.pub"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["file_bytes"] == out.stat().st_size
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 1
    out.write_bytes(bytes(data))
    r = runner.invoke(app, ["verify", str(out)])
    assert r.exit_code != 0 and "corrupt" in str(r.exception)


def test_distill_command_writes_a_student(digits_checkpoint, tmp_path):
    folder, _ = digits_checkpoint
    out = tmp_path / "student"
    r = runner.invoke(app, ["distill", "--teacher", str(folder), "--width", "0.5", "--epochs", "1",
                            "--temperature", "3", "--alpha", "0.8", "--dataset", "digits", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "student test accuracy" in r.output and (out / "weights.safetensors").exists()
    meta = json.loads((out / "model.json").read_text())
    finetune = meta["distill"]["finetune"]  # the Distill config as recorded
    assert finetune["temperature"] == 3 and finetune["alpha"] == 0.8 and finetune["epochs"] == 1
