"""Export: ONNX, OpenVINO IR, LiteRT .tflite and ExecuTorch .pte files (and the compressed .eslim artifact).
``edgeslim.export(model, Export(...), data=..., out=...) -> Result`` (this package is callable:
:func:`edgeslim.export.api.export`)."""
from .._verb import callable_package
from .api import SUFFIXES, Export, convert_onnx_file, export, export_deployed, onnx_metadata
from .best import export_best
from .executorch_export import export_executorch
from .openvino_export import export_openvino
from .tflite_export import export_tflite
from .onnx_export import METADATA_KEY, export_onnx, parity, save_onnx, set_metadata
from .optimize import GraphOptimization, fold_maxpool_into_conv, folded_nodes, optimize_onnx

__all__ = ["export", "Export", "export_deployed", "export_best", "convert_onnx_file", "SUFFIXES",
           "export_openvino", "export_tflite", "export_executorch", "export_onnx", "parity", "save_onnx", "set_metadata", "onnx_metadata",
           "METADATA_KEY",
           "GraphOptimization", "fold_maxpool_into_conv", "folded_nodes", "optimize_onnx"]

callable_package(__name__, "edgeslim.export.api:export")
