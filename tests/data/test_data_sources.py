"""Data paths read lazily: labels files, class folders, unlabeled image folders, .npy arrays;
deterministic calibration / held-out halves; new kinds plug in by registration."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgeslim.cli import app
from edgeslim.data import load_dataset
from edgeslim.data.sources import data_kinds, open_data, register_data_kind
from edgeslim.errors import DataError
from edgeslim.runtime.preprocess import Preprocess

GRAY16 = Preprocess(channels=1, resize=(16, 16))


def _png(path, value, size=(20, 12)):
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(path)


def _flat(tmp_path, n=6, labels="labels.tsv", names=False, header=True):
    folder = tmp_path / "flat"
    folder.mkdir()
    sep = "\t" if labels.endswith(".tsv") else ","
    rows = [f"file{sep}label"] if header else []
    for i in range(n):
        _png(folder / f"im{i}.png", 25 * i)
        rows.append(f"im{i}.png{sep}{['cat', 'dog'][i % 2] if names else i % 3}")
    (folder / labels).write_text("\n".join(rows) + "\n")
    return folder


def test_labels_tsv_with_indices_streams_in_batches(tmp_path):
    src = open_data(_flat(tmp_path), GRAY16)
    assert (src.kind, len(src), src.class_names) == ("labels-file", 6, None)
    assert src.labels.tolist() == [0, 1, 2, 0, 1, 2]
    batches = list(src.batches(4))
    assert [b[0].shape for b in batches] == [(4, 1, 16, 16), (2, 1, 16, 16)]
    assert batches[1][0][0, 0, 0, 0] == pytest.approx(100 / 255)


def test_labels_csv_with_class_names_and_no_header(tmp_path):
    src = open_data(_flat(tmp_path, labels="labels.csv", names=True, header=False), GRAY16)
    assert src.class_names == ["cat", "dog"] and src.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_labels_file_errors_name_the_problem(tmp_path):
    folder = _flat(tmp_path)
    (folder / "labels.tsv").write_text("im0.png\t0\nmissing.png\t1\n")
    with pytest.raises(DataError, match="not in .*missing.png"):
        open_data(folder)
    (folder / "labels.tsv").write_text("im0.png\n")
    with pytest.raises(DataError, match="has no label"):
        open_data(folder)


def test_class_folders_and_unlabeled_folder(tmp_path):
    for cls, v in (("a", 10), ("b", 200)):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        _png(tmp_path / "tree" / cls / "x.png", v)
    tree = open_data(tmp_path / "tree", GRAY16)
    assert (tree.kind, tree.class_names, tree.labels.tolist()) == ("class-folders", ["a", "b"], [0, 1])
    (tmp_path / "plain").mkdir()
    for i in range(3):
        _png(tmp_path / "plain" / f"{i}.jpg", i)
    plain = open_data(tmp_path / "plain", GRAY16)
    assert plain.kind == "image-folder" and not plain.labelled and plain.split([0, 2]).x.shape == (2, 1, 16, 16)


def test_npy_file_and_folder_memory_mapped(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (10, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(10) % 2)
    folder = open_data(tmp_path, Preprocess(pad_to=(12, 12)))
    assert folder.kind == "npy" and folder.labelled and folder.input_shape == (1, 12, 12)
    assert np.allclose(folder.split([3]).x[0, 0, 2:10, 2:10].numpy(), x[3] / 255)
    floats = tmp_path / "inputs.npy"
    np.save(floats, np.ones((4, 3, 5, 5), np.float32))
    src = open_data(floats)
    assert not src.labelled and np.array_equal(src.split([0]).x.numpy(), np.ones((1, 3, 5, 5), np.float32))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="plain numeric"):
        open_data(tmp_path / "obj.npy")


def test_halves_are_deterministic_and_disjoint(tmp_path):
    src = open_data(_flat(tmp_path, n=9), GRAY16)
    a, b = src.halves(seed=0)
    assert set(a).isdisjoint(b) and len(a) + len(b) == 9
    assert np.array_equal(a, open_data(tmp_path / "flat", GRAY16).halves(seed=0)[0])


def test_load_dataset_reads_a_labels_file_for_training(tmp_path):
    data = load_dataset(str(_flat(tmp_path, n=10)))
    assert data.input_shape == (1, 32, 32) and len(data.train) + len(data.test) == 10
    assert data.class_names == ["0", "1", "2"]


def test_unknown_path_lists_kinds_and_new_kinds_plug_in(tmp_path):
    (tmp_path / "notes.xyz").write_text("x")
    with pytest.raises(DataError, match="labels-file.*npy.*class-folders.*image-folder"):
        open_data(tmp_path / "notes.xyz")
    register_data_kind("xyz-test", lambda p: p.suffix == ".xyz", lambda p, pre: ("opened", p.name), "test kind")
    try:
        assert open_data(tmp_path / "notes.xyz") == ("opened", "notes.xyz")
    finally:
        from edgeslim.data import sources

        sources._KINDS[:] = [k for k in data_kinds() if k.name != "xyz-test"]


def _digits_folder(tmp_path, digits, n=64):
    """The digits test images as 8x8 PNGs with labels.csv (what a user's flat folder looks like)."""
    folder = tmp_path / "digits-png"
    folder.mkdir()
    pre = digits.preprocess
    px = (digits.test.x[:n].numpy() * np.asarray(pre.std)[0] + np.asarray(pre.mean)[0])[:, 0, 12:20, 12:20]
    rows = ["file,label"]
    for i, (img, y) in enumerate(zip(np.clip(px * 255 + 0.5, 0, 255).astype(np.uint8), digits.test.y[:n])):
        Image.fromarray(img).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{int(y)}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_cli_eval_and_quantize_read_a_flat_folder(tmp_path, digits, digits_checkpoint):
    folder, _ = digits_checkpoint
    data = _digits_folder(tmp_path, digits)
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(folder), "--dataset", str(data), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert ev["samples"] == 64 and ev["dataset"] == "digits-png" and ev["accuracy"] > 0.5
    out = tmp_path / "q"
    r = runner.invoke(app, ["quantize", str(folder), "--calib-data", str(data), "--samples", "16", "--method",
                            "static", "--calibration", "minmax", "--no-equalize", "--no-bias-correction",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agreement"] > 0.8 and "accuracy" in summary  # measured on the 32 held-out images
    from edgeslim.runtime import load_model

    assert load_model(out / "model.onnx").metadata["preprocess"]["pad_to"] == [32, 32]
