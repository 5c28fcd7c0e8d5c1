"""``edgeslim demo``: the whole idea in a few minutes on 2 cores.

Train seed-cnn on Fashion-MNIST, then run the compression pipeline (``compress``) on it within
a 1-point budget: structured pruning whose per-layer channel counts are chosen by measured ONNX
Runtime latency (at batch 1 and 64), a short fine-tune distilled from the baseline, and int8
static quantization kept only where it is measured faster than float; run the exported baseline
and compressed models on the simulated device (ONNX Runtime, torch-free runner) and compare
them in one table, side by side at batch 1 and 64.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from .._io import atomic_write_text, write_json


def run_demo(out: str | Path = "runs/demo", epochs: int = 4, target_latency: float = 0.7, finetune_epochs: int = 2,
             calibration_samples: int = 512, threads: int | None = None, data_dir: str | Path | None = None,
             log: Callable[[str], None] = print, progress: bool = True) -> dict:
    from ..evaluate.metrics import agreement, evaluate_split, predict_logits
    from ..evaluate.onnx_stats import onnx_weight_stats
    from ..evaluate.size import count_macs
    import onnx

    from ..data.datasets import hold_out
    from ..models.checkpoint import load_checkpoint
    from ..report import markdown_table
    from ..runtime import benchmark, load_model, slower_than_baseline
    from ..train import TrainConfig, train
    from ..train.api import load_data_for
    from .compress import compress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    log(f"[1/5] loading Fashion-MNIST and training seed-cnn for {epochs} epochs")
    data = hold_out(load_data_for("seed-cnn", "fashion-mnist", data_dir))  # as `edgeslim train` holds out
    base = train("seed-cnn", TrainConfig(epochs=epochs), data, out=out / "baseline", progress=progress)

    log(f"[2/5] compressing with the pipeline within a 1-point budget: structured pruning to {target_latency:.0%} "
        f"of the measured latency ({finetune_epochs} fine-tune epoch(s) distilled from the baseline), then int8 "
        "static quantization where it is faster")
    recipe = demo_recipe(target_latency, finetune_epochs, calibration_samples)
    shutil.rmtree(out / "pipeline", ignore_errors=True)
    pipeline = compress(out / "baseline", recipe, data, out=out / "pipeline", progress=progress).summary

    log("[3/5] collecting the exported float32 baseline and the compressed model")
    base_onnx = Path(shutil.copyfile(out / "pipeline/stages/00-original/model.onnx", out / "baseline.onnx"))
    compressed = Path(shutil.copyfile(pipeline["deployable"], out / "compressed.onnx"))
    pruned_dir = out / "pipeline/stages/01-prune"  # absent if the budget made the run skip pruning
    pruned = load_checkpoint(pruned_dir).model if pruned_dir.exists() else base.model

    log("[4/5] evaluating on the simulated device (ONNX Runtime, no torch)")
    rows = []
    ref_logits = None
    int8 = any(n.op_type == "QuantizeLinear" for n in onnx.load(str(compressed)).graph.node)
    for label, path in [("baseline float32", base_onnx), ("pruned + int8" if int8 else "pruned float32", compressed)]:
        runner = load_model(path, threads=threads, require_signature=False)  # files this demo wrote
        logits = predict_logits(runner, data.test.x)
        metrics = evaluate_split(runner, data.test)
        ref_logits = logits if ref_logits is None else ref_logits
        rows.append({"model": label, "accuracy": metrics["accuracy"], "agreement": agreement(ref_logits, logits),
                     "file_kb": path.stat().st_size / 1024, **onnx_weight_stats(path)})

    log("[5/5] benchmarking both side by side (interleaved)")
    bench = {b: benchmark([base_onnx, compressed], batch=b, threads=threads, require_signature=False)
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
        "compressed_macs": count_macs(pruned, data.input_shape),
        "seconds": time.perf_counter() - t_start,
        "warnings": [f"{m} is not faster than the baseline at batch {b}"
                     for b, res in bench.items() for m in slower_than_baseline(res)],
    }
    columns = ["model", "accuracy", "agreement", "file_kb", "weight_params", "weight_nonzero",
               "p50_ms_b1", "speedup_b1", "p50_ms_b64", "speedup_b64"]
    table_md = markdown_table(rows, columns)
    report = "\n".join([
        "# edgeslim demo report", "",
        f"seed-cnn on Fashion-MNIST, trained {epochs} epochs; structured pruning to {target_latency:.0%} of the "
        f"measured latency at batch 1 and 64 ({finetune_epochs} fine-tune epochs, distilled from the baseline), "
        f"then static int8 (ONNX Runtime QDQ, {calibration_samples} calibration images) kept only where faster, "
        "run by `edgeslim.pipeline.compress` within a 1-point budget (per-stage report: pipeline/report.md). "
        "Accuracy on the 10,000 test images, measured with ONNX Runtime.", "",
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


def demo_recipe(target_latency: float, finetune_epochs: int, calibration_samples: int) -> dict:
    """The demo as a recipe: latency-aware structured pruning with a short distilled fine-tune,
    then int8 where it is faster."""
    return {"name": "demo", "description": "demo: latency-aware structured pruning + KD fine-tune + int8 where faster",
            "max_accuracy_drop": 1.0,
            "stages": [{"type": "prune", "method": "structured", "target_latency": target_latency,
                        "timing": {"batch": [1, 64]}, "finetune": {"epochs": finetune_epochs}},
                       {"type": "quantize", "samples": calibration_samples, "sensitivity": False,
                        "keep_float_if_slower": True}]}
