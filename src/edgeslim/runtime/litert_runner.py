"""LiteRT (TFLite) ``.tflite`` files behind the ``Runner`` interface, run by ``ai-edge-litert``'s
interpreter. Torch-free. The metadata is the JSON sidecar ``model.tflite.json``.

A TFLite graph has fixed shapes; a batch of another size resizes the input where the graph
allows it, and otherwise (a flatten/reshape fixed at batch 1) runs in chunks of the file's batch. An int8 model with int8 inputs/outputs is fed and read in float: inputs are
quantized and outputs dequantized with the scale and zero point the file stores."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .formats import check_model_file, read_sidecar, require
from .runner import Runner, TensorSpec, load_failure


def _quantization(detail: dict) -> tuple[float, int] | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero)) if np.dtype(detail["dtype"]).kind in "iu" and scale else None


def _spec(detail: dict) -> TensorSpec:
    shape = tuple(None if int(s) < 0 or i == 0 else int(d)
                  for i, (d, s) in enumerate(zip(detail["shape"], detail.get("shape_signature", detail["shape"]))))
    dtype = "float32" if _quantization(detail) else np.dtype(detail["dtype"]).name
    return TensorSpec(detail["name"], shape, dtype)


class LiteRtRunner(Runner):
    format = "litert"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        interpreter = require("ai_edge_litert.interpreter", "litert", "running a .tflite model")
        path = Path(path)
        check_model_file(path, "a LiteRT .tflite model")
        self.path, self.name, self.threads = path, path.name, threads
        try:
            self.interpreter = interpreter.Interpreter(model_content=path.read_bytes(), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise load_failure(path, "LiteRT cannot load the model", e) from None
        self.metadata = read_sidecar(path)
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        self._file_shapes = [list(d["shape"]) for d in self._in]
        self._fixed = False

    @property
    def inputs(self) -> list[TensorSpec]:
        return [_spec(d) for d in self._in]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_spec(d) for d in self._out]

    def _resize(self, shapes: dict[int, list[int]]) -> bool:
        try:
            for index, shape in shapes.items():
                self.interpreter.resize_tensor_input(index, shape, strict=False)
            self.interpreter.allocate_tensors()
            return True
        except (RuntimeError, ValueError):
            return False
        finally:
            self._in = self.interpreter.get_input_details()
            self._out = self.interpreter.get_output_details()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(feeds.values())))
        if rows != self._in[0]["shape"][0] and not self._fixed:
            if not self._resize({d["index"]: [rows, *d["shape"][1:]] for d in self._in}):
                self._fixed = True  # the graph cannot take another batch: back to its own, in chunks
                self._resize({d["index"]: list(s) for d, s in zip(self._in, self._file_shapes)})
        step = int(self._in[0]["shape"][0])
        if rows == step:
            return self._invoke(feeds)
        parts = [self._invoke({k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, rows, step)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _invoke(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for d in self._in:
            x = feeds[d["name"]]
            q = _quantization(d)
            if q:
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / q[0] + q[1]), info.min, info.max)
            self.interpreter.set_tensor(d["index"], np.ascontiguousarray(x, dtype=d["dtype"]))
        self.interpreter.invoke()
        out = {}
        for d in self._out:
            y = self.interpreter.get_tensor(d["index"])
            q = _quantization(d)
            out[d["name"]] = (y.astype(np.float32) - q[1]) * q[0] if q else y.copy()
        return out
