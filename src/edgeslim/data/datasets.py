"""Data sets as in-memory tensors: Fashion-MNIST, scikit-learn digits, image folders.

Every loader returns a :class:`DataBundle` whose tensors are already normalised with
statistics computed from the training split; the :class:`Preprocess` spec that did
this travels with the model so the device repeats it exactly.
"""
from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..runtime.preprocess import Preprocess

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class Split:
    x: torch.Tensor  # normalised float32 (N, C, H, W)
    y: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int, seed: int = 0) -> "Split":
        """A reproducible random subset of at most n samples."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(self.x[idx], self.y[idx])


@dataclass
class DataBundle:
    name: str
    train: Split
    test: Split
    class_names: list[str]
    preprocess: Preprocess
    # held out of the training split (never the test split): best-epoch selection and accuracy-budget
    # decisions; the test split is measured once, for the report
    val: Split | None = None
    validation: dict | None = None  # how val was drawn: {"samples", "seed"} (see hold_out)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _stats(train_pixels: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = train_pixels.astype(np.float32) / (255.0 if train_pixels.dtype == np.uint8 else 1.0)
    axes = (0, 2, 3)
    return tuple(float(v) for v in x.mean(axis=axes)), tuple(float(v) for v in x.std(axis=axes))


def bundle_from_pixels(name: str, train_px: np.ndarray, train_y: np.ndarray, test_px: np.ndarray,
                       test_y: np.ndarray, class_names: list[str], pad_to: int | None = None,
                       preprocess: Preprocess | None = None) -> DataBundle:
    """Normalise uint8 (N, C, H, W) arrays with training-split statistics into a DataBundle."""
    if preprocess is None:
        mean, std = _stats(train_px)
        h, w = train_px.shape[-2:]
        pad = (pad_to, pad_to) if pad_to and pad_to > max(h, w) else None
        preprocess = Preprocess(channels=train_px.shape[1], resize=(h, w), pad_to=pad, mean=mean, std=std)

    def split(px, y):
        return Split(torch.from_numpy(preprocess.normalize_batch(px)), torch.from_numpy(y.astype(np.int64)))

    return DataBundle(name, split(train_px, train_y), split(test_px, test_y), class_names, preprocess)


def default_validation_samples(train_samples: int) -> int:
    """How many training samples ``edgeslim train`` holds out: a tenth, at most 5,000."""
    return min(5000, train_samples // 10)


def hold_out(data: DataBundle, samples: int | None = None, seed: int = 0) -> DataBundle:
    """``data`` with ``samples`` random training samples moved to ``data.val`` (a reproducible
    choice: the same ``samples`` and ``seed`` pick the same images, so a checkpoint can record
    them and every later stage holds out exactly what its training never saw)."""
    if data.val is not None:
        raise DataError(f"{data.name}: a validation split is already held out ({len(data.val)} samples)")
    n = len(data.train)
    samples = default_validation_samples(n) if samples is None else samples
    if not 0 <= samples < n:
        raise DataError(f"validation samples must be in [0, {n}) for {data.name}'s {n} training samples, got {samples}")
    record = {"samples": samples, "seed": seed}
    if samples == 0:
        return DataBundle(data.name, data.train, data.test, data.class_names, data.preprocess, None, record)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:samples], order[samples:]
    return DataBundle(data.name, Split(data.train.x[train], data.train.y[train]), data.test, data.class_names,
                      data.preprocess, Split(data.train.x[val], data.train.y[val]), record)


def find_fashion_mnist(data_dir: str | Path | None = None) -> Path | None:
    """First folder holding the Fashion-MNIST IDX files: data_dir, $EDGESLIM_DATA, Debian's."""
    candidates = [data_dir, os.environ.get("EDGESLIM_DATA"), DEBIAN_FASHION_MNIST]
    for c in candidates:
        if not c:
            continue
        c = Path(c)
        for sub in (c, c / "fashion-mnist"):
            if any((sub / (_FASHION_FILES["train"][0] + ext)).exists() for ext in (".gz", "")):
                return sub
    return None


def _download_fashion_mnist(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for files in _FASHION_FILES.values():
        for stem in files:
            target = dest / f"{stem}.gz"
            if not target.exists():
                with urllib.request.urlopen(_FASHION_URL + target.name, timeout=20) as r:
                    data = r.read()
                tmp = target.with_suffix(".part")
                tmp.write_bytes(data)
                tmp.replace(target)
    return dest


def _idx_file(folder: Path, stem: str) -> Path:
    gz = folder / f"{stem}.gz"
    return gz if gz.exists() else folder / stem


def load_fashion_mnist(data_dir: str | Path | None = None, pad_to: int | None = None,
                       download: bool = True) -> DataBundle:
    """Fashion-MNIST (60k train / 10k test, 28x28 grayscale), zero-padded to ``pad_to``."""
    from .idx import read_idx

    folder = find_fashion_mnist(data_dir)
    if folder is None and download:
        cache = Path(data_dir or os.environ.get("EDGESLIM_DATA") or Path.home() / ".cache/edgeslim/fashion-mnist")
        try:
            folder = _download_fashion_mnist(cache)
        except Exception as e:  # network failures take many shapes; all mean "not available"
            raise DataError(
                f"Fashion-MNIST not found and the download failed ({e}). Install the Debian package "
                "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) or pass --data-dir "
                "/ set EDGESLIM_DATA to a folder with the four IDX files.") from None
    if folder is None:
        raise DataError("Fashion-MNIST not found. Install the Debian package `dataset-fashion-mnist` "
                        "or pass --data-dir / set EDGESLIM_DATA.")
    arrays = {}
    for split, (img, lab) in _FASHION_FILES.items():
        x, y = read_idx(_idx_file(folder, img)), read_idx(_idx_file(folder, lab))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match")
        arrays[split] = (x[:, None], y)
    return bundle_from_pixels("fashion-mnist", *arrays["train"], *arrays["test"],
                              FASHION_MNIST_CLASSES, pad_to=pad_to)


def load_digits(pad_to: int | None = None, test_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    """scikit-learn's 8x8 digits (1797 images): small enough for unit tests."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    px = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)[:, None]
    order = np.random.default_rng(seed).permutation(len(px))
    n_test = int(len(px) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return bundle_from_pixels("digits", px[train], d.target[train], px[test], d.target[test],
                              [str(i) for i in range(10)], pad_to=pad_to)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load_image_folder(root: str | Path, preprocess: Preprocess | None = None, size: int = 32,
                      channels: int = 1, test_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    """A folder with one sub-folder per class. Unreadable images raise DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise DataError(f"{root}: expected one sub-folder per class with images inside")
    spec = preprocess or Preprocess(channels=channels, resize=(size, size))
    pixels, labels = [], []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    pixels.append(spec.image_to_array(im))
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"{f}: cannot read image ({e})") from None
            labels.append(label)
    if len(pixels) < 2:
        raise DataError(f"{root}: found {len(pixels)} images; need at least 2")
    px, y = np.stack(pixels), np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(px))
    n_test = max(1, int(len(px) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    if preprocess is None:
        mean, std = _stats(px[train])
        spec = Preprocess(channels=channels, resize=(size, size), mean=mean, std=std)
    return bundle_from_pixels(root.name, px[train], y[train], px[test], y[test], classes, preprocess=spec)


def load_dataset_for(meta: dict, dataset: str | None = None, data_dir: str | Path | None = None,
                     default: str | None = None) -> DataBundle:
    """The data set a checkpoint was trained on (``dataset`` overrides it), padded as its recorded
    preprocessing says, so evaluation inputs match the model's input shape."""
    name = dataset or meta.get("dataset") or default
    if not name:
        raise DataError("the checkpoint does not record its data set; name the data set to use")
    pad = (meta.get("preprocess") or {}).get("pad_to")
    data = load_dataset(name, data_dir, pad_to=pad[0] if pad else None)
    held = meta.get("validation") if name == meta.get("dataset") else None
    if held:  # the samples the checkpoint's training held out
        return hold_out(data, held["samples"], held["seed"])
    # a checkpoint that records none (older, or trained elsewhere) saw every training sample
    data = hold_out(data)
    data.validation["seen_in_training"] = True
    return data


def load_dataset(name: str, data_dir: str | Path | None = None, pad_to: int | None = None) -> DataBundle:
    """Load a data set by name: ``fashion-mnist``, ``digits``, or a path to an image folder.
    Images smaller than ``pad_to`` are zero-padded to it (Fashion-MNIST 28 -> 32)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, pad_to=pad_to)
    if name == "digits":
        return load_digits(pad_to=pad_to)
    from .sources import data_kind, open_data

    kind = data_kind(name) if Path(name).exists() else None
    if kind is not None and kind.name == "class-folders":
        return load_image_folder(name)
    if kind is not None:
        return bundle_from_source(open_data(name, Preprocess(channels=1, resize=(32, 32))), pad_to=pad_to)
    raise DataError(f"unknown dataset {name!r}: use 'fashion-mnist', 'digits' or a path: a folder of class "
                    "sub-folders, a folder of images with labels.tsv / labels.csv, or .npy arrays (x.npy + y.npy)")


def bundle_from_source(source, pad_to: int | None = None, test_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    """A labelled data source (``edgeslim.data.sources``) in memory, split into train and test,
    normalised with training-split statistics: for training, which reads every sample anyway."""
    if not source.labelled:
        raise DataError(f"{source.name}: has no labels ({source.kind}); training and evaluation need labels "
                        "(labels.tsv / labels.csv, class sub-folders or y.npy); calibration does not")
    px, y = source.pixels(), source.labels
    if px.dtype != np.uint8:
        raise DataError(f"{source.name}: float inputs are taken as model inputs; training reads uint8 pixels")
    order = np.random.default_rng(seed).permutation(len(px))
    n_test = max(1, int(len(px) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    names = source.class_names or [str(i) for i in range(int(y.max()) + 1)]
    return bundle_from_pixels(source.name, px[train], y[train], px[test], y[test], names, pad_to=pad_to)
