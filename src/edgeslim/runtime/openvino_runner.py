"""OpenVINO IR (``model.xml`` + ``model.bin``) behind the ``Runner`` interface. Torch-free.

The metadata (preprocess, class names, input shape) is stored in the IR's own ``rt_info`` under
"edgeslim", so the ``.xml``/``.bin`` pair is all a device needs."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from .formats import check_model_file, require
from .runner import METADATA_KEY, Runner, TensorSpec, load_failure

# OpenVINO's CPU plugin defaults to bf16 inference on CPUs that have it (AMD EPYC here): that
# breaks float parity (1e-2) and costs int8 models accuracy. f32 keeps both exact.
PRECISION = {"INFERENCE_PRECISION_HINT": "f32"}


def _spec(port) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)


def ir_metadata(model) -> dict[str, Any]:
    if not model.has_rt_info([METADATA_KEY]):
        return {}
    return json.loads(model.get_rt_info([METADATA_KEY]).astype(str))


class OpenVinoRunner(Runner):
    format = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        ov = require("openvino", "openvino", "running an OpenVINO .xml model")
        path = Path(path)
        check_model_file(path, "an OpenVINO IR .xml file")
        if not path.with_suffix(".bin").is_file():
            raise ArtifactError(f"{path}: its weights {path.with_suffix('.bin').name} are missing; an OpenVINO IR "
                                "is the .xml and the .bin beside it")
        self.path, self.name, self.threads = path, path.name, threads
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            config = {**PRECISION, **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {})}
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as e:
            raise load_failure(path, "OpenVINO cannot load the model", e) from None
        self.metadata = ir_metadata(model)
        self._inputs = [_spec(p) for p in self.compiled.inputs]
        self._outputs = [_spec(p) for p in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer({name: np.ascontiguousarray(x) for name, x in feeds.items()})
        return {spec.name: np.array(result[port]) for spec, port in zip(self._outputs, self.compiled.outputs)}
