"""Data given as a path (``--dataset`` / ``--calib-data``), read lazily in batches.

Each kind of path is a registered :class:`DataKind` (``register_data_kind``); ``open_data``
asks the kinds in order which one a path is, so a new kind (text files for text models, say)
plugs in without touching the commands. Built in:

- ``labels-file``: a flat folder of images with ``labels.tsv`` / ``labels.csv`` (a header
  row is optional): file name, then a class index or a class name (further columns ignored);
- ``class-folders``: one sub-folder of images per class;
- ``npy``: an ``.npy`` file of inputs (uint8 pixels, ``(N, H, W)`` or ``(N, C, H, W)``, are
  preprocessed; float arrays are taken as model inputs), or a folder with ``x.npy`` and
  ``y.npy`` (labels); read memory-mapped, never unpickled;
- ``image-folder``: a folder of images without labels (calibration, unlabeled distillation).

Images are decoded with the model's :class:`Preprocess` (its spec's, e.g. EfficientNet's
resize 256 bicubic / centre crop 224 / mean, std 0.5), a batch at a time: memory stays
bounded by the batch, whatever the number of files.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import DataError
from ..runtime.preprocess import Preprocess
from .datasets import IMAGE_SUFFIXES, Split

LABEL_FILES = ("labels.tsv", "labels.csv")


@dataclass
class ImageSource:
    """``count`` samples read on demand: ``read(i)`` -> one uint8 (C, H, W) image or a float input."""
    name: str
    kind: str
    count: int
    read: Callable[[int], np.ndarray]
    preprocess: Preprocess
    labels: np.ndarray | None = None  # int64 class indices, or None (unlabeled)
    class_names: list[str] | None = None
    describe: Callable[[int], str] = str  # sample i for error messages (its file name)

    def __len__(self) -> int:
        return self.count

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def inputs(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Model inputs (float32, normalised) of the samples ``indices``."""
        raw = [self._read(int(i)) for i in indices]
        if raw and raw[0].dtype != np.uint8:  # already model inputs
            return np.stack(raw).astype(np.float32)
        return self.preprocess.normalize_batch(np.stack(raw))

    def _read(self, i: int) -> np.ndarray:
        try:
            return self.read(i)
        except (OSError, ValueError, SyntaxError) as e:  # Pillow raises these for bad files
            raise DataError(f"{self.describe(i)}: cannot read ({e})") from None

    def batches(self, batch_size: int = 64, indices: np.ndarray | None = None, progress: bool = False,
                description: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(inputs, labels or None) a batch at a time, with a progress bar if asked."""
        from ..train.loop import _progress

        order = np.arange(self.count) if indices is None else np.asarray(indices)
        with _progress(progress) as bar:
            task = bar.add_task(description or f"read {self.name}", total=len(order), stats="")
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                yield self.inputs(idx), (None if self.labels is None else self.labels[idx])
                bar.advance(task, len(idx))

    def split(self, indices: np.ndarray | list[int], progress: bool = False, description: str | None = None) -> Split:
        """The samples ``indices`` in memory (a bounded number: calibration, a held-out subset)."""
        idx = np.asarray(indices, dtype=np.int64)
        x = np.concatenate([b for b, _ in self.batches(64, idx, progress, description)]) if len(idx) else \
            np.zeros((0, *self.input_shape), np.float32)
        y = self.labels[idx] if self.labels is not None else np.zeros(len(idx), np.int64)
        return Split(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))

    def pixels(self) -> np.ndarray:
        """Every sample as read (uint8 images): training data sets, which live in memory anyway."""
        return np.stack([self._read(i) for i in range(self.count)])

    def halves(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A deterministic split into two halves: calibrate on the first, evaluate on the
        other (held out), so quantization is never judged on the images it calibrated on."""
        order = np.random.default_rng(seed).permutation(self.count)
        return order[: self.count // 2], order[self.count // 2:]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs([0]).shape[1:])


@dataclass(frozen=True)
class DataKind:
    name: str
    detect: Callable[[Path], bool]
    open: Callable[[Path, Preprocess], Any]  # -> a source (ImageSource for images)
    description: str


_KINDS: list[DataKind] = []


def register_data_kind(name: str, detect: Callable[[Path], bool], open: Callable[[Path, Preprocess], Any],
                       description: str, first: bool = False) -> None:
    """Add a kind of data path; ``first`` puts it before the built-in kinds."""
    kind = DataKind(name, detect, open, description)
    _KINDS[:] = [k for k in _KINDS if k.name != name]
    _KINDS.insert(0, kind) if first else _KINDS.append(kind)


def data_kinds() -> list[DataKind]:
    return list(_KINDS)


def data_kind(path: str | Path) -> DataKind | None:
    path = Path(path)
    return next((k for k in _KINDS if k.detect(path)), None)


def open_data(path: str | Path, preprocess: Preprocess | None = None) -> Any:
    """The data at ``path``, read lazily with ``preprocess`` (the model's)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    kind = data_kind(path)
    if kind is None:
        raise DataError(f"{path}: not a data set edgeslim reads; use one of: "
                        + "; ".join(f"{k.name} ({k.description})" for k in _KINDS))
    return kind.open(path, preprocess or Preprocess())


# ---- image files --------------------------------------------------------------------------

def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def _image_reader(files: list[Path], preprocess: Preprocess) -> Callable[[int], np.ndarray]:
    from PIL import Image

    def read(i: int) -> np.ndarray:
        with Image.open(files[i]) as im:
            if preprocess.decode_size() is not None:  # JPEG: decode at the smallest scale the resize allows
                im.draft("L" if preprocess.channels == 1 else "RGB", preprocess.decode_size())
            return preprocess.image_to_array(im)
    return read


def _files_source(name: str, kind: str, files: list[Path], preprocess: Preprocess, labels=None,
                  class_names=None) -> ImageSource:
    if not files:
        raise DataError(f"{name}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return ImageSource(name, kind, len(files), _image_reader(files, preprocess), preprocess,
                       None if labels is None else np.asarray(labels, np.int64), class_names,
                       describe=lambda i: str(files[i]))


def _label_file(folder: Path) -> Path | None:
    return next((folder / n for n in LABEL_FILES if (folder / n).is_file()), None)


def _read_label_rows(path: Path) -> list[list[str]]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f, delimiter=delimiter) if r and r[0].strip()]
    if rows and len(rows[0]) >= 2 and not (path.parent / rows[0][0]).is_file():
        rows = rows[1:]  # a header row names no file
    bad = next((r for r in rows if len(r) < 2), None)
    if bad is not None:
        raise DataError(f"{path}: row {bad!r} has no label; each row is FILE{delimiter!r}LABEL")
    return rows


def open_labels_file(folder: Path, preprocess: Preprocess) -> ImageSource:
    path = _label_file(folder)
    rows = _read_label_rows(path)
    files = [folder / r[0] for r in rows]
    missing = [str(f.name) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{path} lists {len(missing)} file(s) not in {folder}: {', '.join(missing[:3])}")
    values = [r[1] for r in rows]
    if all(v.lstrip("-").isdigit() for v in values):  # class indices (e.g. ImageNet's 0..999)
        labels = [int(v) for v in values]
        if min(labels) < 0:
            raise DataError(f"{path}: class indices must be >= 0")
        class_names = None  # the model's own classes
    else:  # class names: indices in sorted order, as class folders are
        class_names = sorted(set(values))
        labels = [class_names.index(v) for v in values]
    return _files_source(folder.name, "labels-file", files, preprocess, labels, class_names)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def open_class_folders(folder: Path, preprocess: Preprocess) -> ImageSource:
    classes = _class_dirs(folder)
    files, labels = [], []
    for label, cls in enumerate(classes):
        found = _image_files(cls)
        files += found
        labels += [label] * len(found)
    return _files_source(folder.name, "class-folders", files, preprocess, labels, [c.name for c in classes])


def open_image_folder(folder: Path, preprocess: Preprocess) -> ImageSource:
    return _files_source(folder.name, "image-folder", _image_files(folder), preprocess)


# ---- numpy arrays -------------------------------------------------------------------------

def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # an object array would need unpickling: refused
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None


def _is_npy(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".npy") or (path.is_dir() and (path / "x.npy").is_file())


def open_npy(path: Path, preprocess: Preprocess) -> ImageSource:
    x = _load_npy(path / "x.npy" if path.is_dir() else path)
    labels = _load_npy(path / "y.npy").astype(np.int64) if path.is_dir() and (path / "y.npy").is_file() else None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{path}: inputs must be (N, H, W) or (N, C, H, W), got shape {x.shape}")
    if labels is not None and labels.shape != (len(x),):
        raise DataError(f"{path}: y.npy has shape {labels.shape}, expected ({len(x)},) labels for x.npy")
    return ImageSource(path.stem, "npy", len(x), lambda i: np.asarray(x[i]), preprocess, labels,
                       describe=lambda i: f"{path} sample {i}")


register_data_kind("labels-file", lambda p: p.is_dir() and _label_file(p) is not None, open_labels_file,
                   "a folder of images with labels.tsv / labels.csv: file name -> class index or name")
register_data_kind("npy", _is_npy, open_npy, "an .npy file of inputs, or a folder with x.npy and y.npy")
register_data_kind("class-folders", lambda p: p.is_dir() and bool(_class_dirs(p)), open_class_folders,
                   "one sub-folder of images per class")
register_data_kind("image-folder", lambda p: p.is_dir() and bool(_image_files(p)), open_image_folder,
                   "a folder of images without labels (calibration, unlabeled distillation)")
