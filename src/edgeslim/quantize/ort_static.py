"""Static int8 quantization of an ONNX model with ONNX Runtime's tooling (QDQ format),
calibrated on real inputs. The result runs on ONNX Runtime's integer kernels."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError


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
                         method: str = "minmax", per_channel: bool = True) -> Path:
    """QDQ int8 model (int8 weights, uint8 activations) from a float ONNX model."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ConfigError(f"calibration method {method!r} unknown; use one of {sorted(methods)}")
    model = onnx.load(str(float_onnx))
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), ArrayCalibrationReader(input_name, calib),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method])
    # keep the edgeslim metadata (preprocessing, class names) on the quantized model
    q = onnx.load(str(out))
    for prop in model.metadata_props:
        q.metadata_props.add().CopyFrom(prop)
    onnx.save(q, str(out))
    return Path(out)
