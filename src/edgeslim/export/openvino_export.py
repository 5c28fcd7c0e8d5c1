"""ONNX -> OpenVINO IR (``.xml`` + ``.bin``), the metadata in the IR's ``rt_info``.

int8: converting our QDQ ONNX (``edgeslim quantize``) keeps its calibration exactly, and
OpenVINO runs the QuantizeLinear/DequantizeLinear pairs as real int8 kernels; NNCF's own PTQ
would calibrate again (and needs a C++ build of its torch extension), so it is not used."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .._io import atomic_write_files
from ..runtime.formats import require
from ..runtime.runner import METADATA_KEY


def export_openvino(onnx_path: str | Path, out: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Convert an ONNX file (float or QDQ int8) to ``out`` (``.xml``; the weights go to the
    ``.bin`` beside it), both written atomically. Weights stay float32 (no fp16 compression),
    so a float export computes what the ONNX model does."""
    import json

    ov = require("openvino", "openvino", "--format openvino")
    out = Path(out)
    model = ov.convert_model(str(onnx_path))
    if metadata:
        model.set_rt_info(json.dumps(metadata), [METADATA_KEY])
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        # the .bin first: a reader that finds the new .xml always finds its weights
        atomic_write_files({out.with_suffix(".bin"): tmp_xml.with_suffix(".bin").read_bytes(),
                            out: tmp_xml.read_bytes()})
    return out
