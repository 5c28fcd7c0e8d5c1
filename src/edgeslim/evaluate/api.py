"""``edgeslim eval``: everything a user asks about a checkpoint in one dict."""
from __future__ import annotations

from pathlib import Path

from ..data.datasets import load_dataset_for
from ..models.checkpoint import WEIGHTS, load_checkpoint
from .metrics import evaluate_split
from .size import file_bytes, size_report


def evaluate_checkpoint(folder: str | Path, dataset: str | None = None, data_dir: str | Path | None = None,
                        limit: int | None = None) -> dict:
    """Test-set accuracy, loss, per-class accuracy, params, non-zeros, MACs and bytes."""
    ckpt = load_checkpoint(folder)
    data = load_dataset_for(ckpt.meta, dataset, data_dir, default="fashion-mnist")
    test = data.test.subset(limit) if limit else data.test
    result = {"checkpoint": str(folder), "dataset": data.name, **evaluate_split(ckpt.model, test),
              **size_report(ckpt.model, ckpt.input_shape),
              "bytes": file_bytes(Path(folder) / WEIGHTS), "class_names": ckpt.class_names}
    return result
