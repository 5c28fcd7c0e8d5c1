"""Weight statistics read from an ONNX graph (works for float and int8 QDQ models)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def onnx_weight_stats(path: str | Path) -> dict[str, int]:
    """Parameters and non-zeros over weight tensors (initializers of rank >= 2; biases,
    scales and zero points are not weights)."""
    model = onnx.load(str(path))
    params = nonzero = 0
    for init in model.graph.initializer:
        if len(init.dims) >= 2:
            a = numpy_helper.to_array(init)
            params += a.size
            nonzero += int(np.count_nonzero(a))
    return {"weight_params": params, "weight_nonzero": nonzero}
