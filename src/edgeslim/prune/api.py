"""``edgeslim.prune(model, config, data=...) -> Result``: one entry point for every method
(``Unstructured``, ``Structured``, ``NM``), and ``prune_checkpoint`` behind ``edgeslim prune``."""
from __future__ import annotations

import copy
import math
from dataclasses import replace
import time
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from ..config import Result
from ..errors import ConfigError
from ..models.checkpoint import Checkpoint
from ..evaluate.metrics import evaluate_split
from ..evaluate.size import count_macs, count_nonzero_params, count_params
from ..train.loop import LossFn, TrainConfig, fit
from ._data import iter_batches
from .config import NM, Structured, Unstructured, prune_config
from .nm import nm_compatible, nm_mask
from .schedule import cubic_steps
from .sensitivity import allocate_sparsity, sensitivity_analysis
from .structured import StructuredResult, prune_structured
from .unstructured import (apply_masks, current_masks, lamp_scores, layer_sparsity, magnitude_scores,
                           make_permanent, masks_from_scores, targets_of, taylor_scores, weight_sparsity)


def _splits(data: Any) -> tuple[Any, Any]:
    """(train, test) from a DataBundle; a bare Split serves for training only."""
    if data is None:
        return None, None
    if hasattr(data, "train"):
        return data.train, data.test
    return data, None


PruneConfig = Unstructured | Structured | NM


def _finetune_config(config: PruneConfig, trained_with: dict | None, **extra: Any) -> TrainConfig:
    from ..train.api import finetune_config

    ft = config.finetune
    settings = {"epochs": ft.epochs, "lr": ft.lr, "batch_size": ft.batch_size, "seed": config.seed,
                **({"max_steps": ft.max_steps} if ft.max_steps else {}), **extra}
    return finetune_config(trained_with, ft.augment, **settings)


def _stats(model: nn.Module, shape: tuple[int, ...], test: Any) -> dict[str, Any]:
    out = {"params": count_params(model), "nonzero_params": count_nonzero_params(model),
           "weight_sparsity": weight_sparsity(model), "macs": count_macs(model, shape)}
    if test is not None:
        out["accuracy"] = evaluate_split(model, test)["accuracy"]
    return out


UNRECOVERED_DROP_POINTS = 1.0  # above this, a prune with no fine-tuning says how to recover


def _lost_unrecovered(summary: dict, config: PruneConfig, test) -> bool:
    """A trained model (twice chance accuracy or better: an untrained one has nothing to lose) that
    lost more than UNRECOVERED_DROP_POINTS with no fine-tuning."""
    if config.finetune.epochs or summary.get("accuracy_drop_points", 0) <= UNRECOVERED_DROP_POINTS:
        return False
    chance = 1 / max(int(test.y.unique().numel()), 1)
    return summary["before"]["accuracy"] >= 2 * chance


def prune(model: nn.Module | Checkpoint, config: PruneConfig | dict | None = None, data: Any = None, *,
          input_shape: tuple[int, ...] | None = None, loss_fn: LossFn | None = None,
          finetune_loss_fn: LossFn | None = None, progress: bool = False,
          log: Callable[[str], None] | None = None) -> Result:
    """Prune a copy of ``model`` (the input stays untouched); ``Result.model`` is the pruned one.

    ``config`` is an ``Unstructured``, ``Structured`` or ``NM`` (or a dict whose ``method`` picks
    one; None: ``Unstructured()``). ``data`` is a ``DataBundle`` (train split for calibration and
    fine-tuning, test split for the accuracy in the summary) or a ``Split``; ``input_shape`` (one
    sample's) is needed without data. Masks are folded into plain tensors before returning. ``loss_fn(model, x, y) -> (loss, logits)``
    drives Taylor saliency and fine-tuning; ``finetune_loss_fn`` overrides it for
    fine-tuning only. By default (``config.distill``) fine-tuning distils from the unpruned
    model, repeats the augmentation and optimiser the model was trained with (a ``Checkpoint``
    records them; a bare module: none) and ends with the weights of the epoch that scored best on
    ``data.val`` (held out of training) once the final sparsity is reached. ``summary`` holds the
    per-layer sparsity, params / non-zeros / MACs / accuracy before and after, and the schedule.
    """
    meta: dict[str, Any] = {}
    if isinstance(model, Checkpoint):
        model, meta = model.model, model.meta
    config = prune_config(config)
    config.check_against(model, data)
    train, test = _splits(data)
    shape = tuple(input_shape or (tuple(train.x.shape[1:]) if train is not None else ()))
    if not shape:
        raise ConfigError("input_shape is needed when no data is given (e.g. (1, 32, 32))")
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    work = copy.deepcopy(model)
    if finetune_loss_fn is None and config.finetune.distill and config.finetune.epochs:
        from ..distill import kd_loss_fn

        finetune_loss_fn = kd_loss_fn(model, config.finetune.temperature, config.finetune.alpha, seed=config.seed)
    if finetune_loss_fn is not None:
        loss_fn = _TwoLosses(loss_fn, finetune_loss_fn)
    recovery = _Recovery(data, meta.get("train_config"))
    before = _stats(work, shape, test)
    log(f"pruning ({config.method}, {config.criterion}, {config.schedule})")
    if isinstance(config, Structured):
        work, details = _structured(work, config, recovery, shape, loss_fn, progress, log)
    elif isinstance(config, NM):
        details = _nm(work, config, recovery, loss_fn, progress)
    else:
        details = _unstructured(work, config, recovery, loss_fn, progress)
    make_permanent(work)
    work.eval()
    after = _stats(work, shape, test)
    summary = {"config": config.model_dump(), "input_shape": list(shape), "before": before, "after": after,
               "layer_sparsity": layer_sparsity(work), "seconds": time.perf_counter() - t0, **details}
    if "accuracy" in before:
        summary["accuracy_drop_points"] = 100 * (before["accuracy"] - after["accuracy"])
    if isinstance(config, Structured) and config.measure_speed:
        summary.update(_speed_check(model, work, shape, config, log))
    if _lost_unrecovered(summary, config, test):
        summary.setdefault("warnings", []).append(
            f"accuracy fell {summary['accuracy_drop_points']:.1f} points and nothing was fine-tuned; recover with "
            "finetune.epochs (e.g. --finetune-epochs 8)")
    return Result(model=work, summary=summary, warnings=summary.get("warnings", []))


def _speed_check(original: nn.Module, pruned: nn.Module, shape: tuple[int, ...], config: Structured,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Structured pruning is done to run faster: measure it at every ``timing.batch``, and say so
    where it is not. A failure to export is reported, not raised, so the pruned model is not lost."""
    from .latency import measured_speedup

    try:
        speeds = measured_speedup(original, pruned, shape, config.timing.batch, config.timing.threads)
    except Exception as e:  # noqa: BLE001 - any export/runtime failure is reported the same way
        return {"warnings": [f"could not time the pruned model on ONNX Runtime ({type(e).__name__}: {e}); "
                             "`edgeslim export` will hit the same problem"]}
    warnings = []
    for speed in speeds:
        log(f"ONNX Runtime at batch {speed['batch']}: {speed['pruned_p50_ms']:.4f} ms vs "
            f"{speed['original_p50_ms']:.4f} ms dense ({speed['speedup']:.2f}x)")
        if not config.timing.faster(speed["speedup"]):
            warnings.append(
                f"the pruned model is not faster on ONNX Runtime: p50 {speed['pruned_p50_ms']:.4f} ms vs "
                f"{speed['original_p50_ms']:.4f} ms at batch {speed['batch']} ({speed['speedup']:.2f}x). Its CPU "
                "convolutions compute channels in blocks of 8 or 16, so fewer channels do not always mean less "
                "time: use the latency layout (channel counts chosen by measuring ONNX Runtime) or round_to=8")
    return {"speed": speeds, **({"warnings": warnings} if warnings else {})}


class _TwoLosses:
    """Calibration loss (saliency) and fine-tuning loss travelling together."""

    def __init__(self, calibration: LossFn | None, finetune: LossFn):
        self.calibration, self.finetune = calibration, finetune

    def __call__(self, model, x, y):
        from ._data import cross_entropy

        return (self.calibration or cross_entropy)(model, x, y)


class _Recovery:
    """What every fine-tune of one prune call shares: the data (and its held-out split) and how the
    original model was trained."""

    def __init__(self, data: Any, trained_with: dict | None):
        self.train, _ = _splits(data)
        self.test = None  # fine-tuning never sees it
        self.val = getattr(data, "val", None)
        self.trained_with = trained_with


def _finetune(model: nn.Module, config: PruneConfig, data: Any, loss_fn: LossFn | None, progress: bool,
              on_step: Callable[[int], None] | None = None, best_after_step: int = 0, **extra: Any) -> list[dict]:
    """Fine-tune ``model``; ``data`` is a _Recovery (train + val split, the original's training)."""
    loss_fn = loss_fn.finetune if isinstance(loss_fn, _TwoLosses) else loss_fn
    return fit(model, data.train, _finetune_config(config, data.trained_with, **extra), loss_fn=loss_fn,
               val=data.val, progress=progress, description="fine-tune", on_step=on_step,
               best_after_step=best_after_step)


def _unstructured(model: nn.Module, config: Unstructured, data: Any, loss_fn: LossFn | None,
                  progress: bool) -> dict[str, Any]:
    train, _ = _splits(data)
    targets = targets_of(model, config.exclude, config.layers, config.prune_biases)
    final, details = _final_sparsity(model, config, train)
    scope = "layer" if config.effective_scope == "layer" else "global"

    def scores():
        if config.criterion == "taylor":
            batches = iter_batches(train, config.calibration_batches, config.calibration_batch_size, config.seed)
            return taylor_scores(model, targets, batches, loss_fn)
        return lamp_scores(targets) if config.criterion == "lamp" else magnitude_scores(targets)

    def prune_to(level: float) -> None:
        if isinstance(final, dict):
            spec = {k: v * level / max(config.sparsity, 1e-12) for k, v in final.items()}
        else:
            spec = level
        apply_masks(targets, masks_from_scores(scores(), spec, scope, keep_pruned=current_masks(targets)))

    schedule = []
    if config.schedule == "oneshot":
        prune_to(config.sparsity)
        schedule.append({"step": 0, "sparsity": config.sparsity})
        if config.finetune.epochs:
            details["finetune"] = _finetune(model, config, data, loss_fn, progress)
        return {**details, "schedule": schedule}

    levels = cubic_steps(config.sparsity, config.initial_sparsity, config.pruning_steps)
    total = config.finetune.epochs * math.ceil(len(train) / config.finetune.batch_size)
    dt = max(1, int(total * config.pruning_fraction) // config.pruning_steps)
    prune_to(levels[0])
    schedule.append({"step": 0, "sparsity": levels[0]})

    def apply(k: int, t: int) -> None:
        prune_to(levels[k])
        schedule.append({"step": t, "sparsity": levels[k]})

    details["finetune"] = _finetune(model, config, data, loss_fn, progress, _every(dt, config.pruning_steps, apply),
                                    best_after_step=dt * config.pruning_steps)
    if schedule[-1]["sparsity"] < config.sparsity:  # too few training steps for the schedule
        prune_to(config.sparsity)
        schedule.append({"step": total, "sparsity": config.sparsity})
    return {**details, "schedule": schedule, "dt": dt}


def _every(dt: int, steps: int, apply: Callable[[int, int], None]) -> Callable[[int], None]:
    """An ``on_step`` for ``fit`` that calls ``apply(k, t)`` once training step t = k * dt is done,
    for k = 1 .. ``steps`` (the steps of a cubic schedule)."""
    def on_step(step: int) -> None:
        t = step + 1
        if t % dt == 0 and 1 <= t // dt <= steps:
            apply(t // dt, t)
    return on_step


def _final_sparsity(model: nn.Module, config: Unstructured, train: Any) -> tuple[float | dict, dict]:
    """The final target: one level, or a level per tensor (given, or from sensitivity)."""
    if config.layer_sparsity:
        levels = {f"{n}.weight": s for n, s in config.layer_sparsity.items()}
        return levels, {"planned_layer_sparsity": dict(config.layer_sparsity)}
    if config.scope == "sensitivity":
        split = train.subset(min(len(train), 2000), seed=config.seed)
        sens = sensitivity_analysis(model, split, layers=config.layers, exclude=config.exclude)
        plan = allocate_sparsity(sens, config.sparsity)
        return {f"{n}.weight": s for n, s in plan.items()}, {"sensitivity": sens, "planned_layer_sparsity": plan}
    return config.sparsity, {}


def _nm(model: nn.Module, config: NM, data: Any, loss_fn: LossFn | None, progress: bool) -> dict:
    train, _ = _splits(data)
    targets = targets_of(model, config.exclude, config.layers)
    skipped = [k for k, (m, t) in targets.items() if not nm_compatible(getattr(m, t), config.m)]
    targets = {k: v for k, v in targets.items() if k not in skipped}
    if not targets:
        raise ConfigError(f"no layer has a multiple of m={config.m} inputs per output; N:M cannot apply")
    if config.criterion == "taylor":
        batches = iter_batches(train, config.calibration_batches, config.calibration_batch_size, config.seed)
        scores = taylor_scores(model, targets, batches, loss_fn)
    else:
        scores = magnitude_scores(targets)
    apply_masks(targets, {k: nm_mask(s, config.n, config.m) for k, s in scores.items()})
    details: dict[str, Any] = {"nm": f"{config.n}:{config.m}", "nm_layers": [k[:-7] for k in targets],
                               "nm_skipped": [k[:-7] for k in skipped]}
    if config.finetune.epochs:
        details["finetune"] = _finetune(model, config, data, loss_fn, progress)
    return details


def _prune_to_latency(model: nn.Module, config: Structured, train: Any, shape: tuple[int, ...], kwargs: dict,
                      log: Callable[[str], None]) -> tuple[StructuredResult, dict]:
    """Channel counts that meet ``config.target_latency`` (or ``target_macs`` with the latency
    layout), chosen by measuring ONNX Runtime (``edgeslim.prune.latency``; candidates scored by
    accuracy on calibration samples), applied."""
    from .latency import DeployedLatency, candidate_layers, plan_for_latency

    calibration = train.subset(config.calibration_batches * config.calibration_batch_size, seed=config.seed)
    fixed = config.layer_sparsity or {}
    candidates = [n for n in candidate_layers(model, shape, config.layers, config.exclude) if n not in fixed]

    def layout(ratios: dict[str, float]) -> StructuredResult:
        return prune_structured(model, shape, ratio=0.0, max_ratio=0.999,
                                **{**kwargs, "layer_ratios": {**fixed, **ratios}})

    done = None
    if config.target_macs:
        macs_budget = config.target_macs * count_macs(model, shape)
        done = lambda m, fraction: count_macs(m, shape) <= macs_budget  # noqa: E731
    latency = DeployedLatency(model, shape, config.timing.batch, config.timing.threads)
    plan = plan_for_latency(model, candidates, config.target_latency or 0.0, lambda r: layout(r).model,
                            lambda m: evaluate_split(m, calibration)["accuracy"], latency,
                            step=config.effective_latency_step, progress=log, confirm=latency.confirm, done=done)
    res = layout(plan.ratios)
    if not plan.reached:  # no cut saves measurable time any more: the rest of the MACs go uniformly
        log(f"no further cut saves measurable time at {res.macs_fraction:.2f} of the MACs; removing the rest "
            f"uniformly to reach {config.target_macs:.2f}")
        macs = count_macs(model, shape)
        rest = prune_structured(res.model, shape, target_macs=config.target_macs * macs / count_macs(res.model, shape),
                                **{**kwargs, "layer_ratios": None})
        channels = {n: (res.channels.get(n, c)[0], c[1]) for n, c in rest.channels.items()}
        res = replace(rest, macs_before=res.macs_before, params_before=res.params_before, channels=channels,
                      history=res.history + rest.history)
    return res, plan.summary()


def _structured(model: nn.Module, config: Structured, data: Any, shape: tuple[int, ...],
                loss_fn: LossFn | None, progress: bool, log: Callable[[str], None]
                ) -> tuple[nn.Module, dict]:
    train, _ = _splits(data)
    kwargs = dict(importance=config.structured_importance, layers=config.layers, exclude=config.exclude,
                  scope=config.effective_scope, data=train, loss_fn=loss_fn,
                  calibration_batches=config.calibration_batches,
                  batch_size=config.calibration_batch_size, round_to=config.round_to,
                  layer_ratios=config.layer_sparsity)
    details: dict[str, Any] = {}
    if config.effective_layout == "latency":
        res, details["latency_plan"] = _prune_to_latency(model, config, train, shape, kwargs, log)
    elif config.target_macs:
        res = prune_structured(model, shape, target_macs=config.target_macs, **kwargs)
    else:
        res = prune_structured(model, shape, ratio=config.sparsity, **kwargs)
    details.update({"channel_ratio": res.ratio, "channels": res.channels})
    if config.schedule == "gradual":
        return model, {**details, **_fade(model, res, config, data, loss_fn, progress, shape, log)}
    details["schedule"] = [{"step": 0, "macs_fraction": res.macs_fraction}]
    if config.finetune.epochs:
        details["finetune"] = _finetune(res.model, config, data, loss_fn, progress)
    return res.model, details


def _fade(model: nn.Module, res: StructuredResult, config: Structured, data: Any, loss_fn: LossFn | None,
          progress: bool, shape: tuple[int, ...], log: Callable[[str], None]) -> dict[str, Any]:
    """Gradual: fine-tune ``model`` (in place) while the channels ``res`` removes fade out on the
    cubic schedule over the first ``pruning_fraction`` of the steps, remove them, and fine-tune
    the smaller model for the rest (it trains faster than the faded dense one)."""
    from .fade import ChannelFade

    ft = config.finetune
    total = ft.epochs * math.ceil(len(data.train) / ft.batch_size)
    total = min(total, ft.max_steps or total)
    fade_steps = max(1, int(total * config.pruning_fraction))
    dt = max(1, fade_steps // config.pruning_steps)
    removed = cubic_steps(1.0, 0.0, config.pruning_steps)
    fade = ChannelFade(model, data.train.x[:32], res.history)  # real inputs, for the removal check
    schedule = [{"step": 0, "factor": 1.0}]

    def apply(k: int, t: int) -> None:
        fade.set(1.0 - removed[k])
        schedule.append({"step": t, "factor": round(1.0 - removed[k], 6)})

    log(f"fading {sum(len(h[2]) for h in res.history)} channel(s) over {fade_steps} of {total} fine-tune steps")
    history = _finetune(model, config, data, loss_fn, progress, _every(dt, config.pruning_steps, apply),
                        best_after_step=fade_steps,
                        max_steps=fade_steps)
    change = fade.remove()
    schedule.append({"step": fade_steps, "factor": 0.0, "removed": True})
    if total > fade_steps:
        history += _finetune(model, config, data, loss_fn, progress, max_steps=total - fade_steps)
    return {"schedule": schedule, "finetune": history, "removal_max_change": change}


def prune_checkpoint(folder: str | Path | Checkpoint, config: PruneConfig | dict | None, out: str | Path,
                     dataset: str | None = None, data_dir: str | Path | None = None, progress: bool = True,
                     log: Callable[[str], None] | None = None) -> Result:
    """Load a checkpoint, prune it, fine-tune it on its data set and write a normal
    checkpoint folder (eval/export/bench accept it) with the compression stage recorded.
    ``Result.artifact`` is that folder; ``summary`` adds its test ``metrics``."""
    from .._io import write_json
    from ..data.datasets import load_dataset_for
    from ..models.checkpoint import save_checkpoint
    from ..models.resolve import resolve_model, source_name

    config = prune_config(config)
    ckpt = resolve_model(folder)
    data = load_dataset_for(ckpt.meta, dataset, data_dir, default="fashion-mnist")
    res = prune(ckpt, config, data, input_shape=ckpt.input_shape, progress=progress, log=log)
    summary = res.summary
    metrics = evaluate_split(res.model, data.test)
    stage = {"stage": "prune", "method": config.method, "criterion": config.criterion,
             "weight_sparsity": summary["after"]["weight_sparsity"],
             "macs_fraction": summary["after"]["macs"] / max(summary["before"]["macs"], 1),
             "config": config.model_dump(), "source": source_name(folder)}
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("architecture", "format_version", "history")}
    meta.update(metrics=metrics, compression=[*ckpt.meta.get("compression", []), stage])
    save_checkpoint(res.model, out, meta)
    write_json(Path(out) / "prune_summary.json", summary)
    summary.update(out=str(out), metrics=metrics)
    return Result(model=res.model, artifact=Path(out), summary=summary, warnings=res.warnings)
