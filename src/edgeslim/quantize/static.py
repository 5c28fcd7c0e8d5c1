"""Static int8 post-training quantization of an ONNX model, in ONNX Runtime's QDQ format.

Ranges come from our calibrators (``calibrate.py``); ONNX Runtime's ``quantize_static``
does the graph rewriting (Q/DQ insertion, ReLU removal, per-channel weights) from our
calibration table and ``TensorQuantOverrides``. This module also measures per-layer
sensitivity (only that layer quantized) and keeps the most sensitive layers in float
until an accuracy budget holds.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from ..errors import ConfigError
from .affine import QParams, qparams_for, sqnr_db
from .calibrate import collect_stats, compute_ranges, graph_io_names, write_calibration_table

# Ops that carry weights: the "layers" of the summary and of mixed precision.
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


@dataclass
class StaticSettings:
    calibration: str = "minmax"
    per_channel: bool = True
    symmetric_activations: bool = False  # True: int8 activations (S8S8); False: uint8 (U8S8)
    percentile: float = 99.99
    reduce_range: bool = False  # 7-bit weights where the int8 kernels saturate (see kernels.py)
    nodes_to_exclude: list[str] = field(default_factory=list)
    nodes_to_quantize: list[str] = field(default_factory=list)
    tensor_overrides: dict[str, list[dict]] = field(default_factory=dict)


def preprocess_onnx(float_onnx: str | Path, out: str | Path) -> Path:
    """ONNX Runtime's quant_pre_process (shape inference + graph optimizations)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(float_onnx), str(out), skip_symbolic_shape=True)
    return Path(out)


def calibration_ranges(pre_onnx: str | Path, calib: np.ndarray, settings: StaticSettings
                       ) -> dict[str, tuple[float, float]]:
    stats = collect_stats(pre_onnx, calib)
    dtype = "int8" if settings.symmetric_activations else "uint8"
    return compute_ranges(stats, settings.calibration, settings.percentile, dtype, settings.symmetric_activations,
                          graph_io_names(pre_onnx))


def quantize_with_ranges(pre_onnx: str | Path, out: str | Path, ranges: dict[str, tuple[float, float]],
                         settings: StaticSettings, metadata_from: str | Path | None = None) -> Path:
    """Run ORT's quantize_static with our ranges as its calibration table."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        table = write_calibration_table(ranges, Path(tmp) / "ranges.json")
        extra = {"ActivationSymmetric": settings.symmetric_activations}
        if settings.tensor_overrides:
            extra["TensorQuantOverrides"] = settings.tensor_overrides
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # ORT logs a warning per model otherwise
        try:
            quantize_static(str(pre_onnx), str(out), None, quant_format=QuantFormat.QDQ,
                            per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                            activation_type=QuantType.QInt8 if settings.symmetric_activations else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=list(settings.nodes_to_exclude),
                            nodes_to_quantize=list(settings.nodes_to_quantize) or None,
                            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(table),
                            extra_options=extra)
        finally:
            logging.getLogger().setLevel(level)
    copy_metadata(metadata_from or pre_onnx, out)
    return Path(out)


def copy_metadata(src: str | Path, dst: str | Path) -> None:
    """Keep the edgeslim metadata (preprocessing, class names) on the quantized model."""
    from ..export import save_onnx

    source, target = onnx.load(str(src)), onnx.load(str(dst))
    have = {p.key for p in target.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in have:
            target.metadata_props.add().CopyFrom(prop)
    save_onnx(target, dst)


def weighted_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits]


# ---------------------------------------------------------------- summary of a QDQ model
def _init_array(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return onnx.numpy_helper.to_array(init)
    return None


def qdq_params(model: onnx.ModelProto) -> dict[str, QParams]:
    """Scale/zero point of every quantized tensor of a QDQ model, keyed by the name of
    the DequantizeLinear output (the tensor the float op reads)."""
    out = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        scale = _init_array(model, node.input[1])
        zp = _init_array(model, node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        if scale is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) if np.ndim(scale) else None
        dtype = "uint8" if zp is not None and zp.dtype == np.uint8 else "int8"
        out[node.output[0]] = QParams(np.asarray(scale, np.float32), np.asarray(zp, np.int32), dtype, axis)
    return out


def summarize_qdq(qdq_onnx: str | Path, float_reasons: dict[str, str] | None = None) -> dict:
    """Per layer: bits, weight and input scales/zero points, weight SQNR; every op that
    stayed float, and why."""
    from onnxruntime.quantization.registry import QDQRegistry

    model = onnx.load(str(qdq_onnx))
    params = qdq_params(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    float_reasons = float_reasons or {}
    layers, float_ops = [], []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        quantized = any(i in params for i in node.input)
        if node.op_type in WEIGHTED_OPS:
            entry = {"layer": node.name, "op": node.op_type, "bits": 8 if quantized else 32}
            if quantized:
                w_in, x_in = node.input[1], node.input[0]
                entry["input"] = params[x_in].to_dict() if x_in in params else None
                if w_in in params:
                    entry["weight"] = params[w_in].to_dict()
                    dq = producers[w_in]
                    q = _init_array(model, dq.input[0])
                    if q is not None:
                        deq = params[w_in].dequantize(q)
                        entry["weight_bits"] = 8
                        entry["weight_range"] = [float(deq.min()), float(deq.max())]
            else:
                entry["reason"] = float_reasons.get(node.name, "not quantized by ONNX Runtime")
            layers.append(entry)
        elif not quantized and node.op_type not in QDQRegistry and node.op_type not in (
                "Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Transpose", "Shape", "Constant"):
            float_ops.append({"node": node.name, "op": node.op_type,
                              "reason": float_reasons.get(node.name, f"{node.op_type} has no int8 kernel in "
                                                          "ONNX Runtime's QDQ quantizer; it runs in float")})
    n_q = sum(1 for entry in layers if entry["bits"] == 8)
    return {"layers": layers, "float_ops": float_ops, "quantized_layers": n_q,
            "float_layers": [{"layer": e["layer"], "reason": e["reason"]} for e in layers if e["bits"] != 8]}


def weight_sqnr(float_model: onnx.ModelProto, per_channel: bool, reduce_range: bool = False) -> dict[str, float]:
    """SQNR (dB) of each layer's int8 weights against its float weights."""
    out = {}
    for node in weighted_nodes(float_model):
        w = _init_array(float_model, node.input[1])
        axis = (1 if node.op_type == "MatMul" else 0) if per_channel and w.ndim > 1 else None
        out[node.name] = sqnr_db(w, qparams_for(w, "int8", True, axis, reduce_range).fake_quantize(w))
    return out


# ---------------------------------------------------------------- accuracy, sensitivity, mixed precision
Evaluator = Callable[[Path], np.ndarray]  # path -> logits on the evaluation inputs


def onnx_logits(path: str | Path, x: np.ndarray, threads: int | None = None, batch_size: int = 256) -> np.ndarray:
    from ..runtime import load_model

    runner = load_model(path, threads=threads, require_signature=False)  # a model this run wrote
    return np.concatenate([runner.predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: np.ndarray, y: np.ndarray | None) -> float | None:
    return None if y is None else float((logits.argmax(1) == y).mean())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def layer_sensitivity(pre_onnx: Path, ranges: dict, settings: StaticSettings, x: np.ndarray, y: np.ndarray | None,
                      ref_logits: np.ndarray, workdir: Path, threads: int | None = None) -> list[dict]:
    """For each weighted layer: quantize only that layer (ORT nodes_to_quantize), then the
    logits' SQNR against float (dB), accuracy and agreement with float."""
    rows = []
    model = onnx.load(str(pre_onnx))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for node in weighted_nodes(model):
        # the layer's own ReLU/Clip goes with it: in the full model ORT folds it into the
        # layer's output range, and without it the output would get the wider pre-activation range
        acts = [c.name for c in consumers.get(node.output[0], []) if c.op_type in ("Relu", "Clip")]
        single = StaticSettings(**{**settings.__dict__, "nodes_to_quantize": [node.name, *acts],
                                   "nodes_to_exclude": []})
        path = quantize_with_ranges(pre_onnx, workdir / "single.onnx", ranges, single)
        logits = onnx_logits(path, x, threads)
        rows.append({"layer": node.name, "op": node.op_type, "sqnr_db": sqnr_db(ref_logits, logits),
                     "accuracy": accuracy(logits, y), "agreement": agreement(ref_logits, logits)})
    return rows


def _drop_points(ref_logits, logits, y) -> float:
    """Accuracy lost, in points; without labels, the disagreement with float (in points)."""
    if y is not None:
        return 100 * (accuracy(ref_logits, y) - accuracy(logits, y))
    return 100 * (1 - agreement(ref_logits, logits))


def mixed_precision(pre_onnx: Path, out: Path, ranges: dict, settings: StaticSettings, x: np.ndarray,
                    y: np.ndarray | None, ref_logits: np.ndarray, sensitivity: list[dict], max_drop: float,
                    max_float_fraction: float = 0.34, threads: int | None = None,
                    log: Callable[[str], None] = lambda s: None) -> tuple[Path, dict[str, str], list[dict]]:
    """Quantize everything, then keep the most sensitive layers (lowest SQNR when quantized
    alone) in float, one at a time, until the drop on (x, y) is <= ``max_drop`` points.
    Returns (model path, {layer: why it is float}, trajectory)."""
    order = sorted(sensitivity, key=lambda r: r["sqnr_db"])
    limit = max(1, int(len(order) * max_float_fraction))
    excluded: dict[str, str] = {}
    trajectory = []
    best: tuple[float, dict[str, str]] = (float("inf"), {})

    def build(exclude: dict[str, str]) -> None:
        current = StaticSettings(**{**settings.__dict__, "nodes_to_exclude": [*settings.nodes_to_exclude, *exclude]})
        quantize_with_ranges(pre_onnx, out, ranges, current)

    for step in range(limit + 1):
        build(excluded)
        drop = _drop_points(ref_logits, onnx_logits(out, x, threads), y)
        trajectory.append({"float_layers": len(excluded), "drop_points": drop})
        log(f"mixed precision: {len(excluded)} layer(s) float -> drop {drop:.2f} points")
        if drop < best[0]:
            best = (drop, dict(excluded))
        if drop <= max_drop or step == limit:
            if drop > max_drop:
                log(f"warning: accuracy budget {max_drop} not met with up to {len(excluded)} float layers "
                    f"(cap {max_float_fraction:.0%} of layers); keeping the best ({best[0]:.2f} points)")
                if best[1] != excluded:
                    build(best[1])
                excluded = best[1]
            return out, excluded, trajectory
        r = order[step]
        excluded[r["layer"]] = (f"most sensitive #{step + 1}: {r['sqnr_db']:.1f} dB logit SQNR when quantized "
                                f"alone; kept float to meet max_accuracy_drop={max_drop}")
    return out, excluded, trajectory


def check_nodes_exist(pre_onnx: Path, names: list[str]) -> None:
    present = {n.name for n in onnx.load(str(pre_onnx)).graph.node}
    missing = [n for n in names if n not in present]
    if missing:
        raise ConfigError(f"exclude: no node named {missing[:3]} in the model; node names look like "
                          f"{sorted(present)[:3]}")
