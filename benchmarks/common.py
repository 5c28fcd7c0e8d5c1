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
    """The dense model `edgeslim train --model M --dataset D --epochs 10 --seed 0` produces (every
    other setting its default: no augmentation; seed-cnn 92.14%), trained once and cached. Results
    recorded before 2026-12-02 used a baseline trained with --hflip --shift (seed-cnn 91.31%)."""
    from edgeslim.models import load_checkpoint
    from edgeslim.train import TrainConfig, train

    folder = CACHE / f"{model}-{dataset}-train-defaults-e{epochs}-s{seed}"
    if not (folder / "model.json").exists():
        train(model, TrainConfig(epochs=epochs, seed=seed), dataset, out=folder, progress=False)
    return load_checkpoint(folder), folder


def machine() -> dict:
    import onnxruntime
    import torch

    from edgeslim.quantize.kernels import cpu_flags

    flags = cpu_flags() or set()
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return {"python": sys.version.split()[0], "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "cpu_count": os.cpu_count(), "cpu": _cpu_model(), "simd": simd, "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d")}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def save_results(name: str, payload: dict) -> Path:
    from edgeslim._io import write_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    return write_json(RESULTS / f"{name}.json", {"machine": machine(), **payload})


def print_table(rows: list[dict], columns: list[str] | None = None, title: str | None = None) -> None:
    from rich.console import Console

    from edgeslim.report import rich_table

    Console(width=200).print(rich_table(rows, columns, title=title))
