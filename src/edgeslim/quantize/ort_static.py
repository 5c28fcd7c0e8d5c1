"""Static int8 quantization of an ONNX model with ONNX Runtime's tooling (QDQ format),
calibrated on real inputs. The result runs on ONNX Runtime's integer kernels."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from ..errors import ConfigError
from .kernels import ReduceRange, resolve_reduce_range


class ArrayCalibrationReader:
    """onnxruntime CalibrationDataReader over a numpy array, in small batches so that
    calibration memory stays bounded whatever the number of samples."""

    def __init__(self, input_name: str, x: np.ndarray, batch_size: int = 32):
        self.input_name, self.x, self.batch_size, self.i = input_name, x, batch_size, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        batch = self.x[self.i:self.i + self.batch_size]
        self.i += self.batch_size
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self):
        self.i = 0


def check_calibration_data(x: np.ndarray, input_shape: tuple[int, ...], min_samples: int = 8) -> None:
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ConfigError(f"calibration data has shape {x.shape}; expected (N, {', '.join(map(str, input_shape))})")
    if len(x) < min_samples:
        raise ConfigError(f"calibration data has {len(x)} samples; at least {min_samples} are needed "
                          "for stable ranges (256 or more is better)")
    if not np.isfinite(x).all():
        raise ConfigError("calibration data contains NaN or inf values; clean the inputs first")


def quantize_onnx_static(float_onnx: str | Path, out: str | Path, calib: np.ndarray,
                         method: str = "minmax", per_channel: bool = True, symmetric_activations: bool = False,
                         nodes_to_exclude: list[str] | None = None, reduce_range: ReduceRange = "auto") -> Path:
    """QDQ int8 model (int8 weights, uint8 activations by default) from a float ONNX model,
    with activation ranges from our calibrator ``method`` (minmax, percentile, entropy, mse);
    ``reduce_range``: 7-bit weights ("auto": where this CPU's int8 kernels saturate, see kernels.py)."""
    from .static import StaticSettings, calibration_ranges, preprocess_onnx, quantize_with_ranges

    settings = StaticSettings(calibration=method, per_channel=per_channel,
                              reduce_range=resolve_reduce_range(reduce_range),
                              symmetric_activations=symmetric_activations,
                              nodes_to_exclude=list(nodes_to_exclude or []))
    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocess_onnx(float_onnx, Path(tmp) / "pre.onnx")
        ranges = calibration_ranges(pre, calib, settings)
        return quantize_with_ranges(pre, out, ranges, settings, metadata_from=float_onnx)
