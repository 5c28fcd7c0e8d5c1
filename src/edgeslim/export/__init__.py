"""Export: ONNX files (and, later, the compressed .eslim artifact)."""
from .api import export_checkpoint, export_deployed, onnx_metadata
from .onnx_export import METADATA_KEY, export_onnx, parity, save_onnx, set_metadata
from .optimize import GraphOptimization, fold_maxpool_into_conv, folded_nodes, optimize_onnx

__all__ = ["export_checkpoint", "export_deployed", "export_onnx", "parity", "save_onnx", "set_metadata", "onnx_metadata",
           "METADATA_KEY",
           "GraphOptimization", "fold_maxpool_into_conv", "folded_nodes", "optimize_onnx"]
