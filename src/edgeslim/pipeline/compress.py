"""``edgeslim compress``: run a recipe's stages in order, checkpoint after each one, and
report every stage's measured accuracy, size, MACs and latency.

Layout of the output folder ``C/``::

    C/state.json                  recipe, baseline and finished stages (written after each stage)
    C/stages/00-original/         the input model (checkpoint + model.onnx: the latency baseline)
    C/stages/01-prune/            torch stages: weights.safetensors + model.json (+ model.onnx for timing)
    C/stages/03-quantize/model.onnx   file stages: the deployable file
    C/report.md, C/report.json    the final report

Every stage continues from the *saved* output of the previous one, so a run resumed with
``resume=True`` computes exactly what an uninterrupted run computes.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from .._io import atomic_write_text, read_json, remove_stale_temps, write_json
from ..errors import ConfigError, EdgeslimError
from ..models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..runtime.bench import FASTER_MARGIN
from .recipe import Recipe, load_recipe
from .stages import DEPLOY_FILE, RUNNERS, ModelState, StageContext, export_float_onnx

STATE = "state.json"
ORIGINAL = "00-original"


class AccuracyBudgetExceeded(EdgeslimError):
    """The compressed model lost more accuracy than the recipe allows."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


def _recipe_hash(recipe: Recipe) -> str:
    return hashlib.sha256(json.dumps(recipe.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def _stage_dirname(i: int, stage_type: str) -> str:
    return f"{i:02d}-{stage_type}"


def _zstd_bytes(path: Path) -> int:
    """Bytes after a generic compressor: what unstructured zeros and shared weights save on
    disk or over the network even before a dedicated sparse format."""
    import zstandard

    return len(zstandard.ZstdCompressor(level=10).compress(path.read_bytes()))


def _source_checkpoint(source: str | Path | Checkpoint | nn.Module, meta: dict | None) -> Checkpoint:
    if isinstance(source, Checkpoint):
        return source
    if isinstance(source, nn.Module):
        if not meta or "input_shape" not in meta:
            raise ConfigError("compressing an nn.Module needs meta= with input_shape, preprocess, class_names and "
                              "dataset (e.g. edgeslim.train.api.checkpoint_meta(data)); or pass a checkpoint folder")
        return Checkpoint(source, dict(meta))
    return load_checkpoint(source)


def _load_data(meta: dict, recipe: Recipe, data_dir: str | Path | None, data=None):
    from ..data.datasets import DataBundle, Split, load_dataset_for

    if data is None:
        if not (recipe.dataset or meta.get("dataset")):
            raise ConfigError("the checkpoint does not record its data set; set 'dataset' in the recipe")
        data = load_dataset_for(meta, recipe.dataset, data_dir)
    train = data.train.subset(recipe.train_samples, seed=recipe.seed) if recipe.train_samples else data.train
    test = data.test.subset(recipe.eval_samples, seed=0) if recipe.eval_samples else data.test
    return DataBundle(data.name, Split(train.x, train.y), test, data.class_names, data.preprocess)


def measure(state: ModelState, stage_dir: Path, ctx: StageContext, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Accuracy (torch for torch stages, ONNX Runtime for files), size and MACs of a stage output.
    File stages inherit MACs (and, for .eslim, parameter counts) from the model they were made from."""
    macs = prev["macs"] if prev else None
    from ..evaluate import count_macs, count_nonzero_params, count_params, evaluate_split
    from ..evaluate.onnx_stats import onnx_weight_stats
    from ..models.checkpoint import WEIGHTS
    from ..runtime import load_model

    if state.is_torch:
        file = stage_dir / WEIGHTS
        acc = evaluate_split(state.model, ctx.data.test)["accuracy"]
        macs = count_macs(state.model, ctx.input_shape)
        sizes = {"params": count_params(state.model), "nonzero_params": count_nonzero_params(state.model)}
        evaluated_with = "torch"
    else:
        file = state.path
        acc = evaluate_split(load_model(file, threads=None), ctx.data.test)["accuracy"]
        sizes = {k: prev[k] for k in ("params", "nonzero_params") if prev and k in prev}
        if file.suffix == ".onnx":
            stats = onnx_weight_stats(file)
            sizes = {"params": stats["weight_params"], "nonzero_params": stats["weight_nonzero"]}
        evaluated_with = "onnxruntime"
    return {"accuracy": acc, "file": str(file.relative_to(stage_dir.parent.parent)), "file_bytes": file.stat().st_size,
            "zstd_bytes": _zstd_bytes(file), "macs": macs, "evaluated_with": evaluated_with,
            "eval_samples": len(ctx.data.test), **sizes}


def _save_stage(state: ModelState, stage_dir: Path, ctx: StageContext, record: dict) -> ModelState:
    """Persist a stage's output and reload it, so later stages start from what is on disk."""
    if not state.is_torch:
        return state
    meta = {**ctx.meta, "compression": ctx.meta.get("compression", []) + [record]}
    save_checkpoint(state.model, stage_dir, meta)
    export_float_onnx(state.model, stage_dir / DEPLOY_FILE, ctx)  # the file latency is measured on
    return ModelState(load_checkpoint(stage_dir).model, info=state.info)


def _load_stage(entry: dict, out: Path) -> ModelState:
    stage_dir = out / "stages" / entry["dir"]
    if entry["kind"] == "torch":
        return ModelState(load_checkpoint(stage_dir).model)
    return ModelState(path=out / entry["metrics"]["file"])


def _console(progress: bool, console):
    from rich.console import Console

    import sys

    # wide enough for the stage table when output goes to a file or a CI log
    return console or Console(quiet=not progress, width=None if sys.stdout.isatty() else 160)


def _read_state(path: Path) -> dict:
    """state.json of an earlier run; a truncated or hand-edited one is a clear error."""
    try:
        state = read_json(path)
        if not (isinstance(state, dict) and isinstance(state.get("stages"), list) and "recipe_hash" in state):
            raise ValueError("missing 'stages' or 'recipe_hash'")
        return state
    except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"the run folder {path.parent} is damaged: {path.name} cannot be read ({e}); delete "
                          "the folder (or choose another --out) and run compress again") from None


def _start_state(out: Path, recipe: Recipe, source, meta, resume: bool, console) -> tuple[dict, Checkpoint]:
    path = out / STATE
    if path.exists():
        state = _read_state(path)
        if not resume:
            raise ConfigError(f"{out} already holds a compression run ({len(state['stages'])} stage(s) done); "
                              "pass --resume to continue it, or choose another --out folder")
        if state["recipe_hash"] != _recipe_hash(recipe):
            raise ConfigError(f"{out} was started with another recipe ({state['recipe']['name']}); resume it with "
                              "the same recipe, or choose another --out folder")
        console.print(f"resuming {out}: {len(state['stages'])} of {len(recipe.stages)} stage(s) already done")
        return state, load_checkpoint(out / "stages" / ORIGINAL)
    ckpt = _source_checkpoint(source, meta)
    recipe.check_layer_names(ckpt.model)  # before anything is written: a fixed recipe can start afresh
    save_checkpoint(ckpt.model, out / "stages" / ORIGINAL, ckpt.meta)
    state = {"recipe": recipe.model_dump(mode="json"), "recipe_hash": _recipe_hash(recipe),
             "source": str(source) if isinstance(source, (str, Path)) else type(source).__name__,
             "baseline": None, "stages": [], "status": "running"}
    write_json(path, state)
    return state, load_checkpoint(out / "stages" / ORIGINAL)


def compress(checkpoint_or_model: str | Path | Checkpoint | nn.Module, recipe: str | Path | Recipe | dict,
             out: str | Path, resume: bool = False, *, data_dir: str | Path | None = None, data=None,
             meta: dict | None = None, check_budget: bool = True, progress: bool = True, console=None,
             on_stage: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    """Run ``recipe`` (built-in name, YAML path, dict or Recipe) on a checkpoint folder (or a
    ``Checkpoint``, or an ``nn.Module`` with ``meta``) and write everything under ``out``.

    Returns the report dict (also written to ``out/report.json`` and ``out/report.md``).
    Raises ``AccuracyBudgetExceeded`` (after writing the report) when the final model is more
    than ``recipe.max_accuracy_drop`` points below the original, naming the stage that lost it;
    ``check_budget=False`` only records it (the search does this). ``data`` (a DataBundle)
    replaces the data set named in the checkpoint.
    """
    from ..evaluate import evaluate_split

    recipe = load_recipe(recipe)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # what an interrupted stage left half-written
    con = _console(progress, console)
    state, original = _start_state(out, recipe, checkpoint_or_model, meta, resume, con)
    bundle = _load_data(original.meta, recipe, data_dir, data)
    teacher = load_checkpoint(out / "stages" / ORIGINAL).model
    base_ctx = StageContext(bundle, teacher, original.meta, recipe.seed, progress, out / "stages" / ORIGINAL,
                            recipe.bench)
    if state["baseline"] is None:
        export_float_onnx(original.model, out / "stages" / ORIGINAL / DEPLOY_FILE, base_ctx)
        state["baseline"] = measure(ModelState(original.model), out / "stages" / ORIGINAL, base_ctx, None)
        write_json(out / STATE, state)
    base_acc = state["baseline"]["accuracy"]
    current = _load_stage(state["stages"][-1], out) if state["stages"] else ModelState(original.model)
    prev = state["stages"][-1]["metrics"] if state["stages"] else state["baseline"]
    n = len(recipe.stages)
    for i in range(len(state["stages"]), n):
        stage = recipe.stages[i]
        name = _stage_dirname(i + 1, stage.type)
        stage_dir = out / "stages" / name
        stage_dir.mkdir(parents=True, exist_ok=True)
        con.rule(f"[bold cyan][{i + 1}/{n}] {stage.type}[/bold cyan]: {stage.summary()}")
        if on_stage:
            on_stage(i, stage.type)
        ctx = StageContext(bundle, teacher, original.meta, recipe.seed, progress, stage_dir, recipe.bench)
        t0 = time.perf_counter()
        current = RUNNERS[stage.type](stage, current, ctx)
        record = {"stage": stage.type, **stage.model_dump(mode="json", exclude={"type"})}
        current = _save_stage(current, stage_dir, ctx, record)
        metrics = measure(current, stage_dir, ctx, prev)
        prev = metrics
        metrics.update(seconds=time.perf_counter() - t0, drop_points=100 * (base_acc - metrics["accuracy"]))
        state["stages"].append({"index": i + 1, "dir": name, "type": stage.type, "summary": stage.summary(),
                                "kind": "torch" if current.is_torch else "file", "metrics": metrics,
                                "info": _jsonable(current.info)})
        write_json(out / STATE, state)
        con.print(f"  accuracy {metrics['accuracy']:.2%} ({-metrics['drop_points']:+.2f} points, "
                  f"{metrics['evaluated_with']}), {metrics['file_bytes'] / 1024:,.1f} KB, "
                  f"{metrics['macs']:,} MACs, {metrics['seconds']:.1f} s")
    report = build_report(out, recipe, state)
    state["status"] = "done"
    write_json(out / STATE, state)
    _print_summary(con, report)
    if check_budget and report["budget"]["exceeded"]:
        raise AccuracyBudgetExceeded(report["budget"]["message"], report)
    return report


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _latency_files(out: Path, state: dict, which: str) -> list[tuple[str, Path]]:
    files = [("original", out / "stages" / ORIGINAL / DEPLOY_FILE)]
    entries = state["stages"] if which == "all" else state["stages"][-1:]
    for e in entries:
        d = out / "stages" / e["dir"]
        files.append((e["dir"], d / DEPLOY_FILE if e["kind"] == "torch" else out / e["metrics"]["file"]))
    return files


def budget_verdict(base_acc: float, stages: list[dict], budget: float) -> dict[str, Any]:
    """Did the final model stay within ``budget`` points, and if not, which stage lost it."""
    final_drop = stages[-1]["metrics"]["drop_points"] if stages else 0.0
    exceeded = final_drop > budget + 1e-9
    verdict = {"max_accuracy_drop": budget, "final_drop_points": final_drop, "exceeded": exceeded, "message": ""}
    if exceeded:
        prev, losses = 0.0, []
        for e in stages:
            losses.append((e["metrics"]["drop_points"] - prev, e))
            prev = e["metrics"]["drop_points"]
        worst_loss, worst = max(losses, key=lambda t: t[0])
        first = next(e for e in stages if e["metrics"]["drop_points"] > budget)
        per_stage = ", ".join(f"{e['dir']} {-d:+.2f}" for d, e in losses)
        verdict["culprit"] = worst["dir"]
        verdict["message"] = (
            f"accuracy budget exceeded: the compressed model scores {stages[-1]['metrics']['accuracy']:.2%}, "
            f"{final_drop:.2f} points below the original {base_acc:.2%} (budget {budget:g} points). "
            f"Stage {worst['dir']} ({worst['summary']}) lost the most: {worst_loss:.2f} points; the budget was "
            f"first exceeded after {first['dir']}. Per stage: {per_stage}. Use a milder setting for that stage "
            "or more fine-tuning.")
    return verdict


def build_report(out: Path, recipe: Recipe, state: dict) -> dict[str, Any]:
    """Benchmark every stage's file side by side and write report.json + report.md."""
    from ..report.pipeline import compress_report_markdown, plot_stages
    from ..runtime import benchmark

    b = recipe.bench
    files = _latency_files(out, state, b.stages)
    bench = benchmark([p for _, p in files], batch=b.batch, threads=b.threads, rounds=b.rounds, warmup=b.warmup)
    latency = {name: r for (name, _), r in zip(files, bench)}
    base = state["baseline"]
    rows = [_row("original", "input model", base, base, latency.get("original"))]
    for e in state["stages"]:
        rows.append(_row(e["dir"], e["summary"], e["metrics"], base, latency.get(e["dir"])))
    _finish_speedups(rows)
    final = rows[-1]
    warnings = [f"{e['dir']}: {e['info']['decision']}" for e in state["stages"] if e.get("info", {}).get("decision")]
    if len(rows) > 1 and final.get("speedup") is not None and final["speedup"] < FASTER_MARGIN:
        warnings.append(f"the compressed model is not faster than the original: p50 {final['p50_ms']:.3f} ms vs "
                        f"{rows[0]['p50_ms']:.3f} ms at batch {b.batch} ({final['speedup']:.2f}x, a gain under "
                        f"{FASTER_MARGIN - 1:.0%} is noise). Structured pruning removes dense compute; unstructured "
                        "zeros, shared weights and int8 kernels on a small model often do not speed up ONNX Runtime "
                        "on a CPU")
    report = {"recipe": recipe.name, "description": recipe.description, "folder": str(out), "rows": rows,
              "final": final, "baseline": rows[0], "budget": budget_verdict(base["accuracy"], state["stages"],
                                                                               recipe.max_accuracy_drop),
              "size_reduction": rows[0]["file_bytes"] / final["file_bytes"],
              "zstd_size_reduction": rows[0]["file_bytes"] / final["zstd_bytes"],
              "warnings": warnings, "bench": {"batch": b.batch, "threads": b.threads, "rounds": b.rounds},
              "stages": state["stages"]}
    write_json(out / "report.json", _jsonable(report))
    atomic_write_text(out / "report.md", compress_report_markdown(report))
    plot_stages(rows, out / "report.png", f"recipe {recipe.name}")
    return report


def _row(name: str, summary: str, m: dict, base: dict, lat: dict | None) -> dict[str, Any]:
    row = {"stage": name, "what": summary, "accuracy": m["accuracy"],
           "drop_points": 100 * (base["accuracy"] - m["accuracy"]), "evaluated_with": m["evaluated_with"],
           "file_bytes": m["file_bytes"], "zstd_bytes": m["zstd_bytes"], "params": m.get("params"),
           "nonzero_params": m.get("nonzero_params"), "macs": m["macs"], "file": m["file"]}
    if lat:
        row.update(p50_ms=lat["p50_ms"], p90_ms=lat["p90_ms"], speedup=None)
    return row


def _finish_speedups(rows: list[dict]) -> None:
    base = rows[0].get("p50_ms")
    for r in rows:
        if base and r.get("p50_ms"):
            r["speedup"] = base / r["p50_ms"]


def _print_summary(con, report: dict) -> None:
    from ..report import rich_table
    from ..report.pipeline import TERMINAL_COLUMNS

    con.print(rich_table(report["rows"], TERMINAL_COLUMNS, title=f"recipe {report['recipe']}"))
    con.print(f"{report['size_reduction']:.1f}x smaller file ({report['zstd_size_reduction']:.1f}x after zstd); "
              f"report: {Path(report['folder']) / 'report.md'}")
    for w in report["warnings"]:
        con.print(f"[yellow]warning: {w}[/yellow]")
