"""One adapter per stage type: each passes the stage's verb config (``stage.config``) to the
package that does the work (``edgeslim.prune``, ``edgeslim.distill``, ``edgeslim.quantize``,
``edgeslim.export``) and returns the new model. No compression logic lives here."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from ..data.datasets import DataBundle
from ..errors import ConfigError
from ..models.checkpoint import Checkpoint
from .recipe import BenchSettings, DistillStage, ExportStage, PruneStage, QuantizeStage, ShareWeightsStage

DEPLOY_FILE = "model.onnx"


@dataclass
class StageContext:
    data: DataBundle  # train split may be a subset (recipe.train_samples); test is the evaluation split
    teacher: nn.Module  # the original model, eval mode; distillation and fine-tuning learn from it
    meta: dict[str, Any]  # the original checkpoint's meta (preprocess, class names, input shape)
    seed: int
    progress: bool
    stage_dir: Path
    bench: BenchSettings = field(default_factory=BenchSettings)  # the recipe's: how "faster" is measured

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def trained_with(self) -> dict[str, Any] | None:
        """How the original model was trained (fine-tunes repeat its augmentation and optimiser)."""
        return self.meta.get("train_config")


@dataclass
class ModelState:
    """The model between stages: a torch module until quantize/export, then a file."""
    model: nn.Module | None = None
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what the stage did (ratio found, ...)

    @property
    def is_torch(self) -> bool:
        return self.path is None


def _distillation(finetune, ctx: StageContext):
    """The loss of a stage's fine-tune: distillation from the original model when ``finetune.distill``."""
    from ..distill import kd_loss_fn

    return kd_loss_fn(ctx.teacher, finetune.temperature, finetune.alpha, seed=ctx.seed) if finetune.distill else None


def run_prune(stage: PruneStage, state: ModelState, ctx: StageContext) -> ModelState:
    """``edgeslim.prune`` with the stage's config; fine-tuning distils from the original model
    when ``config.finetune.distill``."""
    from ..prune import Structured, prune

    config = stage.config
    kd = _distillation(config.finetune, ctx)
    if isinstance(config, Structured):
        # the pipeline times every stage itself, with the recipe's bench settings
        config = config.model_copy(update={"measure_speed": False})
        if config.effective_layout == "latency" and "timing" not in config.model_fields_set:
            # latency is planned the way the report measures it, unless the stage says how
            timing = config.timing.model_copy(update={"batch": list(ctx.bench.batch), "threads": ctx.bench.threads})
            config = config.model_copy(update={"timing": timing})
    res = prune(Checkpoint(state.model, ctx.meta), config, data=ctx.data, input_shape=ctx.input_shape,
                finetune_loss_fn=kd, progress=ctx.progress)
    keep = ("layer_sparsity", "channel_ratio", "channels", "latency_plan", "schedule", "planned_layer_sparsity",
            "nm", "after")
    return ModelState(res.model, info={k: res.summary[k] for k in keep if k in res.summary})


def run_distill(stage: DistillStage, state: ModelState, ctx: StageContext) -> ModelState:
    """``edgeslim.distill`` from the original model (augmentation as it was trained, unless the
    stage says), at the recipe's seed."""
    from ..distill import distill, width_student

    student = (width_student(ctx.teacher, stage.width, ctx.input_shape, from_teacher=stage.from_teacher)
               if stage.width else state.model)
    res = distill(student, stage.config.model_copy(update={"seed": ctx.seed}), ctx.data.train,
                  teacher=Checkpoint(ctx.teacher, ctx.meta), val=ctx.data.val, progress=ctx.progress)
    return ModelState(res.model, info={"width": stage.width})


def run_share_weights(stage: ShareWeightsStage, state: ModelState, ctx: StageContext) -> ModelState:
    """``edgeslim.quantize.share_weights``; centroid fine-tuning distils from the original model
    when ``config.finetune.distill``."""
    from ..quantize import share_weights
    from ..train import finetune_config

    ft = stage.config.finetune
    train_config = finetune_config(ctx.trained_with, ft.augment, epochs=ft.epochs, lr=ft.lr,
                                   batch_size=ft.batch_size, max_steps=ft.max_steps, seed=ctx.seed)
    model, codebooks = share_weights(state.model, stage.config.bits(), data=ctx.data.train,
                                     finetune_epochs=ft.epochs, train_config=train_config,
                                     progress=ctx.progress, val=ctx.data.val, loss_fn=_distillation(ft, ctx))
    return ModelState(model, info={"shared_layers": sorted(codebooks)})


def export_float_onnx(model: nn.Module, path: Path, ctx: StageContext) -> Path:
    """The float ONNX file a stage deploys, as ``edgeslim export`` writes it, timed with the
    recipe's bench settings (the original model is exported the same way)."""
    from ..export import export_deployed, onnx_metadata

    return export_deployed(model, path, ctx.input_shape, onnx_metadata(Checkpoint(model, ctx.meta)), ctx.bench)


def run_quantize(stage: QuantizeStage, state: ModelState, ctx: StageContext) -> ModelState:
    """``edgeslim.quantize`` on the torch model; calibration (and, for QAT, training) on the
    training split, never on the test split the report measures."""
    from ..export import onnx_metadata
    from ..quantize import quantize

    res = quantize(state.model, stage.config, data=ctx.data.train, out=ctx.stage_dir,
                   input_shape=ctx.input_shape, metadata=onnx_metadata(Checkpoint(state.model, ctx.meta)))
    (ctx.stage_dir / "float.onnx").unlink(missing_ok=True)  # the previous stage holds the float model
    keep = ("layers", "float_layers", "warnings", "mixed_precision", "accuracy_drop_points")
    info = {k: res.summary[k] for k in keep if k in res.summary}
    if stage.keep_float_if_slower:
        return _faster_of_float_and_int8(state.model, Path(res.artifact), info, ctx)
    return ModelState(path=Path(res.artifact), info=info)


def _faster_of_float_and_int8(model: nn.Module, int8: Path, info: dict, ctx: StageContext) -> ModelState:
    """Time the float and int8 models side by side (the recipe's latency settings) and keep the
    faster: on small models ONNX Runtime's int8 kernels can lose to float32 on a CPU."""
    from ..runtime import benchmark

    b = ctx.bench
    candidate = export_float_onnx(model, ctx.stage_dir / "float-candidate.onnx", ctx)
    res = benchmark([candidate, int8], batch=b.batch[0], threads=b.threads, rounds=b.rounds, warmup=b.warmup,
                    require_signature=False)  # models this stage wrote
    speedup = res[1]["speedup"]
    info["int8_vs_float_speedup"] = speedup
    if b.faster(speedup):
        candidate.unlink()
        return ModelState(path=int8, info=info)
    info["decision"] = (f"int8 ran at {speedup:.2f}x the float model's speed (batch {b.batch[0]}, {b.threads} "
                        f"thread(s)), under the {b.margin:g}x that counts as faster, so the float model is kept "
                        "(keep_float_if_slower)")
    candidate.replace(int8)  # the stage's deployable file keeps its usual name
    return ModelState(path=int8, info=info)


def run_export(stage: ExportStage, state: ModelState, ctx: StageContext) -> ModelState:
    if stage.format in ("openvino", "tflite", "executorch"):
        return ModelState(path=_export_runtime_format(stage, state, ctx))
    if stage.format == "onnx":
        out = ctx.stage_dir / DEPLOY_FILE
        if state.is_torch:
            export_float_onnx(state.model, out, ctx)
        else:
            shutil.copyfile(state.path, out)
        return ModelState(path=out)
    return ModelState(path=_export_eslim(state, ctx))


def _export_runtime_format(stage: ExportStage, state: ModelState, ctx: StageContext) -> Path:
    """OpenVINO IR from the ONNX model (a quantize stage's file, or the float export); LiteRT and
    ExecuTorch from the PyTorch model, int8 with their own quantizers when ``stage.int8``."""
    from ..export import SUFFIXES, export_executorch, export_openvino, export_tflite, onnx_metadata
    from ..runtime import load_model

    out = ctx.stage_dir / f"model{SUFFIXES[stage.format]}"
    if stage.format == "openvino":
        onnx_path = state.path if not state.is_torch else export_float_onnx(state.model, ctx.stage_dir / DEPLOY_FILE,
                                                                              ctx)
        if onnx_path.suffix != ".onnx":
            raise ConfigError(f"export format 'openvino' converts an ONNX model, not {onnx_path.suffix}; put it "
                              "before any eslim export")
        return export_openvino(onnx_path, out, load_model(onnx_path, require_signature=False).metadata)
    if not state.is_torch:
        raise ConfigError(f"export format {stage.format!r} converts the PyTorch model; put it before any quantize "
                          "stage and set int8: true for its own int8 quantization")
    calib = ctx.data.train.subset(256, seed=ctx.seed).x.numpy() if stage.int8 else None
    export = export_tflite if stage.format == "tflite" else export_executorch
    return export(state.model, out, ctx.input_shape, onnx_metadata(Checkpoint(state.model, ctx.meta)), calib)


def _export_eslim(state: ModelState, ctx: StageContext) -> Path:
    from ..export import artifact

    if not state.is_torch:
        raise ConfigError("export format 'eslim' packs a PyTorch model; put it before any quantize stage")
    out = ctx.stage_dir / "model.eslim"
    artifact.export_eslim(state.model, out, ctx.meta)
    return out


RUNNERS: dict[str, Callable[[Any, ModelState, StageContext], ModelState]] = {
    "prune": run_prune, "distill": run_distill, "share_weights": run_share_weights,
    "quantize": run_quantize, "export": run_export,
}
