"""The labelled ImageNet sample photos (one per class for 200 classes), for checking
ImageNet models such as EfficientNet-Lite0. They are read from outside the repository."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..runtime.preprocess import Preprocess
from .datasets import Split

IMAGENET_PREPROCESS = Preprocess(channels=3, resize_short=256, crop=224, mean=(0.5, 0.5, 0.5),
                                 std=(0.5, 0.5, 0.5))
# torchvision's ImageNet weights (resize 256, centre crop 224, ImageNet mean/std; bicubic
# here where torchvision resizes bilinearly)
TORCHVISION_PREPROCESS = Preprocess(channels=3, resize_short=256, crop=224, mean=(0.485, 0.456, 0.406),
                                    std=(0.229, 0.224, 0.225))


def default_imagenet_samples_dir() -> Path | None:
    """../shared/data/imagenet-samples relative to the repository or the working directory."""
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *here.parents]:
        cand = base.parent / "shared/data/imagenet-samples"
        if (cand / "labels.tsv").exists():
            return cand
    return None


def load_imagenet_samples(folder: str | Path | None = None,
                          preprocess: Preprocess = IMAGENET_PREPROCESS) -> tuple[Split, list[str]]:
    """Images listed in labels.tsv -> (Split with ImageNet class indices, file names)."""
    from PIL import Image

    folder = Path(folder) if folder else default_imagenet_samples_dir()
    if folder is None or not (folder / "labels.tsv").exists():
        raise DataError("ImageNet samples not found: expected ../shared/data/imagenet-samples/labels.tsv")
    rows = [line.split("\t") for line in (folder / "labels.tsv").read_text().splitlines() if line.strip()]
    if rows and not rows[0][1].strip().isdigit():
        rows = rows[1:]  # header
    pixels, labels, names = [], [], []
    for row in rows:
        fname, index = row[0], int(row[1])
        with Image.open(folder / fname) as im:
            pixels.append(preprocess.image_to_array(im))
        labels.append(index)
        names.append(fname)
    x = torch.from_numpy(preprocess.normalize_batch(np.stack(pixels)))
    return Split(x, torch.tensor(labels, dtype=torch.int64)), names
