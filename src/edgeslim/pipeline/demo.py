"""``edgeslim demo``: the whole idea in a few minutes on 2 cores.

Train seed-cnn on Fashion-MNIST, then run the compression pipeline (``compress``) on it:
prune (global magnitude, short fine-tune distilled from the baseline) and quantize to
int8 (ONNX Runtime static quantization, calibrated); run the exported float and int8
models on the simulated device (ONNX Runtime, torch-free runner), compare them in one table.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from .._io import atomic_write_text, write_json


def run_demo(out: str | Path = "runs/demo", epochs: int = 4, sparsity: float = 0.9, finetune_epochs: int = 1,
             calibration_samples: int = 512, threads: int | None = None, data_dir: str | Path | None = None,
             log: Callable[[str], None] = print, progress: bool = True) -> dict:
    from ..evaluate.metrics import agreement, evaluate_split, predict_logits
    from ..evaluate.onnx_stats import onnx_weight_stats
    from ..evaluate.size import count_macs
    from ..models.checkpoint import load_checkpoint
    from ..prune import layer_sparsity
    from ..report import markdown_table
    from ..runtime import benchmark, load_model, slower_than_baseline
    from ..train import TrainConfig, train_model
    from ..train.api import load_data_for
    from .compress import compress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    log(f"[1/5] loading Fashion-MNIST and training seed-cnn for {epochs} epochs")
    data = load_data_for("seed-cnn", "fashion-mnist", data_dir)
    base = train_model("seed-cnn", data, TrainConfig(epochs=epochs), out=out / "baseline", progress=progress)

    log(f"[2/5] compressing with the pipeline: prune {sparsity:.0%} of weights (global magnitude, "
        f"{finetune_epochs} fine-tune epoch(s) distilled from the baseline), then int8 static quantization")
    recipe = demo_recipe(sparsity, finetune_epochs, calibration_samples)
    shutil.rmtree(out / "pipeline", ignore_errors=True)
    pipeline = compress(out / "baseline", recipe, out / "pipeline", data=data, check_budget=False,
                        progress=progress)

    log("[3/5] collecting the exported float32 baseline and the int8 model")
    base_onnx = Path(shutil.copyfile(out / "pipeline/stages/00-original/model.onnx", out / "baseline.onnx"))
    int8_onnx = Path(shutil.copyfile(out / "pipeline/stages/02-quantize/model.onnx", out / "compressed-int8.onnx"))
    pruned = load_checkpoint(out / "pipeline/stages/01-prune").model

    log("[4/5] evaluating on the simulated device (ONNX Runtime, no torch)")
    rows = []
    ref_logits = None
    for label, path in [("baseline float32", base_onnx), ("pruned + int8", int8_onnx)]:
        runner = load_model(path, threads=threads, require_signature=False)  # files this demo wrote
        logits = predict_logits(runner, data.test.x)
        metrics = evaluate_split(runner, data.test)
        ref_logits = logits if ref_logits is None else ref_logits
        rows.append({"model": label, "accuracy": metrics["accuracy"], "agreement": agreement(ref_logits, logits),
                     "file_kb": path.stat().st_size / 1024, **onnx_weight_stats(path)})

    log("[5/5] benchmarking both side by side (interleaved)")
    bench = {b: benchmark([base_onnx, int8_onnx], batch=b, threads=threads, require_signature=False)
             for b in (1, 64)}
    for i, row in enumerate(rows):
        for b, res in bench.items():
            row[f"p50_ms_b{b}"] = res[i]["p50_ms"]
            row[f"speedup_b{b}"] = res[i]["speedup"]
    row_base, row_comp = rows
    summary = {
        "accuracy_drop_points": 100 * (row_base["accuracy"] - row_comp["accuracy"]),
        "size_reduction": row_base["file_kb"] / row_comp["file_kb"],
        "macs": count_macs(base.model, data.input_shape),
        "layer_sparsity": layer_sparsity(pruned),
        "seconds": time.perf_counter() - t_start,
        "warnings": [f"{m} is not faster than the baseline at batch {b}"
                     for b, res in bench.items() for m in slower_than_baseline(res)],
    }
    columns = ["model", "accuracy", "agreement", "file_kb", "weight_params", "weight_nonzero",
               "p50_ms_b1", "speedup_b1", "p50_ms_b64", "speedup_b64"]
    table_md = markdown_table(rows, columns)
    report = "\n".join([
        "# edgeslim demo report", "",
        f"seed-cnn on Fashion-MNIST, trained {epochs} epochs; pruned {sparsity:.0%} (global magnitude, "
        f"{finetune_epochs} fine-tune epoch, distilled from the baseline); static int8 (ONNX Runtime QDQ, "
        f"{calibration_samples} calibration images), run by `edgeslim.pipeline.compress` (per-stage report: "
        "pipeline/report.md). Accuracy on the 10,000 test images, measured with ONNX Runtime.", "",
        table_md, "",
        f"- accuracy drop: {summary['accuracy_drop_points']:.2f} points",
        f"- file size reduction: {summary['size_reduction']:.1f}x",
        *[f"- warning: {w}" for w in summary["warnings"]],
        f"- total time: {summary['seconds']:.0f} s", ""])
    atomic_write_text(out / "report.md", report)
    write_json(out / "report.json", {"rows": rows, "summary": summary, "bench": bench,
                                     "pipeline_report": "pipeline/report.json"})
    return {"rows": rows, "columns": columns, "summary": summary, "report": str(out / "report.md"),
            "pipeline": pipeline}


def demo_recipe(sparsity: float, finetune_epochs: int, calibration_samples: int) -> dict:
    """The demo as a recipe: global magnitude pruning with a short distilled fine-tune, then int8."""
    return {"name": "demo", "description": "demo: magnitude pruning + KD fine-tune + int8 static",
            "max_accuracy_drop": 1.0,
            "stages": [{"type": "prune", "method": "unstructured", "sparsity": sparsity, "scope": "global",
                        "finetune_epochs": finetune_epochs, "finetune_lr": 5e-4, "distill": True},
                       {"type": "quantize", "samples": calibration_samples}]}
