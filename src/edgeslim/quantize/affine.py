"""Affine (uniform) quantization: ``r = S * (q - Z)``.

One small numpy module used everywhere (calibration ranges -> scale/zero point, bias
correction, QAT, summaries), with the same conventions as ONNX Runtime's quantizer so
that what we simulate is what the int8 kernels compute:

- the real range always contains 0 (so that 0 and zero padding are exact);
- symmetric int8 uses the narrow range [-127, 127] with Z = 0; symmetric uint8 uses
  [0, 255] with Z = 128;
- asymmetric: S = (rmax - rmin) / (qmax - qmin), Z = round(qmin - rmin / S);
- per-channel: one (S, Z) per slice along ``axis`` (output channels for weights);
- ``reduce_range``: 7-bit int8 weights in [-64, 64], for CPUs whose int8 kernels saturate
  (``edgeslim.quantize.kernels``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

DTYPES = {"int8": np.int8, "uint8": np.uint8}


def qrange(dtype: str, symmetric: bool = False, reduce_range: bool = False) -> tuple[int, int]:
    """Integer range used for ``dtype``; symmetric int8 drops -128 so that +-absmax map to +-127;
    ``reduce_range`` halves it as ONNX Runtime's quantizer does (int8 [-64, 64], uint8 [0, 127])."""
    if reduce_range and dtype in ("int8", "uint8"):
        return (-64, 64) if dtype == "int8" else (0, 127)
    if dtype == "int8":
        return (-127, 127) if symmetric else (-128, 127)
    if dtype == "uint8":
        return 0, 255
    raise ConfigError(f"dtype {dtype!r}: use 'int8' or 'uint8'")


@dataclass
class QParams:
    scale: np.ndarray  # float32, shape () per-tensor or (C,) per-channel
    zero_point: np.ndarray  # same shape, integer values stored as int32
    dtype: str = "int8"
    axis: int | None = None
    reduce_range: bool = False

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def _bcast(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.axis is None:
            return v
        shape = [1] * x.ndim
        shape[self.axis] = -1
        return v.reshape(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        qmin, qmax = qrange(self.dtype, reduce_range=self.reduce_range)
        s, z = self._bcast(x, self.scale), self._bcast(x, self.zero_point)
        return np.clip(np.rint(np.asarray(x) / s) + z, qmin, qmax).astype(DTYPES[self.dtype])

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        s, z = self._bcast(q, self.scale), self._bcast(q, self.zero_point)
        return (s * (q.astype(np.float32) - z)).astype(np.float32)

    def fake_quantize(self, x: np.ndarray) -> np.ndarray:
        return self.dequantize(self.quantize(x))

    def to_dict(self) -> dict:
        s, z = np.atleast_1d(self.scale), np.atleast_1d(self.zero_point)
        out = {"dtype": self.dtype, "axis": self.axis}
        if s.size <= 64:
            out.update(scale=[float(v) for v in s], zero_point=[int(v) for v in z])
        else:  # long per-channel vectors: keep the summary readable
            out.update(channels=int(s.size), scale_min=float(s.min()), scale_max=float(s.max()),
                       scale_mean=float(s.mean()), zero_point_unique=sorted({int(v) for v in z})[:8])
        return out


def qparams_from_range(rmin, rmax, dtype: str = "int8", symmetric: bool = False,
                       axis: int | None = None, reduce_range: bool = False) -> QParams:
    """Scale and zero point that map the real range [rmin, rmax] (extended to hold 0)
    onto ``dtype``; arrays of ranges give per-channel parameters along ``axis``."""
    rmin = np.minimum(np.asarray(rmin, dtype=np.float64), 0.0)
    rmax = np.maximum(np.asarray(rmax, dtype=np.float64), 0.0)
    if np.any(rmin > rmax):
        raise ConfigError("quantization range has rmin > rmax")
    qmin, qmax = qrange(dtype, symmetric, reduce_range)
    if symmetric:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        scale = 2 * absmax / (qmax - qmin)
        zero = np.full(scale.shape, 0 if dtype == "int8" else 128, dtype=np.float64)
    else:
        scale = (rmax - rmin) / (qmax - qmin)
        zero = np.zeros_like(scale)
    scale = np.where(scale > 0, scale, 1.0)  # an all-zero tensor: any scale is exact
    if not symmetric:
        zero = np.clip(np.rint(qmin - rmin / scale), qmin, qmax)
    return QParams(scale.astype(np.float32), zero.astype(np.int32), dtype, axis, reduce_range)


def qparams_for(x: np.ndarray, dtype: str = "int8", symmetric: bool = True, axis: int | None = None,
                reduce_range: bool = False) -> QParams:
    """Min-max parameters for a tensor, per-tensor or per-channel along ``axis``."""
    x = np.asarray(x, dtype=np.float32)
    if axis is None:
        return qparams_from_range(x.min(), x.max(), dtype, symmetric, reduce_range=reduce_range)
    flat = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return qparams_from_range(flat.min(1), flat.max(1), dtype, symmetric, axis, reduce_range)


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (higher is better; +inf when exact)."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - np.asarray(approximation, dtype=np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return float("inf")
    return 10 * np.log10(max(signal, 1e-30) / noise)
