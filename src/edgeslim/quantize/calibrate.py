"""Our activation calibrators: min-max, percentile, entropy (KL) and MSE ranges.

Every float tensor of an ONNX model is observed with ONNX Runtime (the model is run
with its intermediate tensors added as outputs) in two streaming passes: min/max, then
a signed histogram and a histogram of |x|. The range of each tensor is then chosen by
the requested method and handed to ONNX Runtime's quantizer as a calibration table,
so the graph rewriting stays ORT's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError
from .affine import qparams_from_range, qrange

METHODS = ("minmax", "percentile", "entropy", "mse")
BINS = 2048


@dataclass
class TensorStats:
    lo: float = np.inf
    hi: float = -np.inf
    hist: np.ndarray | None = None  # signed, over [lo, hi]
    abs_hist: np.ndarray | None = None  # |x| over [0, max(|lo|, |hi|)]

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi))


@dataclass
class ActivationStats:
    tensors: dict[str, TensorStats] = field(default_factory=dict)
    samples: int = 0


def float_tensor_names(model: onnx.ModelProto) -> list[str]:
    """Graph input(s) and every float node output (what the quantizer may want a range for)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape"):
            continue
        names += [o for o in node.output if o and types.get(o) == onnx.TensorProto.FLOAT]
    return list(dict.fromkeys(names))


def _session_with_outputs(model: onnx.ModelProto, names: list[str]):
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output}
    for n in names:
        if n not in existing:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor observable
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def collect_stats(model: onnx.ModelProto | str | Path, x: np.ndarray, batch_size: int = 16,
                  names: list[str] | None = None) -> ActivationStats:
    """Min/max and histograms of every float tensor over the calibration inputs ``x``."""
    model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    names = names or float_tensor_names(model)
    sess = _session_with_outputs(model, names)
    input_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    wanted = [i for i, n in enumerate(out_names) if n in set(names)]
    stats = ActivationStats({out_names[i]: TensorStats() for i in wanted}, len(x))
    batches = [np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32) for i in range(0, len(x), batch_size)]

    def run(batch):
        outs = sess.run(None, {input_name: batch})
        return [(out_names[i], outs[i]) for i in wanted]

    for batch in batches:  # pass 1: ranges
        for name, v in run(batch):
            s = stats.tensors[name]
            s.lo, s.hi = min(s.lo, float(v.min())), max(s.hi, float(v.max()))
    for batch in batches:  # pass 2: histograms on the final ranges
        for name, v in run(batch):
            s = stats.tensors[name]
            v = v.ravel()
            # a constant tensor: a span float32 can split into BINS bins (numpy bins in the data's dtype)
            lo, hi = s.lo, s.hi if s.hi > s.lo else s.lo + max(abs(s.lo) * 1e-3, 1e-6)
            h, _ = np.histogram(v, BINS, (lo, hi))
            a, _ = np.histogram(np.abs(v), BINS, (0.0, max(s.absmax, 1e-8)))
            s.hist = h if s.hist is None else s.hist + h
            s.abs_hist = a if s.abs_hist is None else s.abs_hist + a
    return stats


def _percentile_range(s: TensorStats, percentile: float) -> tuple[float, float]:
    edges = np.linspace(s.lo, s.hi, BINS + 1)
    cdf = np.cumsum(s.hist) / max(s.hist.sum(), 1)
    tail = (100.0 - percentile) / 100.0
    lo = edges[np.searchsorted(cdf, tail)] if s.lo < 0 else s.lo
    hi = edges[min(np.searchsorted(cdf, 1 - tail) + 1, BINS)]
    return float(lo), float(hi)


def _kl_threshold(hist: np.ndarray, edges_max: float, levels: int) -> float:
    """TensorRT-style entropy calibration: the clipping threshold of |x| whose quantized
    distribution (``levels`` bins) has the smallest KL divergence from the clipped reference."""
    hist = hist.astype(np.float64).copy()
    hist[0] = 0  # exact zeros (ReLU outputs, padding) are representable: they must not pull the range in
    best, best_i = np.inf, len(hist)
    for i in range(levels, len(hist) + 1, 16):
        sliced = hist[:i]
        p = sliced.copy()
        p[-1] += hist[i:].sum()  # clipped outliers land in the last bin
        nonzero = sliced > 0
        starts = np.linspace(0, i, levels + 1).astype(int)[:-1]
        sizes = np.diff(np.append(starts, i))
        mass = np.add.reduceat(sliced, starts)
        filled = np.add.reduceat(nonzero.astype(np.float64), starts)
        q = np.repeat(mass / np.maximum(filled, 1), sizes) * nonzero
        keep = p > 0
        pn, qn = p[keep] / p.sum(), q[keep] / max(q.sum(), 1e-30)
        kl = float(np.sum(pn * np.log(pn / np.maximum(qn, 1e-12))))
        if kl < best:
            best, best_i = kl, i
    return edges_max * best_i / len(hist)


def _entropy_range(s: TensorStats) -> tuple[float, float]:
    levels = 255 if s.lo >= 0 else 128  # unsigned tensors use all 256 codes on one side
    t = _kl_threshold(s.abs_hist, s.absmax, levels)
    return (s.lo, min(s.hi, t)) if s.lo >= 0 else (max(s.lo, -t), min(s.hi, t))


def _mse_range(s: TensorStats, dtype: str, symmetric: bool) -> tuple[float, float]:
    """The clipped range that minimises the expected squared error (clipping + rounding)
    of the histogram under the actual quantization grid."""
    edges = np.linspace(s.lo, s.hi, BINS + 1)
    centers, counts = (edges[1:] + edges[:-1]) / 2, s.hist.astype(np.float64)
    best, best_range = np.inf, (s.lo, s.hi)
    for alpha in np.linspace(0.1, 1.0, 91):
        lo, hi = s.lo * alpha, s.hi * alpha
        qp = qparams_from_range(lo, hi, dtype, symmetric)
        qmin, qmax = qrange(dtype, symmetric)
        q = np.clip(np.rint(centers / qp.scale) + qp.zero_point, qmin, qmax)
        err = float(np.sum(counts * (qp.scale * (q - qp.zero_point) - centers) ** 2))
        if err < best:
            best, best_range = err, (lo, hi)
    return float(best_range[0]), float(best_range[1])


def compute_ranges(stats: ActivationStats, method: str = "minmax", percentile: float = 99.99,
                   dtype: str = "uint8", symmetric: bool = False, full_range: set[str] | frozenset = frozenset()
                   ) -> dict[str, tuple[float, float]]:
    """One (rmin, rmax) per observed tensor, by ``method``. Tensors in ``full_range`` (the
    model's input and logits: clipping them only loses information) keep min-max."""
    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} unknown; use one of {list(METHODS)}")
    out = {}
    for name, s in stats.tensors.items():
        if not np.isfinite([s.lo, s.hi]).all():
            raise ConfigError(f"tensor {name!r} produced NaN or inf during calibration")
        if method == "minmax" or s.hi <= s.lo or name in full_range:
            out[name] = (s.lo, s.hi)
        elif method == "percentile":
            out[name] = _percentile_range(s, percentile)
        elif method == "entropy":
            out[name] = _entropy_range(s)
        else:
            out[name] = _mse_range(s, dtype, symmetric)
    return out


def graph_io_names(model: onnx.ModelProto | str | Path) -> set[str]:
    model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return {v.name for v in [*model.graph.input, *model.graph.output]}


def write_calibration_table(ranges: dict[str, tuple[float, float]], path: str | Path) -> Path:
    """ONNX Runtime's calibration cache format, so quantize_static uses our ranges as is."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    data = TensorsData(CalibrationMethod.MinMax, {
        n: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for n, (lo, hi) in ranges.items()})
    save_tensors_data(data, path)
    return Path(path)
