"""Shared pieces of the benchmark scripts: cached baselines, result files, tables."""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDGESLIM_CACHE", ROOT / ".cache" / "baselines"))
RESULTS = ROOT / "benchmarks" / "results"


def baseline(model: str = "seed-cnn", dataset: str = "fashion-mnist", epochs: int = 10, seed: int = 0):
    """The dense model `edgeslim train --model M --epochs 10 --seed 0 --hflip --shift` produces, trained
    once and cached. Every recorded benchmark compares against these models (random flips and 2-pixel
    shifts: seed-cnn 91.31%); the later default (no augmentation) trains slightly better models."""
    from edgeslim.models import load_checkpoint
    from edgeslim.train import TrainConfig, train_model

    folder = CACHE / f"{model}-{dataset}-e{epochs}-s{seed}"
    if not (folder / "model.json").exists():
        train_model(model, dataset, TrainConfig(epochs=epochs, seed=seed, augment=True, hflip=True), out=folder, progress=False)
    return load_checkpoint(folder), folder


def machine() -> dict:
    import onnxruntime
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "date": time.strftime("%Y-%m-%d")}


def save_results(name: str, payload: dict) -> Path:
    from edgeslim._io import write_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    return write_json(RESULTS / f"{name}.json", {"machine": machine(), **payload})


def print_table(rows: list[dict], columns: list[str] | None = None, title: str | None = None) -> None:
    from rich.console import Console

    from edgeslim.report import rich_table

    Console(width=200).print(rich_table(rows, columns, title=title))
