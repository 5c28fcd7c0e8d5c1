"""Quantization: static int8 through ONNX Runtime's QDQ tooling, and weight sharing."""
from .ort_static import ArrayCalibrationReader, check_calibration_data, quantize_onnx_static
from .weight_sharing import kmeans_codebook, reconstruct, share_weights

__all__ = ["ArrayCalibrationReader", "check_calibration_data", "kmeans_codebook", "quantize_onnx_static",
           "reconstruct", "share_weights"]
