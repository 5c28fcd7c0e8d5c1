"""The inference server: an ONNX model (a split tail, or a whole model on an edge server)
behind HTTP. Requests and responses are tensor messages (``tensor_format``); every bad input
gets a 4xx answer with a JSON ``{"error": ...}`` body and the server keeps serving."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from . import tensor_format as tf
from .affinity import pinned_thread

DEFAULT_MAX_BODY_BYTES = 256 * 2**20


class ModelServer:
    """One ONNX Runtime session; ``run`` validates a decoded tensor against the model input."""

    def __init__(self, model: str | os.PathLike, threads: int = 1, cpus: Iterable[int] | None = None):
        import onnxruntime as ort

        from ..runtime.onnx_file import open_onnx

        path = Path(model)
        source = open_onnx(path).session_source()  # refuses non-ONNX files and escaping external data
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        self.name = path.name
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = [d if isinstance(d, int) else None for d in inp.shape]
        self.input_dtype = np.dtype(_ORT_TYPES.get(inp.type, "float32"))
        self.cpus = list(cpus) if cpus else None
        self.requests = 0
        self.lock = threading.Lock()  # one inference at a time: the emulated server has one core

    def check(self, x: np.ndarray) -> None:
        if x.dtype != self.input_dtype:
            raise tf.TensorFormatError(f"input dtype {x.dtype} does not match the model input "
                                       f"{self.input_name!r} ({self.input_dtype})", status=422)
        if len(x.shape) != len(self.input_shape) or any(
                want is not None and got != want for got, want in zip(x.shape, self.input_shape)):
            shape = tuple("N" if d is None else d for d in self.input_shape)
            raise tf.TensorFormatError(f"input shape {tuple(x.shape)} does not match the model input "
                                       f"{self.input_name!r} {shape}", status=422)

    def run(self, x: np.ndarray) -> np.ndarray:
        self.check(x)
        with self.lock, pinned_thread(self.cpus):
            self.requests += 1
            return self.session.run(None, {self.input_name: x})[0]


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64",
              "tensor(double)": "float64", "tensor(bool)": "bool"}


def create_app(model: str | os.PathLike, threads: int = 1, cpus: Iterable[int] | None = None,
               max_elements: int = tf.DEFAULT_MAX_ELEMENTS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
               ) -> FastAPI:
    """FastAPI app serving ``model``: ``POST /v1/infer`` (tensor in, tensor out), ``GET /health``."""
    server = ModelServer(model, threads, cpus)
    app = FastAPI(title="edgeslim inference server", docs_url=None, redoc_url=None)
    app.state.model_server = server

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": server.name, "input": server.input_name,
                "input_shape": server.input_shape, "input_dtype": server.input_dtype.name,
                "requests": server.requests}

    @app.post("/v1/infer")
    async def infer(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body_bytes):
            return error(413, f"request body of {declared} bytes exceeds the limit of {max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():  # bounded read even without a Content-Length
            body += chunk
            if len(body) > max_body_bytes:
                return error(413, f"request body exceeds the limit of {max_body_bytes} bytes")
        try:
            x = tf.decode(bytes(body), max_elements=max_elements)
            t0 = time.perf_counter()
            # ONNX Runtime releases the GIL; run it in a worker thread so the event loop stays free.
            y = await run_in_threadpool(server.run, x)
            server_ms = (time.perf_counter() - t0) * 1e3
        except tf.TensorFormatError as e:
            return error(e.status, str(e))
        except Exception as e:  # an input the model rejects at run time (e.g. wrong rank)
            return error(422, f"the model could not run on this input: {type(e).__name__}: {e}")
        return Response(tf.encode(np.asarray(y)), media_type=tf.MEDIA_TYPE,
                        headers={"x-server-ms": f"{server_ms:.3f}"})

    return app
