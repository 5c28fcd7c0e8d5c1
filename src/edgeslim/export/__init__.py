"""Export: ONNX, OpenVINO IR, LiteRT .tflite and ExecuTorch .pte files (and the compressed .eslim artifact)."""
from .api import SUFFIXES, convert_onnx_file, export_checkpoint, export_deployed, onnx_metadata
from .best import export_best
from .executorch_export import export_executorch
from .openvino_export import export_openvino
from .tflite_export import export_tflite
from .onnx_export import METADATA_KEY, export_onnx, parity, save_onnx, set_metadata
from .optimize import GraphOptimization, fold_maxpool_into_conv, folded_nodes, optimize_onnx

__all__ = ["export_checkpoint", "export_deployed", "export_best", "convert_onnx_file", "SUFFIXES",
           "export_openvino", "export_tflite", "export_executorch", "export_onnx", "parity", "save_onnx", "set_metadata", "onnx_metadata",
           "METADATA_KEY",
           "GraphOptimization", "fold_maxpool_into_conv", "folded_nodes", "optimize_onnx"]
