"""The device side of split inference: run the head model, send the cut tensor, get the
result. Imports only numpy, onnxruntime, httpx and the standard library (no torch), so it
runs on the device."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Iterable

import httpx
import numpy as np

from ..errors import ConfigError, DataError, EdgeslimError
from ..runtime.affinity import pinned_thread
from . import tensor_format as tf
from .auth import bearer_header
from .netem import EmulatedNetworkTransport, Link, nodelay_transport


class ServerError(EdgeslimError):
    """The server could not be reached, or answered with an error (its JSON message is kept)."""


def check_url(url: str) -> httpx.URL:
    """``url`` as an httpx URL; ConfigError unless it is http(s)://HOST[:PORT][/PATH]."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        raise ConfigError(f"invalid server URL {url!r}: {e}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"invalid server URL {url!r}: give http://HOST:PORT or https://HOST:PORT")
    return parsed


@dataclass
class SplitResult:
    output: np.ndarray
    head_ms: float  # device compute
    request_ms: float  # upload + network + server + download
    total_ms: float
    uplink_bytes: int
    downlink_bytes: int
    server_ms: float | None


class SplitClient:
    """``head``: the head ONNX model (None = full offload: the raw input is sent).
    ``link``: emulate this network in the transport (loopback only). ``quantize``: send the cut
    tensor as uint8 with a scale and zero point (4x fewer bytes than float32). ``token``: the
    server's bearer token; ``verify``: check its TLS certificate (True, False, or the file of a
    self-signed certificate / private CA)."""

    def __init__(self, url: str, head: str | os.PathLike | None = None, threads: int = 1,
                 cpus: Iterable[int] | None = None, link: Link | None = None, quantize: bool = False,
                 timeout_s: float = 120.0, token: str | None = None, verify: bool | str | os.PathLike = True):
        check_url(url)
        self.base_url = url.rstrip("/")
        self.url = self.base_url + "/v1/infer"
        self.cpus = list(cpus) if cpus else None
        self.quantize = quantize
        self.session = None
        if head is not None:
            import onnxruntime as ort

            from ..runtime.onnx_file import open_onnx

            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            self.session = ort.InferenceSession(open_onnx(head).session_source(), opts,
                                                providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
        inner = nodelay_transport(verify)
        self.transport = EmulatedNetworkTransport(link, inner) if link else None
        self.http = httpx.Client(transport=self.transport or inner, timeout=timeout_s, headers=bearer_header(token))

    @property
    def metadata(self) -> dict:
        """The edgeslim metadata (preprocess, class names) the head model carries."""
        if self.session is None:
            return {}
        return json.loads(self.session.get_modelmeta().custom_metadata_map.get("edgeslim", "{}"))

    def load_image(self, path: str | os.PathLike) -> np.ndarray:
        """An image file preprocessed as the model was trained (needs a head model)."""
        from ..runtime.preprocess import Preprocess

        if self.session is None:
            raise ConfigError("an image needs a head model: its metadata says how to preprocess the image. "
                              "Give the head (--head), or send a preprocessed tensor; to offload images whole, "
                              "serve the whole model with `edgeslim serve` and POST them to /v1/classify")
        if "preprocess" not in self.metadata:
            raise DataError("the head model carries no preprocessing metadata; pass a preprocessed tensor")
        try:
            return Preprocess.from_dict(self.metadata["preprocess"]).load_image(path)
        except ValueError as e:
            raise DataError(str(e)) from None

    def input_shape(self) -> tuple[int, ...]:
        """Shape of the tensor to give ``infer``: the head input, or the server's input (offload)."""
        if self.session is not None:
            return tuple(d if isinstance(d, int) else 1 for d in self.session.get_inputs()[0].shape)
        health = self._answer(self._send("GET", self.base_url + "/health")).json()
        if "input_shape" not in health:
            raise ServerError(f"{self.base_url}/health shows no input shape: the server needs a token "
                              "(give --token-file or $EDGESLIM_TOKEN)")
        return tuple(d or 1 for d in health["input_shape"])

    def run_head(self, x: np.ndarray) -> np.ndarray:
        if self.session is None:
            return x
        with pinned_thread(self.cpus):
            return self.session.run(None, {self.input_name: x})[0]

    def encode(self, tensor: np.ndarray) -> bytes:
        if self.quantize and tensor.dtype == np.float32:
            return tf.encode_quantized(tensor)
        return tf.encode(tensor)

    def infer(self, x: np.ndarray) -> SplitResult:
        t0 = time.perf_counter()
        cut = self.run_head(x)
        t1 = time.perf_counter()
        body = self.encode(cut)
        response = self._answer(self._send("POST", self.url, content=body,
                                           headers={"content-type": tf.MEDIA_TYPE}))
        y = tf.decode(response.content)
        t2 = time.perf_counter()
        up = self.transport.last_uplink_bytes if self.transport else len(body)
        down = self.transport.last_downlink_bytes if self.transport else len(response.content)
        server_ms = response.headers.get("x-server-ms")
        return SplitResult(y, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t2 - t0) * 1e3, up, down,
                           float(server_ms) if server_ms else None)

    def _send(self, method: str, url: str, **kwargs) -> httpx.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except httpx.ConnectError as e:
            raise ServerError(f"cannot connect to {self.base_url}: {e}. Is the server running there "
                              "(edgeslim serve / serve-tail), and is the URL right?") from None
        except httpx.TimeoutException:
            raise ServerError(f"{self.base_url} did not answer within {self.http.timeout.read} s") from None
        except httpx.HTTPError as e:
            raise ServerError(f"request to {url} failed: {type(e).__name__}: {e}") from None

    @staticmethod
    def _answer(response: httpx.Response) -> httpx.Response:
        if response.status_code == 200:
            return response
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise ServerError(f"server answered {response.status_code}: {message}")

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "SplitClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
