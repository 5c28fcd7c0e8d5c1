"""``edgeslim.quantize(model, config, data=...) -> Result``: one entry point for static PTQ
(``StaticInt8``), dynamic int8 (``DynamicInt8``), quantization-aware training (``QAT``) and
weight sharing (``WeightSharing``). Each writes an artifact (QDQ / dynamic int8 ONNX, or the
weight-shared float ONNX plus codebooks) and a summary:
per-layer bits, scales and zero points, SQNR, which layers stayed float and why,
accuracy against the float model, file sizes and a side-by-side speed check."""
from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from .._io import write_json
from ..config import Result
from ..data.datasets import Split
from ..errors import ConfigError, DataError
from .config import QAT, DynamicInt8, StaticInt8, WeightSharing, quantize_config
from .ort_static import check_calibration_data


DEFAULT_EVAL_SAMPLES = 2000


QuantizeConfig = StaticInt8 | DynamicInt8 | QAT | WeightSharing


def _as_split(data, what: str) -> Split | None:
    if data is None or isinstance(data, Split):
        return data
    if isinstance(data, np.ndarray):
        return Split(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), torch.zeros(len(data)).long())
    if isinstance(data, torch.Tensor):
        return Split(data.float(), torch.zeros(len(data)).long())
    raise ConfigError(f"{what}: expected a Split, a torch tensor or a numpy array, got {type(data).__name__}")


def _resolve_model(model) -> tuple[nn.Module, dict]:
    from ..models.checkpoint import Checkpoint
    from ..models.resolve import resolve_model

    if isinstance(model, (str, Path)):
        model = resolve_model(model)
    if isinstance(model, Checkpoint):
        return model.model, dict(model.meta)
    if isinstance(model, nn.Module):
        return model, {}
    raise ConfigError(f"model: expected an nn.Module, a Checkpoint or a checkpoint folder, got {type(model).__name__}")


def _calibration_x(split: Split, config: QuantizeConfig, input_shape: tuple[int, ...]) -> np.ndarray:
    x = split.subset(config.samples, seed=config.seed).x.numpy()
    check_calibration_data(x, input_shape)
    return x


def quantize(model, config: QuantizeConfig | dict | None = None, data=None, *, eval_data: Split | None = None,
             train_data: Split | None = None, out: str | Path | None = None,
             input_shape: tuple[int, ...] | None = None, metadata: dict | None = None,
             log: Callable[[str], None] = lambda s: None) -> Result:
    """Quantize ``model`` (nn.Module, Checkpoint or checkpoint folder; never modified) as ``config``
    (``StaticInt8``, ``DynamicInt8``, ``QAT``, ``WeightSharing``, or a dict whose ``method`` picks
    one; None: ``StaticInt8()``) says. ``Result.artifact`` is the quantized ``.onnx``;
    ``Result.model`` the torch model after QAT / weight sharing (None otherwise).

    data: a DataBundle (train split: calibration and QAT / centroid training; test split: accuracy),
        or calibration inputs alone (Split, tensor or array; ``config.samples`` are drawn). A
        labelled Split also trains, and a bounded subset of it measures accuracy.
    eval_data: labelled data to measure accuracy, per-layer sensitivity and the
        ``max_accuracy_drop`` budget (replaces the default above).
    train_data: training Split for QAT / centroid fine-tuning (replaces the default above).
    out: folder for ``model.onnx`` (the artifact), ``float.onnx`` and ``summary.json``.
    """
    config = quantize_config(config)
    torch_model, meta = _resolve_model(model)
    if hasattr(data, "train") and hasattr(data, "test"):  # a DataBundle
        eval_data = eval_data if eval_data is not None else data.test
        data = data.train
    calib = _as_split(data, "data")
    if calib is None:
        raise ConfigError("data is required: representative inputs for calibration (256 or more samples)")
    input_shape = tuple(input_shape or meta.get("input_shape") or calib.x.shape[1:])
    eval_split = _as_split(eval_data, "eval_data")
    if eval_split is None and isinstance(data, Split):
        # labelled calibration data doubles as evaluation data; a bounded subset keeps
        # sensitivity and budget checks cheap when a whole training split is passed
        eval_split = calib.subset(DEFAULT_EVAL_SAMPLES, seed=config.seed + 1)
    train = train_data if train_data is not None else (data if isinstance(data, Split) else None)
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="edgeslim-quantize-"))
    out.mkdir(parents=True, exist_ok=True)
    from ..export import export_deployed, onnx_metadata
    from ..models.checkpoint import Checkpoint

    onnx_meta = metadata if metadata is not None else (onnx_metadata(Checkpoint(torch_model, meta)) if meta else None)
    t0 = time.perf_counter()
    x_calib = _calibration_x(calib, config, input_shape)
    # the float model as a user deploys it (what `edgeslim export` writes): the speed baseline
    float_onnx = export_deployed(torch_model, out / "float.onnx", input_shape, onnx_meta, config.timing)
    ctx = _Context(config, torch_model, input_shape, onnx_meta, x_calib, eval_split, train, out, float_onnx, log,
                   meta.get("train_config"))
    runner = {"static": _static, "dynamic": _dynamic, "qat": _qat, "weight_sharing": _weight_sharing}[config.method]
    result = runner(ctx)
    result.summary.update(_evaluate(ctx, result.artifact, result.summary))
    result.summary["config"] = config.model_dump()
    result.summary["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", result.summary)
    result.warnings = result.summary["warnings"]
    for w in result.warnings:
        log(f"warning: {w}")
    return result


@dataclass
class _Context:
    config: StaticInt8 | DynamicInt8 | QAT | WeightSharing
    model: nn.Module
    input_shape: tuple[int, ...]
    metadata: dict | None
    calib: np.ndarray
    eval: Split | None
    train: Split | None
    out: Path
    float_onnx: Path
    log: Callable[[str], None]
    trained_with: dict | None = None  # the model's own training settings (fine-tunes repeat them)

    def finetune(self, epochs: int):
        """QAT / centroid fine-tuning: as the model was trained, at the config's lr, constant."""
        from ..train import finetune_config

        ft = self.config.finetune
        extra = {"max_steps": ft.max_steps} if ft.max_steps else {}
        return finetune_config(self.trained_with, ft.augment, epochs=epochs, lr=ft.lr, batch_size=ft.batch_size,
                               seed=self.config.seed, schedule="constant", **extra)

    @property
    def labelled_eval(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.eval is None:
            return None
        return self.eval.x.numpy(), self.eval.y.numpy()


def _settings(config: StaticInt8 | QAT):
    from .kernels import resolve_reduce_range
    from .static import StaticSettings

    common = dict(per_channel=config.per_channel, symmetric_activations=config.symmetric,
                  reduce_range=resolve_reduce_range(config.reduce_range), nodes_to_exclude=list(config.exclude))
    if isinstance(config, QAT):  # QAT learns its ranges: no calibration method applies
        return StaticSettings(**common)
    return StaticSettings(calibration=config.calibration, percentile=config.percentile, **common)


def _prepared_model(ctx: _Context, reduce_range: bool) -> tuple[nn.Module, dict]:
    """BN folded, equalized and bias-corrected copy of the model (the order of Nagel et al.)."""
    from .prepare import correct_bias, equalize_cross_layer, fold_batchnorm

    m = copy.deepcopy(ctx.model).eval()
    info: dict[str, Any] = {"batchnorm_folded": fold_batchnorm(m)}
    if ctx.config.equalize:
        info["equalized_pairs"] = [list(p) for p in equalize_cross_layer(m)]
    if ctx.config.bias_correction:
        shifts = correct_bias(m, torch.from_numpy(ctx.calib), ctx.config.per_channel, reduce_range=reduce_range)
        info["bias_correction_max_shift"] = shifts
    return m, info


def _static(ctx: _Context) -> Result:
    from ..export import export_onnx
    from .kernels import weight_range_note
    from .static import (calibration_ranges, check_nodes_exist, layer_sensitivity, mixed_precision, onnx_logits,
                         preprocess_onnx, quantize_with_ranges, summarize_qdq, weight_sqnr)

    cfg, settings = ctx.config, _settings(ctx.config)
    prepared, info = _prepared_model(ctx, settings.reduce_range)
    work = Path(tempfile.mkdtemp(prefix="q-", dir=ctx.out))
    try:
        prep_onnx = export_onnx(prepared, work / "prepared.onnx", ctx.input_shape, ctx.metadata)
        pre = preprocess_onnx(prep_onnx, work / "pre.onnx")
        check_nodes_exist(pre, settings.nodes_to_exclude)
        ranges = calibration_ranges(pre, ctx.calib, settings)
        artifact = ctx.out / "model.onnx"
        ctx.log(f"static int8: {cfg.calibration} ranges for {len(ranges)} tensors")
        quantize_with_ranges(pre, artifact, ranges, settings, metadata_from=ctx.float_onnx)
        reasons = {n: "excluded by the user (config.exclude)" for n in settings.nodes_to_exclude}
        sensitivity, trajectory = [], []
        labelled = ctx.labelled_eval
        if labelled is not None and (cfg.sensitivity or cfg.max_accuracy_drop is not None):
            x, y = labelled
            rng = np.random.default_rng(cfg.seed)
            pick = rng.permutation(len(x))[:cfg.sensitivity_samples]
            xs, ys = x[pick], y[pick]
            threads = cfg.timing.threads
            ref = onnx_logits(ctx.float_onnx, xs, threads)
            ctx.log(f"per-layer sensitivity on {len(xs)} samples")
            sensitivity = layer_sensitivity(pre, ranges, settings, xs, ys, ref, work, threads)
            if cfg.max_accuracy_drop is not None:
                ref_full = onnx_logits(ctx.float_onnx, x, threads)
                _, excluded, trajectory = mixed_precision(pre, artifact, ranges, settings, x, y, ref_full,
                                                          sensitivity, cfg.max_accuracy_drop,
                                                          threads=threads, log=ctx.log)
                reasons.update(excluded)
                from .static import copy_metadata
                copy_metadata(ctx.float_onnx, artifact)
        summary = summarize_qdq(artifact, reasons)
        w_sqnr = weight_sqnr(__import__("onnx").load(str(pre)), cfg.per_channel, settings.reduce_range)
        sens = {r["layer"]: r for r in sensitivity}
        for layer in summary["layers"]:
            layer["weight_sqnr_db"] = w_sqnr.get(layer["layer"])
            if layer["layer"] in sens:
                s = sens[layer["layer"]]
                layer.update(alone_logit_sqnr_db=s["sqnr_db"], alone_accuracy=s["accuracy"],
                             alone_agreement=s["agreement"])
        summary.update(info)
        summary.update(sensitivity=sensitivity, mixed_precision=trajectory, method="static",
                       weight_range=weight_range_note(settings.reduce_range),
                       calibration=cfg.calibration, tensor_ranges={k: list(v) for k, v in ranges.items()})
        return Result(artifact=artifact, summary=summary)
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


def _dynamic(ctx: _Context) -> Result:
    from .dynamic import quantize_onnx_dynamic, summarize_dynamic
    from .kernels import resolve_reduce_range, weight_range_note

    reduce_range = resolve_reduce_range(ctx.config.reduce_range)
    artifact = quantize_onnx_dynamic(ctx.float_onnx, ctx.out / "model.onnx", ctx.config.per_channel, reduce_range)
    return Result(artifact=artifact, summary={"method": "dynamic", "weight_range": weight_range_note(reduce_range),
                                              **summarize_dynamic(artifact)})


def _qat(ctx: _Context) -> Result:
    import onnx

    from ..export import export_onnx
    from ..train import fit
    from .affine import qparams_from_range
    from .calibrate import collect_stats, compute_ranges
    from .prepare import fold_batchnorm
    from .kernels import weight_range_note
    from .qat import finish_qat, prepare_qat, qat_tensor_ranges
    from .static import preprocess_onnx, quantize_with_ranges, summarize_qdq

    cfg, settings = ctx.config, _settings(ctx.config)
    if ctx.train is None:
        raise ConfigError("method=qat needs labelled training data: pass train_data= (or labelled data: a DataBundle or Split)")
    m = copy.deepcopy(ctx.model).eval()
    folded = fold_batchnorm(m)
    prepare_qat(m, cfg.per_channel, cfg.symmetric, settings.reduce_range)
    ctx.log(f"QAT: {cfg.finetune.epochs} epoch(s) of fine-tuning with fake quantization")
    epochs = cfg.finetune.epochs
    history = fit(m, ctx.train, ctx.finetune(epochs), loss_fn=_finetune_loss(cfg, ctx.model), progress=False, description="qat",
                  on_epoch=lambda r: ctx.log(f"QAT epoch {r['epoch']}/{epochs}: loss {r['train_loss']:.4f}, "
                                             f"train accuracy {r['train_accuracy']:.3f} ({r['seconds']:.0f} s)"))
    learned = finish_qat(m)
    work = Path(tempfile.mkdtemp(prefix="q-", dir=ctx.out))
    try:
        pre = preprocess_onnx(export_onnx(m, work / "qat.onnx", ctx.input_shape, ctx.metadata), work / "pre.onnx")
        pre_model = onnx.load(str(pre))
        dtype = "int8" if cfg.symmetric else "uint8"
        ranges = compute_ranges(collect_stats(pre_model, ctx.calib), "minmax", dtype=dtype, symmetric=cfg.symmetric)
        qat_ranges = qat_tensor_ranges(m, pre_model, learned, pre_model.graph.output[0].name)
        ranges.update(qat_ranges)
        overrides = {}
        for tensor, (lo, hi) in qat_ranges.items():
            qp = qparams_from_range(lo, hi, dtype, cfg.symmetric)
            zp_type = np.int8 if cfg.symmetric else np.uint8
            overrides[tensor] = [{"scale": np.array(qp.scale, dtype=np.float32),
                                  "zero_point": np.array(qp.zero_point, dtype=zp_type)}]
        settings.tensor_overrides = overrides
        artifact = quantize_with_ranges(pre, ctx.out / "model.onnx", ranges, settings, metadata_from=ctx.float_onnx)
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize_qdq(artifact)
    summary.update(method="qat", weight_range=weight_range_note(settings.reduce_range), batchnorm_folded=folded,
                   qat_history=history,
                   learned_ranges={k or "<output>": list(v) for k, v in learned.items()},
                   tensors_with_learned_ranges=sorted(qat_ranges))
    return Result(model=m, artifact=artifact, summary=summary)


def _finetune_loss(cfg, teacher: nn.Module):
    """Distillation from ``teacher`` (the model given to quantize) when ``cfg.finetune.distill``,
    else None (the labels)."""
    if not cfg.finetune.distill:
        return None
    from ..distill import kd_loss_fn

    return kd_loss_fn(teacher, cfg.finetune.temperature, cfg.finetune.alpha, seed=cfg.seed)


def _weight_sharing(ctx: _Context) -> Result:
    from ..export import export_onnx
    from .affine import sqnr_db
    from .weight_sharing import share_weights

    cfg = ctx.config
    epochs = cfg.finetune.epochs
    if epochs and ctx.train is None:
        raise ConfigError("centroid fine-tuning needs labelled training data: pass train_data= or set "
                          "finetune.epochs=0")
    m = copy.deepcopy(ctx.model).eval()
    before = {n: p.detach().clone() for n, p in m.named_parameters() if n.endswith("weight")}
    m, books = share_weights(m, cfg.bits(), data=ctx.train, finetune_epochs=epochs,
                             train_config=ctx.finetune(max(epochs, 1)), loss_fn=_finetune_loss(cfg, ctx.model))
    artifact = export_onnx(m, ctx.out / "model.onnx", ctx.input_shape, ctx.metadata)
    np.savez(ctx.out / "codebooks.npz", **{f"{n}.codebook": b for n, (b, _) in books.items()},
             **{f"{n}.indices": i for n, (_, i) in books.items()})
    layers = []
    for name, (book, idx) in books.items():
        w = dict(m.named_modules())[name].weight.detach().numpy()
        layers.append({"layer": name, "bits": int(np.ceil(np.log2(len(book)))), "codebook_size": len(book),
                       "distinct_values": int(len(np.unique(w))),
                       "weight_sqnr_db": sqnr_db(before[f"{name}.weight"].numpy(), w)})
    return Result(model=m, artifact=artifact, summary={"method": "weight_sharing", "layers": layers,
                                                       "float_layers": [], "codebooks": str(ctx.out / "codebooks.npz")})


def _evaluate(ctx: _Context, artifact: Path, summary: dict) -> dict:
    """Accuracy vs float on the evaluation data, file sizes, and a side-by-side speed check."""
    from .static import accuracy, agreement, onnx_logits

    cfg = ctx.config
    res: dict[str, Any] = {"artifact": str(artifact), "float_onnx": str(ctx.float_onnx),
                           "float_bytes": ctx.float_onnx.stat().st_size, "artifact_bytes": artifact.stat().st_size}
    res["size_ratio"] = res["artifact_bytes"] / res["float_bytes"]
    warnings = list(summary.get("warnings", []))
    if summary.get("float_ops"):
        kinds = sorted({f["op"] for f in summary["float_ops"]})
        warnings.append(f"{len(summary['float_ops'])} op(s) run in float (no int8 kernel): {', '.join(kinds)}")
    if ctx.eval is not None:
        x, y = ctx.eval.x.numpy(), ctx.eval.y.numpy()
        threads = cfg.timing.threads
        fl, q = onnx_logits(ctx.float_onnx, x, threads), onnx_logits(artifact, x, threads)
        res.update(float_accuracy=accuracy(fl, y), accuracy=accuracy(q, y), agreement=agreement(fl, q))
        res["accuracy_drop_points"] = 100 * (res["float_accuracy"] - res["accuracy"])
        budget = getattr(cfg, "max_accuracy_drop", None)  # StaticInt8 only
        if budget is not None and res["accuracy_drop_points"] > budget:
            warnings.append(f"accuracy drop {res['accuracy_drop_points']:.2f} points exceeds max_accuracy_drop="
                            f"{budget}")
    if cfg.benchmark:
        from ..runtime import benchmark

        t = cfg.timing
        bench = benchmark([ctx.float_onnx, artifact], batch=t.batch[0], threads=t.threads, rounds=t.rounds,
                          warmup=t.warmup, require_signature=False)  # models this run wrote
        res["speed"] = {"batch": t.batch[0], "float_p50_ms": bench[0]["p50_ms"],
                        "quantized_p50_ms": bench[1]["p50_ms"], "speedup": bench[1]["speedup"]}
        if not t.faster(bench[1]["speedup"]):
            warnings.append(f"the quantized model is not faster than float on this machine "
                            f"({bench[1]['p50_ms']:.3f} ms vs {bench[0]['p50_ms']:.3f} ms at batch "
                            f"{t.batch[0]}, {bench[1]['speedup']:.2f}x, under the {t.margin:g}x that counts "
                            "as faster)")
    res["warnings"] = warnings
    return res


# held-out samples a --calib-data path is evaluated on after quantization (held in memory)
CALIB_DATA_EVAL_SAMPLES = 500


def quantize_checkpoint(checkpoint, config: QuantizeConfig | dict | None, out: str | Path,
                        data_dir: str | Path | None = None, log: Callable[[str], None] = lambda s: None,
                        calib_data: str | Path | None = None, progress: bool = False) -> Result:
    """The CLI path for any model source (``edgeslim.models.resolve_model``). By default the
    model's own data set gives calibration (train split), evaluation (test split) and, for QAT
    / weight sharing, training data. ``calib_data``: a path (``edgeslim.data.open_data``: image
    folder, labels file, class folders, .npy) read with the model's preprocessing; labelled, it
    is split deterministically in two halves: ``config.samples`` calibration images from one,
    up to ``CALIB_DATA_EVAL_SAMPLES`` held-out images from the other to measure accuracy and
    agreement. Only those images are read."""
    from ..data.datasets import load_dataset_for
    from ..models.resolve import resolve_model, source_name

    config = quantize_config(config)
    ckpt = resolve_model(checkpoint)
    if calib_data is not None:
        calib, held = _calib_data_splits(ckpt, calib_data, config, progress)
        if config.method in ("qat", "weight_sharing") and held is None:
            raise DataError(f"{calib_data}: {config.method} fine-tunes and needs labelled data")
        return quantize(ckpt, config, data=calib, eval_data=held, train_data=calib if held else None,
                        out=out, log=log)
    dataset = ckpt.meta.get("dataset")
    if not dataset:
        raise DataError(f"{source_name(ckpt)}: names no data set; pass --calib-data (a folder of images, a labels "
                        "file, .npy) or use the Python API with data=")
    data = load_dataset_for(ckpt.meta, data_dir=data_dir)
    if tuple(data.input_shape) != tuple(ckpt.input_shape):
        raise DataError(f"data set {dataset} gives inputs {data.input_shape}, the model expects {ckpt.input_shape}")
    return quantize(ckpt, config, data=data, out=out, log=log)


def _calib_data_splits(ckpt, path: str | Path, config: QuantizeConfig, progress: bool
                       ) -> tuple[Split | np.ndarray, Split | None]:
    """(calibration data, held-out labelled Split) from a labelled data path; (inputs, None) unlabeled."""
    from ..data.sources import open_data

    source = open_data(path, ckpt.preprocess)
    if tuple(source.input_shape) != tuple(ckpt.input_shape):
        raise DataError(f"{path}: gives inputs {source.input_shape} with the model's preprocessing, the model "
                        f"expects {ckpt.input_shape}")
    if not source.labelled:
        order = np.random.default_rng(config.seed).permutation(len(source))[:config.samples]
        # inputs only: a Split's zero labels would be taken for real ones
        return source.split(order, progress, "read calibration images").x.numpy(), None
    first, second = source.halves(config.seed)
    calib = source.split(first[:config.samples], progress, "read calibration images")
    held = source.split(second[:CALIB_DATA_EVAL_SAMPLES], progress, "read held-out images")
    return calib, held
