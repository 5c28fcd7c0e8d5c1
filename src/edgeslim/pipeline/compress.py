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

import copy
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from .._io import (atomic_write_files, atomic_write_text, read_json, remove_stale_temps,
                   removes_new_output_on_failure, write_json)
from ..config import Result
from ..errors import ConfigError, EdgeslimError
from ..export.api import written_files
from ..models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..models.resolve import resolve_model, source_name
from ..runtime.formats import FORMATS, model_bytes
from .budget import Attempt, StageSearch, allowances, has_knob, margins, paired_drop, weakened
from .recipe import TORCH_STAGES, Recipe, load_recipe
from .stages import DEPLOY_FILE, RUNNERS, ModelState, StageContext, export_float_onnx

DEPLOYABLE_SUFFIXES = (*FORMATS, ".bin")  # every file publish_best may have written

STATE = "state.json"
BEST = "best.json"
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
    return resolve_model(source)


def _load_data(meta: dict, recipe: Recipe, data_dir: str | Path | None, data=None):
    from ..data.datasets import DataBundle, Split, hold_out, load_dataset_for

    if data is None:
        if not (recipe.dataset or meta.get("dataset")):
            raise ConfigError("the checkpoint does not record its data set; set 'dataset' in the recipe")
        data = load_dataset_for(meta, recipe.dataset, data_dir)
    elif data.val is None:
        data = hold_out(data)
    train = data.train.subset(recipe.train_samples, seed=recipe.seed) if recipe.train_samples else data.train
    test = data.test.subset(recipe.eval_samples, seed=0) if recipe.eval_samples else data.test
    val = data.val.subset(recipe.eval_samples, seed=0) if recipe.eval_samples and data.val else data.val
    return DataBundle(data.name, Split(train.x, train.y), test, data.class_names, data.preprocess, val,
                      data.validation)


def _stage_data(data):
    """The data the stages see: their fine-tunes keep the epoch that scores best on a slice of
    the training split they do not train on, so the validation split stays unseen by every choice
    the budget then judges on it (choosing epochs on it too made the validation drop optimistic:
    seed-cnn's fastest recipe measured -0.40 points on validation, -0.98 on the test split)."""
    from dataclasses import replace

    import torch

    from ..data.datasets import Split

    n = min(len(data.val), len(data.train) // 10)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    chosen, rest = order[:n], order[n:]
    return replace(data, train=Split(data.train.x[rest], data.train.y[rest]),
                   val=Split(data.train.x[chosen], data.train.y[chosen]))


def _correct(state: ModelState, split) -> list[bool]:
    """Which samples of ``split`` the stage output classifies correctly (torch, or ONNX Runtime
    for files): what the budget compares, sample by sample, against the original."""
    from ..evaluate.metrics import predict_logits
    from ..runtime import load_model

    model = state.model if state.is_torch else load_model(state.path, threads=None, require_signature=False)  # a stage's own file
    return (predict_logits(model, split.x).argmax(1) == split.y).tolist()


def measure(state: ModelState, stage_dir: Path, ctx: StageContext, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Size and MACs of a stage output (file stages inherit MACs, and for .eslim parameter counts,
    from the model they were made from); accuracy is measured by the caller on the split it judges by."""
    macs = prev["macs"] if prev else None
    from ..evaluate import count_macs, count_nonzero_params, count_params
    from ..evaluate.onnx_stats import onnx_weight_stats
    from ..models.checkpoint import WEIGHTS

    if state.is_torch:
        file = stage_dir / WEIGHTS
        macs = count_macs(state.model, ctx.input_shape)
        sizes = {"params": count_params(state.model), "nonzero_params": count_nonzero_params(state.model)}
        evaluated_with = "torch"
    else:
        file = state.path
        sizes = {k: prev[k] for k in ("params", "nonzero_params") if prev and k in prev}
        if file.suffix == ".onnx":
            stats = onnx_weight_stats(file)
            sizes = {"params": stats["weight_params"], "nonzero_params": stats["weight_nonzero"]}
        evaluated_with = FORMATS.get(file.suffix, ("onnxruntime",))[0]
    return {"file": str(file.relative_to(stage_dir.parent.parent)), "file_bytes": model_bytes(file),
            "zstd_bytes": _zstd_bytes(file), "macs": macs, "evaluated_with": evaluated_with, **sizes}


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


def _applied(state: dict) -> list[dict]:
    """The stages whose output was kept (a stage skipped to stay in budget has none)."""
    return [e for e in state["stages"] if not e.get("skipped")]


def _deployable(out: Path, entry: dict | None) -> Path:
    """The deployable file of a stage (None: the original)."""
    if entry is None:
        return out / "stages" / ORIGINAL / DEPLOY_FILE
    return out / "stages" / entry["dir"] / DEPLOY_FILE if entry["kind"] == "torch" else out / entry["metrics"]["file"]


def publish_best(out: Path, state: dict) -> Path:
    """Copy the newest in-budget result to ``OUT/model.onnx`` (or ``model.eslim``), atomically, with
    ``OUT/best.json`` saying which it is: a run killed at any moment leaves a usable model."""
    applied = _applied(state)
    entry = applied[-1] if applied else None
    src = _deployable(out, entry)
    dest = out / f"model{src.suffix}"
    # with what travels with it (an OpenVINO .bin, a .tflite/.pte metadata sidecar), renamed alike
    files = {out / ("model" + f.name[len(src.stem):]): f.read_bytes() for f in written_files(src) if f.exists()}
    atomic_write_files(files)
    for stale in out.glob("model.*"):
        if stale not in files and (stale.suffix in DEPLOYABLE_SUFFIXES or stale.name.endswith((".tflite.json",
                                                                                                ".pte.json"))):
            stale.unlink()
    write_json(out / BEST, {"file": dest.name, "from": str(src.relative_to(out)),
                            "stages_applied": [e["dir"] for e in applied],
                            "val_drop_points": entry["metrics"]["val_drop_points"] if entry else 0.0})
    return dest


def _console(progress: bool, console):
    import sys

    from rich.console import Console

    from ..report import console_width

    return console or Console(quiet=not progress, width=console_width(sys.stdout))


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
            raise ConfigError(f"{out} was started with another recipe or budget ({state['recipe']['name']}, "
                              f"max_accuracy_drop {state['recipe']['max_accuracy_drop']}); resume it with the same "
                              "ones, or choose another --out folder")
        console.print(f"resuming {out}: {len(state['stages'])} of {len(recipe.stages)} stage(s) already done")
        return state, load_checkpoint(out / "stages" / ORIGINAL)
    ckpt = _source_checkpoint(source, meta)
    recipe.check_layer_names(ckpt.model)  # before anything is written: a fixed recipe can start afresh
    save_checkpoint(ckpt.model, out / "stages" / ORIGINAL, ckpt.meta)
    state = {"recipe": recipe.model_dump(mode="json"), "recipe_hash": _recipe_hash(recipe),
             "source": source_name(source) if isinstance(source, (str, Path, Checkpoint)) else type(source).__name__,
             "baseline": None, "stages": [], "current": None, "status": "running"}
    write_json(path, state)
    return state, load_checkpoint(out / "stages" / ORIGINAL)


def _published(out: Path) -> bool:
    return (out / BEST).exists()  # publish_best: OUT/model.* is a usable model


@removes_new_output_on_failure(_published)  # a run that fails before its first model leaves no folder
def compress(model: str | Path | Checkpoint | nn.Module, recipe: str | Path | Recipe | dict, data=None, *,
             out: str | Path, resume: bool = False, max_accuracy_drop: float | None = None,
             time_budget: float | None = None, adapt: bool | None = None, data_dir: str | Path | None = None,
             meta: dict | None = None, check_budget: bool = True, progress: bool = True, console=None,
             on_stage: Callable[[int, str], None] | None = None) -> Result:
    """Run ``recipe`` (built-in name, YAML path, dict or Recipe; a bad field raises ConfigError naming
    it) on ``model`` (a checkpoint folder or any model source, a ``Checkpoint``, or an ``nn.Module``
    with ``meta``) and write everything under ``out``.

    ``max_accuracy_drop`` (points; default the recipe's) is a budget the run meets: each stage
    gets a share of it (``edgeslim.pipeline.budget``), judged on the validation split held out
    of training, and a stage that would spend more is weakened by bisection on its setting
    (sparsity, MAC / latency target, bits, width; int8 on or off), or skipped, instead of
    failing at the end (``adapt=False``: run the recipe as written). ``time_budget`` (seconds)
    stops the weakening when spent; the remaining stages then run once each. The newest
    in-budget result is always at ``out/model.onnx`` (or ``model.eslim``). The test split is
    measured once, for the original and the final model.

    Returns a Result: ``artifact`` the deployable file (``out/model.onnx`` or ``model.eslim``),
    ``summary`` the report (also written to ``out/report.json`` and ``out/report.md``), ``warnings``
    its warnings. Raises ``AccuracyBudgetExceeded`` (after writing the report) when the final model is more
    than the budget below the original on the test split, or when no stage fitted the budget,
    naming the stage that lost the most; ``check_budget=False`` only records it (the search
    does this). ``data`` (a DataBundle) replaces the data set named in the checkpoint.
    """
    recipe = load_recipe(recipe)
    if max_accuracy_drop is not None:
        recipe = recipe.model_copy(update={"max_accuracy_drop": max_accuracy_drop})
    adapt = check_budget if adapt is None else adapt
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # what an interrupted stage left half-written
    con = _console(progress, console)
    state, original = _start_state(out, recipe, model, meta, resume, con)
    bundle = _load_data(original.meta, recipe, data_dir, data)
    if bundle.val is None:
        raise ConfigError(f"{bundle.name}: no validation split to judge the accuracy budget on; hold some "
                          "training samples out (edgeslim.data.datasets.hold_out)")
    teacher = load_checkpoint(out / "stages" / ORIGINAL).model
    run = _Run(out, recipe, state, bundle, teacher, original.meta, progress, con, adapt, time_budget)
    if state["baseline"] is None:
        base_ctx = run.context(out / "stages" / ORIGINAL)
        export_float_onnx(original.model, out / "stages" / ORIGINAL / DEPLOY_FILE, base_ctx)
        original_state = ModelState(original.model)
        state["baseline"] = measure(original_state, out / "stages" / ORIGINAL, base_ctx, None)
        state["baseline"]["val_accuracy"] = _accuracy(run.baseline_correct)
        write_json(out / STATE, state)
        publish_best(out, state)
    for i in range(len(state["stages"]), len(recipe.stages)):
        if on_stage:
            on_stage(i, recipe.stages[i].type)
        run.stage(i)
    report = build_report(out, recipe, state, run.final_test_accuracy())
    state["status"] = "done"
    write_json(out / STATE, state)
    _print_summary(con, report)
    if check_budget and report["budget"]["exceeded"]:
        raise AccuracyBudgetExceeded(report["budget"]["message"], report)
    return Result(artifact=Path(report["deployable"]), summary=report, warnings=list(report["warnings"]))


def _accuracy(correct: list[bool]) -> float:
    return sum(correct) / max(len(correct), 1)


class _Run:
    """One compression run: the stages in order, each judged against its share of the budget."""

    def __init__(self, out: Path, recipe: Recipe, state: dict, data, teacher: nn.Module, meta: dict,
                 progress: bool, console, adapt: bool, time_budget: float | None):
        self.out, self.recipe, self.state, self.data = out, recipe, state, data
        self.teacher, self.meta, self.progress, self.con, self.adapt = teacher, meta, progress, console, adapt
        self.deadline = time.monotonic() + time_budget if time_budget else None
        self.allowed = allowances([s.type for s in recipe.stages], recipe.max_accuracy_drop)
        self.margins = margins(self.allowed, recipe.max_accuracy_drop)
        self.baseline_correct = _correct(ModelState(teacher), data.val)
        self.stage_data = _stage_data(data)
        applied = _applied(state)
        self.current = _load_stage(applied[-1], out) if applied else ModelState(teacher)

    @property
    def prev(self) -> dict[str, Any]:
        """Metrics of the model the next stage starts from."""
        applied = _applied(self.state)
        return applied[-1]["metrics"] if applied else self.state["baseline"]

    def context(self, stage_dir: Path) -> StageContext:
        r = self.recipe
        return StageContext(self.stage_data, self.teacher, self.meta, r.seed, self.progress, stage_dir, r.bench)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def stage(self, i: int) -> None:
        stage, n = self.recipe.stages[i], len(self.recipe.stages)
        name = _stage_dirname(i + 1, stage.type)
        self.con.rule(f"[bold cyan][{i + 1}/{n}] {stage.type}[/bold cyan]: {stage.summary()}")
        judged = self.adapt and stage.type != "export"  # an export changes no weights
        current = self.state.get("current") or {}
        done = [Attempt(**a) for a in current.get("attempts", [])] if current.get("index") == i else []
        search = StageSearch(self.allowed[i] if judged else math.inf, judged and has_knob(stage), done,
                             self.margins[i])
        while (strength := search.next_strength(self.out_of_time())) is not None:
            search.attempts.append(self._attempt(i, name, weakened(stage, strength), strength, search))
            self.state["current"] = {"index": i, "attempts": [a.as_dict() for a in search.attempts]}
            write_json(self.out / STATE, self.state)
        self._settle(i, name, stage, search)

    def _attempt(self, i: int, name: str, stage, strength: float, search: StageSearch) -> Attempt:
        folder = self.out / "stages" / f"{name}.try-{len(search.attempts)}"
        shutil.rmtree(folder, ignore_errors=True)  # a try interrupted before it was recorded
        folder.mkdir(parents=True)
        ctx = self.context(folder)
        t0 = time.perf_counter()
        # each try starts from the same input: some stages (weight sharing, recovery distillation)
        # change the model they are given in place
        start = ModelState(copy.deepcopy(self.current.model)) if self.current.is_torch else self.current
        result = RUNNERS[stage.type](stage, start, ctx)
        record = {"stage": stage.type, "strength": strength, **stage.model_dump(mode="json", exclude={"type"})}
        result = _save_stage(result, folder, ctx, record)
        drop, stderr = paired_drop(self.baseline_correct, _correct(result, self.data.val))
        attempt = Attempt(strength, drop, stderr, search.judge(drop, stderr), time.perf_counter() - t0,
                          stage.summary(), str(folder.relative_to(self.out)))
        verdict = "within" if attempt.passed else "over"
        allowed = f"{search.allowed:.2f}" if math.isfinite(search.allowed) else "not judged"
        self.con.print(f"  strength {strength:.3g} ({attempt.setting}): validation drop {drop:+.2f} +- {stderr:.2f} "
                       f"points, {verdict} the allowance ({allowed}), {attempt.seconds:.1f} s")
        (self.out / attempt.folder / "info.json").write_text(json.dumps(_jsonable(result.info)))
        return attempt

    def _settle(self, i: int, name: str, stage, search: StageSearch) -> None:
        """Keep the strongest passing attempt as the stage's output (or skip the stage), drop the rest."""
        best = search.best
        stage_dir = self.out / "stages" / name
        kept = self.out / best.folder if best is not None else None
        if kept is None or kept.exists():
            shutil.rmtree(stage_dir, ignore_errors=True)
            if kept is not None:
                os.replace(kept, stage_dir)
        elif not stage_dir.exists():  # neither where the try was nor where it went
            raise EdgeslimError(f"{kept}: the kept output of stage {name} is missing; run again in a new folder")
        # else: a crash came between that rename and the state write, which is done now
        for a in search.attempts:
            shutil.rmtree(self.out / a.folder, ignore_errors=True)
        entry: dict[str, Any] = {"index": i + 1, "dir": name, "type": stage.type,
                                 "attempts": [a.as_dict() for a in search.attempts],
                                 "allowed_drop_points": search.allowed if math.isfinite(search.allowed) else None}
        if best is None:
            least = min(search.attempts, key=lambda a: a.drop)
            entry.update(skipped=True, summary=f"skipped: {least.setting} lost {least.drop:.2f} points",
                         kind=None, metrics=dict(self.prev), info={})
            self.con.print(f"  [yellow]skipped: even its mildest setting tried ({least.setting}) lost "
                           f"{least.drop:.2f} points of {search.allowed:.2f} allowed[/yellow]")
        else:
            ctx = self.context(stage_dir)
            self.current = _reload(stage_dir, stage.type)
            metrics = measure(self.current, stage_dir, ctx, self.prev)
            metrics.update(val_accuracy=_accuracy(self.baseline_correct) - best.drop / 100, val_drop_points=best.drop,
                           val_drop_stderr=best.stderr, seconds=sum(a.seconds for a in search.attempts),
                           eval_samples=len(self.data.val))
            info = json.loads((stage_dir / "info.json").read_text())
            entry.update(summary=best.setting, strength=best.strength, kind="torch" if self.current.is_torch else "file",
                         metrics=metrics, info=info)
            self.con.print(f"  kept strength {best.strength:.3g}: validation accuracy {metrics['val_accuracy']:.2%} "
                           f"({-best.drop:+.2f} points), {metrics['file_bytes'] / 1024:,.1f} KB, "
                           f"{metrics['macs']:,} MACs")
        self.state["stages"].append(entry)
        self.state["current"] = None
        write_json(self.out / STATE, self.state)
        publish_best(self.out, self.state)

    def final_test_accuracy(self) -> dict[str, float]:
        """The test split, measured once: the original and the final model (``self.current``, the
        output of the last stage kept, as loaded from disk)."""
        return {"original": _accuracy(_correct(ModelState(self.teacher), self.data.test)),
                "final": _accuracy(_correct(self.current, self.data.test)), "samples": len(self.data.test)}


def _reload(stage_dir: Path, stage_type: str) -> ModelState:
    """The kept attempt, from its final place on disk."""
    if stage_type in TORCH_STAGES:
        return ModelState(load_checkpoint(stage_dir).model)
    # an export stage's own format first: converting to OpenVINO may leave the ONNX it came from
    for name in ("model.eslim", "model.xml", "model.tflite", "model.pte", DEPLOY_FILE):
        if (stage_dir / name).exists():
            return ModelState(path=stage_dir / name)
    raise EdgeslimError(f"{stage_dir}: the stage output is missing")


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _latency_files(out: Path, state: dict, which: str) -> list[tuple[str, Path]]:
    applied = _applied(state)
    entries = applied if which == "all" else applied[-1:]
    return [("original", _deployable(out, None))] + [(e["dir"], _deployable(out, e)) for e in entries]


def budget_verdict(test: dict[str, float], stages: list[dict], budget: float) -> dict[str, Any]:
    """Did the final model stay within ``budget`` points on the test split, and if not, which
    stage lost the most (by the validation drops the run judged them on)."""
    applied = [e for e in stages if not e.get("skipped")]
    final_drop = 100 * (test["original"] - test["final"])
    lossy = [e for e in stages if e["type"] != "export"]
    nothing_fits = bool(lossy) and all(e.get("skipped") for e in lossy)
    exceeded = final_drop > budget + 1e-9 or nothing_fits
    verdict = {"max_accuracy_drop": budget, "final_drop_points": final_drop, "exceeded": exceeded, "message": "",
               "skipped": [e["dir"] for e in stages if e.get("skipped")]}
    if nothing_fits:
        tried = [(a, e) for e in lossy for a in e["attempts"]]
        least, where = min(tried, key=lambda t: t[0]["drop"])
        verdict["culprit"] = where["dir"]
        verdict["message"] = (
            f"accuracy budget exceeded: no stage fits a budget of {budget:g} points; the least damaging setting "
            f"tried was {where['dir']} at strength {least['strength']:.3g} ({least['setting']}), which lost "
            f"{least['drop']:.2f} points on the validation split. Allow a larger drop or more fine-tuning.")
    elif exceeded:
        prev, losses = 0.0, []
        for e in applied:
            losses.append((e["metrics"]["val_drop_points"] - prev, e))
            prev = e["metrics"]["val_drop_points"]
        worst_loss, worst = max(((d, e) for d, e in losses if e["type"] != "export"), default=losses[-1],
                                key=lambda t: t[0])
        per_stage = ", ".join(f"{e['dir']} {-d:+.2f}" for d, e in losses)
        verdict["culprit"] = worst["dir"]
        verdict["message"] = (
            f"accuracy budget exceeded: the compressed model scores {test['final']:.2%} on the test split, "
            f"{final_drop:.2f} points below the original {test['original']:.2%} (budget {budget:g} points). "
            f"Stage {worst['dir']} ({worst['summary']}) lost the most on the validation split: {worst_loss:.2f} "
            f"points. Per stage (validation): {per_stage}. Use a milder setting for that stage or more fine-tuning.")
    return verdict


def build_report(out: Path, recipe: Recipe, state: dict, test: dict[str, float]) -> dict[str, Any]:
    """Benchmark every stage's file side by side and write report.json + report.md."""
    from ..report.pipeline import compress_report_markdown, plot_stages
    from ..runtime import benchmark

    b = recipe.bench
    files = _latency_files(out, state, b.stages)
    bench = benchmark([p for _, p in files], batch=b.batch[0], threads=b.threads, rounds=b.rounds, warmup=b.warmup,
                      require_signature=False)  # the stages' own files
    latency = {name: r for (name, _), r in zip(files, bench)}
    base = state["baseline"]
    rows = [_row("original", "input model", base, latency.get("original"))]
    for e in _applied(state):
        rows.append(_row(e["dir"], e["summary"], e["metrics"], latency.get(e["dir"])))
    rows[0]["accuracy"], rows[-1]["accuracy"] = test["original"], test["final"]
    rows[-1]["drop_points"] = 100 * (test["original"] - test["final"])
    rows[0]["drop_points"] = 0.0
    _finish_speedups(rows)
    final = rows[-1]
    warnings = [f"{e['dir']}: {e['info']['decision']}" for e in state["stages"] if e.get("info", {}).get("decision")]
    warnings += [f"{e['dir']} was skipped to stay within the budget ({e['summary']})"
                 for e in state["stages"] if e.get("skipped")]
    if len(rows) > 1 and final.get("speedup") is not None and not b.faster(final["speedup"]):
        warnings.append(f"the compressed model is not faster than the original: p50 {final['p50_ms']:.3f} ms vs "
                        f"{rows[0]['p50_ms']:.3f} ms at batch {b.batch[0]} ({final['speedup']:.2f}x, a gain under "
                        f"{b.margin - 1:.0%} is noise). Structured pruning removes dense compute; unstructured "
                        "zeros, shared weights and int8 kernels on a small model often do not speed up ONNX Runtime "
                        "on a CPU")
    report = {"recipe": recipe.name, "description": recipe.description, "folder": str(out), "rows": rows,
              "final": final, "baseline": rows[0], "test": test,
              "budget": budget_verdict(test, state["stages"], recipe.max_accuracy_drop),
              "deployable": str(out / read_json(out / BEST)["file"]),
              "size_reduction": rows[0]["file_bytes"] / final["file_bytes"],
              "zstd_size_reduction": rows[0]["file_bytes"] / final["zstd_bytes"],
              "warnings": warnings, "bench": {"batch": b.batch[0], "threads": b.threads, "rounds": b.rounds},
              "stages": state["stages"]}
    write_json(out / "report.json", _jsonable(report))
    atomic_write_text(out / "report.md", compress_report_markdown(report))
    plot_stages(rows, out / "report.png", f"recipe {recipe.name}")
    return report


def _row(name: str, summary: str, m: dict, lat: dict | None) -> dict[str, Any]:
    # "accuracy" / "drop_points" (test split) are filled in for the original and the final row only
    row = {"stage": name, "what": summary, "val_accuracy": m["val_accuracy"],
           "val_drop_points": m.get("val_drop_points", 0.0), "accuracy": None, "drop_points": None,
           "evaluated_with": m["evaluated_with"], "file_bytes": m["file_bytes"], "zstd_bytes": m["zstd_bytes"],
           "params": m.get("params"), "nonzero_params": m.get("nonzero_params"), "macs": m["macs"], "file": m["file"]}
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
    from ..report.pipeline import TERMINAL_COLUMNS, TERMINAL_NARROW

    con.print(rich_table(report["rows"], TERMINAL_COLUMNS, title=f"recipe {report['recipe']}",
                         narrow=TERMINAL_NARROW))
    con.print(f"{report['size_reduction']:.1f}x smaller file ({report['zstd_size_reduction']:.1f}x after zstd); "
              f"report: {Path(report['folder']) / 'report.md'}")
    for w in report["warnings"]:
        con.print(f"[yellow]warning: {w}[/yellow]")
