"""The inference server: a model (a split tail, or a whole model on an edge server; ONNX or a
verified .eslim) behind HTTP.

Routes: ``POST /v1/infer`` (a tensor message in, a tensor message out), ``POST /v1/classify``
(a PNG/JPEG image in, the class name and probabilities out; for models that carry their
preprocessing), ``GET /health`` and ``GET /metrics`` (Prometheus). Requests run through a dynamic
batcher. Every bad input gets a 4xx answer with a JSON ``{"error": ...}`` body and the server
keeps serving; see ``ServeSettings`` for the limits and ``guard.Guard`` for the token and the
concurrency cap."""
from __future__ import annotations

import asyncio
import io
import os
import time
from typing import Iterable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..runtime.affinity import pinned_thread
from ..runtime.runner import load_model, top_class
from . import tensor_format as tf
from .auth import is_authorized
from .batching import DynamicBatcher
from .config import ServeSettings, default_max_body_bytes
from .guard import Guard, error_response
from .metrics import ServerMetrics

IMAGE_FORMATS = ("PNG", "JPEG")  # what an upload may make Pillow parse
ROUTES = {"/health", "/metrics", "/v1/infer", "/v1/classify"}


class RequestError(Exception):
    """A request the server refuses: ``status`` and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ModelServer:
    """One ONNX Runtime session (``edgeslim.runtime`` loads it: ``.onnx`` or ``.eslim``), the input
    checks, and the batcher every request goes through (one ORT run at a time)."""

    def __init__(self, model: str | os.PathLike, settings: ServeSettings, threads: int = 1,
                 cpus: Iterable[int] | None = None, public_key: str | os.PathLike | None = None,
                 on_batch=None):
        self.runner = load_model(model, threads=threads, public_key=public_key)
        self.name = self.runner.name
        inp = self.runner.inputs[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.input_dtype = np.dtype(inp.dtype)
        self.cpus = list(cpus) if cpus else None
        self.allow_nonfinite = settings.allow_nonfinite
        self.warnings: list[str] = []
        max_batch = settings.max_batch
        if max_batch > 1 and not self.batch_axis_is_dynamic():
            self.warnings.append(f"{self.name}: the input {self.input_name!r} has a fixed first axis "
                                 f"{self.input_shape[:1]}, so requests cannot be batched; serving with batch 1 "
                                 "(`edgeslim export` writes a dynamic batch axis)")
            max_batch = 1
        self.max_batch = max_batch
        self.batcher = DynamicBatcher(self._run_batch, max_batch, settings.max_wait_ms / 1e3, on_batch)
        self.requests = 0

    def batch_axis_is_dynamic(self) -> bool:
        outputs = self.runner.outputs
        return (len(self.input_shape) > 0 and self.input_shape[0] is None
                and all(o.shape and o.shape[0] is None for o in outputs[:1]))

    @property
    def row_bytes(self) -> int | None:
        """Bytes of one input row (None when a non-batch axis is dynamic)."""
        rest = self.input_shape[1:]
        return None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64)) * self.input_dtype.itemsize

    @property
    def accepts_images(self) -> bool:
        return "preprocess" in self.runner.metadata

    def check(self, x: np.ndarray) -> None:
        if x.dtype != self.input_dtype:
            raise RequestError(422, f"input dtype {x.dtype} does not match the model input "
                                    f"{self.input_name!r} ({self.input_dtype})")
        if len(x.shape) != len(self.input_shape) or any(
                want is not None and got != want for got, want in zip(x.shape, self.input_shape)):
            shape = tuple("N" if d is None else d for d in self.input_shape)
            raise RequestError(422, f"input shape {tuple(x.shape)} does not match the model input "
                                    f"{self.input_name!r} {shape}")
        if not self.allow_nonfinite and x.dtype.kind == "f" and not np.isfinite(x).all():
            raise RequestError(422, f"input has {int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} infinite "
                                    "values; send finite numbers (or start the server with --allow-nonfinite)")

    def image_input(self, body: bytes, max_pixels: int) -> np.ndarray:
        """An uploaded image, preprocessed as the model was trained (the model's metadata says how)."""
        if not self.accepts_images:
            raise RequestError(422, f"{self.name} carries no preprocessing metadata (a split tail?); send a "
                                    "preprocessed tensor to /v1/infer")
        try:
            return self.runner.preprocess.load_image(io.BytesIO(body), IMAGE_FORMATS, max_pixels)
        except ValueError as e:
            raise RequestError(422, str(e)) from None

    async def infer(self, x: np.ndarray) -> np.ndarray:
        self.check(x)
        try:
            y = await self.batcher.submit(x)
        except Exception as e:  # an input the model rejects at run time (e.g. a wrong inner shape)
            raise RequestError(422, f"the model could not run on this input: {type(e).__name__}: {e}") from None
        self.requests += 1
        return y

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        with pinned_thread(self.cpus):
            return self.runner.run({self.input_name: x})[self.runner.outputs[0].name]

    def details(self) -> dict:
        return {"model": self.name, "input": self.input_name, "input_shape": self.input_shape,
                "input_dtype": self.input_dtype.name, "max_batch": self.max_batch,
                "accepts_images": self.accepts_images, "requests": self.requests}


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (by its declared
    Content-Length up front, and by counting while reading, so a chunked upload without one
    cannot pass either) and with 408 when it has not fully arrived after ``timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(413, f"request body of {declared} bytes exceeds the limit of {limit:,} bytes")
    body = bytearray()

    async def receive_all() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise RequestError(413, f"request body exceeds the limit of {limit:,} bytes")

    try:
        await asyncio.wait_for(receive_all(), timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout_s:g} s") from None
    return bytes(body)


def create_app(model: str | os.PathLike, settings: ServeSettings | None = None, *, token: str | None = None,
               threads: int = 1, cpus: Iterable[int] | None = None,
               public_key: str | os.PathLike | None = None) -> FastAPI:
    """The server app for ``model``. ``token``: required as ``Authorization: Bearer`` on every
    route but /health (None: no authentication, for loopback use). ``public_key``: verify a
    signed ``.eslim``. ``app.state.model_server`` and ``app.state.metrics`` expose the internals."""
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    server = ModelServer(model, settings, threads, cpus, public_key, on_batch=metrics.batch_size.observe)
    limit = settings.max_body_bytes or default_max_body_bytes(server.row_bytes, server.max_batch)
    # No OpenAPI schema or docs pages: they would describe the server to anyone who asks.
    app = FastAPI(title="edgeslim inference server", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.model_server, app.state.metrics, app.state.max_body_bytes = server, metrics, limit
    app.add_middleware(Guard, token=token, metrics=metrics, max_concurrency=settings.max_concurrency, routes=ROUTES)

    @app.exception_handler(RequestError)
    @app.exception_handler(tf.TensorFormatError)
    async def refuse(request: Request, e: Exception) -> JSONResponse:
        # the body may be partly unread: do not keep a connection whose next request would start mid-body
        return error_response(e.status, str(e), {"connection": "close"} if e.status in (408, 413) else None)

    @app.get("/health")
    def health(request: Request) -> dict:
        if not is_authorized(request.headers.get("authorization"), token):
            return {"status": "ok"}
        return {"status": "ok", **server.details()}

    @app.get("/metrics")
    def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/v1/infer")
    async def infer(request: Request) -> Response:
        body = await read_body(request, limit, settings.request_timeout)
        x = tf.decode(body, max_elements=limit)
        t0 = time.perf_counter()
        y = await server.infer(x)
        return Response(tf.encode(np.asarray(y)), media_type=tf.MEDIA_TYPE,
                        headers={"x-server-ms": f"{(time.perf_counter() - t0) * 1e3:.3f}"})

    @app.post("/v1/classify")
    async def classify(request: Request) -> dict:
        body = await read_body(request, limit, settings.request_timeout)
        x = await run_in_threadpool(server.image_input, body, settings.max_image_pixels)  # decoding takes a while
        p = top_class((await server.infer(x))[0], server.runner.class_names)
        names = server.runner.class_names or [str(i) for i in range(len(p.probabilities))]
        return {"class_index": p.class_index, "class_name": p.class_name, "probability": p.probability,
                "probabilities": dict(zip(names, map(float, p.probabilities)))}

    return app
