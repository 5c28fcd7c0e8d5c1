"""Every bad input gives one line on stderr (``error: ...``, no traceback) and exit code 2;
nothing is left half-written (disk full, kill -9). The CLI runs through its real ``main()``
boundary: in-process (``main(argv)``) or, where memory or a crash is measured, in a subprocess."""
from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeslim
from edgeslim.cli import error_line, main

SRC = str(Path(edgeslim.__file__).resolve().parents[1])
TINY_RECIPE = ("name: tiny\nmax_accuracy_drop: 100\nbench: {rounds: 2, warmup: 1}\n"
               "stages:\n  - {type: prune, sparsity: 0.5, finetune: {epochs: 1}}\n  - {type: export}\n")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def refused(capsys, *args: str) -> str:
    code, _, err = cli(capsys, *args)
    assert code == 2, err
    return one_line(err)


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """A current folder that must stay empty: a refused command writes nothing anywhere."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert list(cwd.iterdir()) == []


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# ---- options accepted but wrong: refused before any work ----

@pytest.mark.parametrize("args, expected", [
    (["train", "--lr", "-1", "--dataset", "digits", "--out", "{t}/m"], "invalid TrainConfig config: lr: must be > 0"),
    (["train", "--epochs", "x", "--out", "{t}/m"], "'--epochs'"),
    (["eval", "{t}/nothing", "--limit", "-5"], "'--limit'"),
    (["run", "{t}/m.onnx", "{t}/x.png", "--threads", "-1"], "'--threads'"),
    (["bench", "{t}/m.onnx", "--threads", "-1"], "'--threads'"),
    (["demo", "--threads", "0", "--out", "{t}/d"], "'--threads'"),
    (["quantize", "{t}/m", "--threads", "-1", "--out", "{t}/q"], "'--threads'"),
    (["calibrate", "--threads", "0"], "'--threads'"),
    (["calibrate", "--cpus", "99"], "--cpus 99: CPU(s) 99 not available"),
    (["calibrate", "--cpus", "0,x"], "comma-separated list of CPU numbers"),
    (["layers", "{t}/m.onnx", "--cpus", "4096"], "CPU(s) 4096 not available"),
    (["serve-tail", "{t}/m.onnx", "--cpus", "99"], "CPU(s) 99 not available"),
    (["split-infer", "http://127.0.0.1:9/v1/infer", "--cpus", "99"], "CPU(s) 99 not available"),
    (["no-such-command"], "No such command"),
])
def test_bad_options_are_one_line_exit_2(capsys, tmp_path, empty_cwd, args, expected):
    line = refused(capsys, *[a.format(t=tmp_path) for a in args])
    assert expected in line
    assert not (tmp_path / "m").exists() and not (tmp_path / "d").exists()


def test_missing_checkpoint_and_model_files_are_one_line(capsys, tmp_path, empty_cwd):
    assert "not a checkpoint folder" in refused(capsys, "eval", tmp_path / "nope")
    assert "not found" in refused(capsys, "split", tmp_path / "nope.onnx", "--at", "x", "--out", tmp_path / "s")
    assert not (tmp_path / "s").exists()


# ---- YAML files: recipes, device/network profiles, search configs ----

BAD_YAML = {
    "not-utf8": (b"stages:\n  - {type: export}  # caf\xe9\n", "is not UTF-8 text"),
    "a-list": ("- type: export\n", "must be a mapping"),
    "python-tag": ('x: !!python/object/apply:os.system ["touch pwned"]\n', "YAML tag that is not allowed"),
    "syntax": ("stages: [\n", "is not valid YAML at line"),
}


@pytest.mark.parametrize("kind", list(BAD_YAML))
@pytest.mark.parametrize("command", ["compress", "profiles", "search"])
def test_bad_yaml_files_are_named_in_one_line(capsys, tmp_path, empty_cwd, command, kind):
    text, expected = BAD_YAML[kind]
    f = write(tmp_path / "bad.yaml", text)
    args = {"compress": ["compress", tmp_path / "ck", "--recipe", f, "--out", tmp_path / "out"],
            "profiles": ["profiles", "--profiles", f],
            "search": ["search", tmp_path / "ck", "--config", f, "--out", tmp_path / "out"]}[command]
    line = refused(capsys, *args)
    assert expected in line and str(f) in line
    assert not (tmp_path / "out").exists() and not (empty_cwd / "pwned").exists()


@pytest.mark.parametrize("value, expected", [("true", "must be an integer, got True"),
                                             ('"3"', "must be an integer, got '3'"),
                                             ("2.5", "must be an integer, got 2.5")])
def test_recipe_and_search_numbers_have_strict_types(capsys, tmp_path, empty_cwd, value, expected):
    recipe = write(tmp_path / "r.yaml", f"stages:\n  - {{type: distill, finetune: {{epochs: {value}}}}}\n"
                                        "  - {type: export}\n")
    line = refused(capsys, "compress", tmp_path / "ck", "--recipe", recipe, "--out", tmp_path / "out")
    assert f"stages[0].finetune.epochs: {expected}" in line and str(recipe) in line
    cfg = write(tmp_path / "s.yaml", f"finetune: {{epochs: {value}}}\n")
    line = refused(capsys, "search", tmp_path / "ck", "--config", cfg, "--out", tmp_path / "out")
    assert f"finetune.epochs: {expected}" in line and str(cfg) in line


def test_yaml_floats_with_and_without_a_dot_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-3` as a string; the config reader takes it as the number."""
    from edgeslim.pipeline import load_recipe
    from edgeslim.pipeline.autotune import load_search_config

    r = load_recipe(write(tmp_path / "r.yaml", "stages:\n  - {type: prune, finetune: {lr: 1e-3}, sparsity: 5.0e-1}\n"
                                                "  - {type: distill, finetune: {lr: 2E-4, temperature: 1}}\n"))
    assert r.stages[0].config.finetune.lr == 1e-3 and r.stages[0].config.sparsity == 0.5
    assert r.stages[1].config.finetune.lr == 2e-4
    assert r.stages[1].config.finetune.temperature == 1.0  # an int still fills a float field
    cfg = load_search_config(write(tmp_path / "s.yaml", "max_accuracy_drop: 5e-1\nspace: {sparsity: [0, 0.5]}\n"))
    assert cfg.max_accuracy_drop == 0.5 and cfg.space.sparsity == (0.0, 0.5)
    with pytest.raises(edgeslim.errors.ConfigError, match="description: must be a string, got 0.001"):
        load_recipe(write(tmp_path / "q.yaml", "description: 1e-3\nstages: [{type: export}]\n"))  # quote it
    assert load_recipe(write(tmp_path / "q.yaml", "description: '1e-3'\nstages: [{type: export}]\n")).description \
        == "1e-3"


def test_unknown_recipe_layer_is_refused_before_any_work(capsys, tmp_path, empty_cwd, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    recipe = write(tmp_path / "r.yaml", "stages:\n  - {type: prune, sparsity: 0.5, layers: [features.0, fetures.3]}\n"
                                        "  - {type: export}\n")
    out = tmp_path / "out"
    line = refused(capsys, "compress", ckpt, "--recipe", recipe, "--out", out)
    assert "stages[0].layers: no layer named 'fetures.3'" in line
    assert not (out / "state.json").exists() and not (out / "stages").exists()  # no baseline export, no run


def test_damaged_state_json_on_resume_is_one_line(capsys, tmp_path, empty_cwd, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    out = tmp_path / "out"
    out.mkdir()
    recipe = write(tmp_path / "r.yaml", TINY_RECIPE)
    for damaged in ('{"recipe": {"name": "tiny"}, "stag', "[1, 2]", "\xff"):
        write(out / "state.json", damaged.encode("latin-1"))
        line = refused(capsys, "compress", ckpt, "--recipe", recipe, "--out", out, "--resume")
        assert f"the run folder {out} is damaged" in line and "state.json" in line


# ---- images: decompression bombs, pixel cap, unreadable files ----

def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid all-black grayscale PNG of width x height, built row by row (little memory)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return write(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_image_errors_are_one_line(capsys, tmp_path, digits_onnx):
    bomb = png_bomb(tmp_path / "bomb.png", 12000, 12000)
    assert bomb.stat().st_size < 500_000
    line = refused(capsys, "run", digits_onnx, bomb)
    assert str(bomb) in line and "12000 x 12000" in line and "megapixel limit" in line
    huge = png_bomb(tmp_path / "huge.png", 20000, 20000)  # above Pillow's own DecompressionBombError limit
    assert str(huge) in refused(capsys, "run", digits_onnx, huge)
    assert "cannot read image" in refused(capsys, "run", digits_onnx, write(tmp_path / "x.png", b"\x89PNG garbage"))
    assert "is a folder" in refused(capsys, "run", digits_onnx, tmp_path)
    assert "not found" in refused(capsys, "run", digits_onnx, tmp_path / "missing.png")


def test_jpeg_is_decoded_at_reduced_size_with_the_same_result(tmp_path):
    from edgeslim.runtime.preprocess import Preprocess

    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).resize((3200, 2400))
    big.save(tmp_path / "big.jpg", quality=90)
    pre = Preprocess(channels=3, resize_short=64, crop=56)
    x = pre.load_image(tmp_path / "big.jpg")
    assert x.shape == (1, 3, 56, 56)
    with Image.open(tmp_path / "big.jpg") as im:  # what draft gives: at least the needed size, far below 3200
        im.draft("RGB", pre.decode_size())
        assert 64 <= min(im.size) < 2400


def _peak_rss_mb(args: list[str], cwd: Path) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    p = subprocess.Popen([sys.executable, "-m", "edgeslim.cli", *args], cwd=cwd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, p.returncode, err  # Linux: KiB


def test_png_bomb_costs_no_memory_in_run(tmp_path, digits_onnx):
    small = tmp_path / "small.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(small)
    bomb = png_bomb(tmp_path / "bomb.png", 12000, 12000)
    base_mb, code, err = _peak_rss_mb(["run", str(digits_onnx), str(small)], tmp_path)
    assert code == 0, err
    peak_mb, code, err = _peak_rss_mb(["run", str(digits_onnx), str(bomb)], tmp_path)
    assert code == 2 and "megapixel limit" in one_line(err)
    assert peak_mb < base_mb + 50, (peak_mb, base_mb)  # decoding it would take 144 MB at least


# ---- the boundary itself ----

def test_interrupt_unexpected_errors_and_debug(capsys, monkeypatch):
    import edgeslim.models as models

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "list_models", interrupted)
    code, _, err = cli(capsys, "models")
    assert code == 130 and one_line(err) == "error: interrupted"

    def bug():
        raise RuntimeError("index out of range\nin some loop")

    monkeypatch.setattr(models, "list_models", bug)
    code, _, err = cli(capsys, "models")
    assert code == 1
    assert one_line(err) == "error: unexpected RuntimeError: index out of range in some loop (run with --debug for " \
                            "the traceback)"
    with pytest.raises(RuntimeError, match="index out of range"):
        main(["--debug", "models"])


def test_error_lines_for_what_slips_through():
    from pydantic import BaseModel, Field

    class Opts(BaseModel):
        n: int = Field(1, ge=1)

    try:
        Opts(n=0)
    except Exception as e:  # noqa: BLE001
        assert error_line(e) == ("invalid Opts value: n: must be >= 1 (fix that option or field)", 2)
    line, code = error_line(OSError(errno.ENOSPC, "No space left on device", "/data/out/model.onnx"))
    assert code == 2 and line.startswith("cannot write /data/out/model.onnx: No space left on device (free")
    assert error_line(PermissionError(errno.EACCES, "Permission denied", "/etc/x"))[0].endswith(
        "(check the permissions or choose another path)")
    assert error_line(IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"))[1] == 2
    assert error_line(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"))[1] == 2
    assert error_line(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"))[0] \
        .startswith("No space left on device")


# ---- disk full: one line naming the file, nothing half-written ----

class _HalfFull:
    """A file on a disk that fills up half-way through the write."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


def _full_disk(monkeypatch, folder: Path) -> None:
    """Every atomic write (edgeslim._io) of a file under ``folder`` runs out of space half-way:
    the temporary file is written partly, then the write fails, as on a full disk."""
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        return _HalfFull(f) if folder in target.parents else f

    monkeypatch.setattr(os, "fdopen", fdopen)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("."))


def test_export_on_a_full_disk_leaves_nothing(capsys, tmp_path, monkeypatch, digits_checkpoint):
    import torch

    ckpt, _ = digits_checkpoint
    real_export = torch.onnx.export

    def export_then_disk_full(model, args, f, **kw):  # the exporter itself runs out of space half-way
        real_export(model, args, f, **kw)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", export_then_disk_full)
    out = tmp_path / "o" / "m.onnx"
    line = refused(capsys, "export", ckpt, "--out", out)
    assert f"cannot write {out}: No space left on device" in line
    assert list((tmp_path / "o").iterdir()) == []
    monkeypatch.setattr(torch.onnx, "export", real_export)
    _full_disk(monkeypatch, tmp_path)
    line = refused(capsys, "export", ckpt, "--out", out)
    assert f"cannot write {out}: No space left on device" in line
    assert list((tmp_path / "o").iterdir()) == []


def test_split_writes_both_files_or_neither(capsys, tmp_path, monkeypatch, digits_onnx):
    import edgeslim._io as io

    real_replace, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", second_rename_fails)
    out = tmp_path / "split"
    at = "/features/features.5/MaxPool_output_0"
    line = refused(capsys, "split", digits_onnx, "--at", at, "--out", out)
    assert f"{out / 'tail.onnx'}: No space left on device" in line
    assert list(out.iterdir()) == []  # head.onnx, renamed first, was removed again
    monkeypatch.setattr(io.os, "replace", real_replace)
    _full_disk(monkeypatch, tmp_path)
    assert "head.onnx: No space left on device" in refused(capsys, "split", digits_onnx, "--at", at, "--out", out)
    assert list(out.iterdir()) == []


def test_pack_on_a_full_disk_leaves_nothing(capsys, tmp_path, monkeypatch, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    _full_disk(monkeypatch, tmp_path)
    out = tmp_path / "p" / "m.eslim"
    assert f"cannot write {out}: No space left on device" in refused(capsys, "pack", ckpt, "--out", out)
    assert list((tmp_path / "p").iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 96 KiB file system (tmpfs; needs root, skipped otherwise): real ENOSPC in every writer."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_real_full_disk_train_export_pack_split_compress(capsys, tmp_path, tiny_disk, digits_checkpoint,
                                                         digits_onnx):
    ckpt, _ = digits_checkpoint
    recipe = write(tmp_path / "r.yaml", TINY_RECIPE)
    runs = [["train", "--model", "seed-cnn", "--dataset", "digits", "--epochs", "1", "--out", tiny_disk / "t"],
            ["export", ckpt, "--out", tiny_disk / "m.onnx"], ["pack", ckpt, "--out", tiny_disk / "m.eslim"],
            ["split", digits_onnx, "--at", "/features/features.5/MaxPool_output_0", "--out", tiny_disk / "s"],
            ["compress", ckpt, "--recipe", recipe, "--out", tiny_disk / "c"]]
    for args in runs:
        line = refused(capsys, *args)
        assert "No space left on device" in line, (args, line)
        assert leftovers(tiny_disk) == [], args
    assert not (tiny_disk / "m.onnx").exists() and not (tiny_disk / "m.eslim").exists()
    assert not (tiny_disk / "s" / "head.onnx").exists()


# ---- kill -9 in the middle of compress, then --resume ----

def test_compress_killed_mid_stage_resumes_and_verifies(capsys, tmp_path, digits_checkpoint):
    from edgeslim.data import load_digits
    from edgeslim.evaluate import evaluate_split
    from edgeslim.runtime import load_model

    ckpt, _ = digits_checkpoint
    recipe = write(tmp_path / "r.yaml", TINY_RECIPE)
    out = tmp_path / "c"
    args = ["compress", str(ckpt), "--recipe", str(recipe), "--out", str(out)]
    p = subprocess.Popen([sys.executable, "-m", "edgeslim.cli", *args], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "stages" / "01-prune.try-0").exists():  # the stage's first try has started
        assert p.poll() is None and time.monotonic() < deadline, "compress ended before its first stage"
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "running" and state["stages"] == []
    # what a write cut short leaves: hidden temporaries (ours) beside a file of the user's
    stale = [write(out / ".model.onnx.k3j2h1.tmp", b"half"),
             write(out / ".state.json.x8y7z6.tmp", b"{")]
    keep = write(out / "notes.tmp", "mine")

    code, _, err = cli(capsys, *args, "--resume")
    assert code == 0, err
    assert not any(p.exists() for p in stale) and keep.exists()
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "done" and [s["type"] for s in state["stages"]] == ["prune", "export"]
    report = json.loads((out / "report.json").read_text())
    final = out / "stages" / "02-export" / "model.onnx"
    acc = evaluate_split(load_model(final), load_digits(pad_to=32).test)["accuracy"]
    assert acc == pytest.approx(report["final"]["accuracy"]) and acc > 0.5
