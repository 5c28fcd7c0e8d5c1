import numpy as np
import pytest
from PIL import Image

from edgeslim.data import find_fashion_mnist, load_dataset, load_digits, load_fashion_mnist, load_image_folder
from edgeslim.errors import DataError


def test_digits_padded_and_normalised_with_train_stats():
    d = load_digits(pad_to=32)
    assert d.input_shape == (1, 32, 32) and d.num_classes == 10
    assert len(d.train) + len(d.test) == 1797
    assert d.preprocess.pad_to == (32, 32)
    # statistics come from the training split, before padding
    raw = d.train.x[:, :, 12:20, 12:20] * d.preprocess.std[0] + d.preprocess.mean[0]
    assert abs(float(raw.mean()) - d.preprocess.mean[0]) < 1e-4


def test_digits_split_is_reproducible():
    a, b = load_digits(), load_digits()
    assert (a.test.y == b.test.y).all() and a.input_shape == (1, 8, 8)


@pytest.mark.skipif(find_fashion_mnist() is None, reason="Fashion-MNIST not installed")
def test_fashion_mnist_shapes_and_classes():
    d = load_fashion_mnist(pad_to=32)
    assert len(d.train) == 60000 and len(d.test) == 10000
    assert d.input_shape == (1, 32, 32) and d.class_names[9] == "Ankle boot"
    assert abs(d.preprocess.mean[0] - 0.286) < 0.01 and abs(d.preprocess.std[0] - 0.353) < 0.01


def test_fashion_mnist_missing_names_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr("edgeslim.data.datasets.DEBIAN_FASHION_MNIST", tmp_path / "none")
    with pytest.raises(DataError, match="dataset-fashion-mnist.*--data-dir"):
        load_fashion_mnist(tmp_path / "empty", download=False)


def test_fashion_mnist_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr("edgeslim.data.datasets.DEBIAN_FASHION_MNIST", tmp_path / "none")

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DataError, match="download failed.*dataset-fashion-mnist"):
        load_fashion_mnist()


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_image_folder(tmp_path, size=16)
    assert d.class_names == ["cat", "dog"] and d.input_shape == (1, 16, 16)
    assert len(d.train) + len(d.test) == 10


def test_image_folder_corrupt_image_names_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        load_image_folder(tmp_path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar-1000")
