"""Quantization that keeps accuracy: calibrated static int8 (QDQ ONNX through ONNX
Runtime's tooling) with equalization, bias correction, sensitivity analysis and mixed
precision; dynamic int8; quantization-aware training; weight sharing.

The package itself is callable: ``edgeslim.quantize(model, StaticInt8(), data=...)``
is :func:`edgeslim.quantize.api.quantize` (returns an ``edgeslim.Result``).
"""
from .._verb import callable_package
from .affine import QParams, qparams_for, qparams_from_range, sqnr_db
from .ort_static import ArrayCalibrationReader, check_calibration_data, quantize_onnx_static
from .config import (QAT, QUANTIZE_CONFIGS, DynamicInt8, QuantizeMethod, StaticInt8, WeightSharing,
                     quantize_config)
from .weight_sharing import kmeans_codebook, reconstruct, share_weights


def __getattr__(name: str):
    # api pulls in torch-heavy pieces (export, train) lazily
    if name in ("quantize", "quantize_checkpoint"):
        from . import api

        return getattr(api, name)
    if name == "quantize_onnx_dynamic":
        from .dynamic import quantize_onnx_dynamic

        return quantize_onnx_dynamic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")



callable_package(__name__, "edgeslim.quantize.api:quantize")

__all__ = ["ArrayCalibrationReader", "QParams", "StaticInt8", "DynamicInt8", "QAT", "WeightSharing",
           "QuantizeMethod", "QUANTIZE_CONFIGS", "quantize_config", "check_calibration_data",
           "kmeans_codebook", "qparams_for", "qparams_from_range", "quantize", "quantize_checkpoint",
           "quantize_onnx_dynamic", "quantize_onnx_static", "reconstruct", "share_weights", "sqnr_db"]
