"""ExecuTorch ``.pte`` programs (XNNPACK backend) behind the ``Runner`` interface.

THE ONE EXCEPTION to "the runtime never imports torch": ExecuTorch's Python bindings
(``executorch.extension.pybindings``, the only Python way to run a ``.pte``) are linked against
libtorch and import torch before they load. So this module imports them only when a ``.pte``
is opened, and nothing else in ``edgeslim.runtime`` does; ``.onnx``, ``.eslim``, ``.xml`` and
``.tflite`` files still run without torch. On a device, ExecuTorch's C++ runtime runs the same
``.pte`` without Python or torch. The metadata is the JSON sidecar ``model.pte.json``
(the tensor names too: a ``.pte`` stores none)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .formats import check_model_file, read_sidecar, require
from .runner import Runner, TensorSpec, load_failure

_DTYPES = {6: "float32", 1: "int8", 0: "uint8", 3: "int32", 4: "int64", 5: "float16", 7: "float64", 11: "bool"}


def _specs(meta, count: int, names: list[str], prefix: str) -> list[TensorSpec]:
    specs = []
    for i in range(count):
        info = meta(i)
        name = names[i] if i < len(names) else f"{prefix}_{i}"
        # the batch axis is dynamic (exported with an upper bound): the planned size is that bound
        shape = (None, *(int(d) for d in info.sizes()[1:]))
        specs.append(TensorSpec(name, shape, _DTYPES.get(int(info.dtype()), "float32")))
    return specs


class ExecuTorchRunner(Runner):
    format = "executorch"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        path = Path(path)
        check_model_file(path, "an ExecuTorch .pte program")
        bindings = require("executorch.extension.pybindings.portable_lib", "executorch", "running a .pte model")
        self._torch = require("torch", "executorch", "running a .pte model")
        self.path, self.name, self.threads = path, path.name, threads
        if threads:
            bindings._unsafe_reset_threadpool(int(threads))  # XNNPACK's pool is process-wide
        try:
            self.module = bindings._load_for_executorch(str(path))
            meta = self.module.method_meta("forward")
        except (RuntimeError, ValueError) as e:
            raise load_failure(path, "ExecuTorch cannot load the program", e) from None
        self.metadata = read_sidecar(path)
        io = self.metadata.get("io_names", {})
        self._inputs = _specs(meta.input_tensor_meta, meta.num_inputs(), io.get("inputs", ["input"]), "input")
        self._outputs = _specs(meta.output_tensor_meta, meta.num_outputs(), io.get("outputs", ["logits"]), "output")
        # memory is planned for the largest batch the program takes: larger batches run in chunks
        self.max_rows = int(meta.input_tensor_meta(0).sizes()[0]) if meta.num_inputs() else 1

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(feeds.values())))
        parts: list[list[np.ndarray]] = []
        for start in range(0, max(rows, 1), self.max_rows):
            args = [self._torch.from_numpy(np.ascontiguousarray(feeds[s.name][start:start + self.max_rows]))
                    for s in self._inputs]
            parts.append([v.numpy().copy() for v in self.module.forward(args)])
        return {s.name: np.concatenate([p[i] for p in parts]) for i, s in enumerate(self._outputs)}
