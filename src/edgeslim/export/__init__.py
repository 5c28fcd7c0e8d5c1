"""Export: ONNX files (and, later, the compressed .eslim artifact)."""
from .api import export_checkpoint, onnx_metadata
from .onnx_export import METADATA_KEY, export_onnx, parity, save_onnx, set_metadata

__all__ = ["export_checkpoint", "export_onnx", "parity", "save_onnx", "set_metadata", "onnx_metadata",
           "METADATA_KEY"]
