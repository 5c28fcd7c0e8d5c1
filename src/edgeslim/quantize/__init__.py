"""Quantization: static int8 through ONNX Runtime's QDQ tooling."""
from .ort_static import ArrayCalibrationReader, check_calibration_data, quantize_onnx_static

__all__ = ["ArrayCalibrationReader", "check_calibration_data", "quantize_onnx_static"]
