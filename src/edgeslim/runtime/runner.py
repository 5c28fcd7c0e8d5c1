"""Run an exported model on the device: ONNX Runtime (and OpenVINO, LiteRT, ExecuTorch) plus numpy."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from .onnx_file import model_file, open_onnx
from .preprocess import Preprocess

METADATA_KEY = "edgeslim"
REQUIRE_SIGNATURE_ENV = "EDGESLIM_REQUIRE_SIGNATURE"
log = logging.getLogger(__name__)


def session_options(threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


@dataclass
class Prediction:
    class_index: int
    class_name: str
    probability: float
    probabilities: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, shape (``None`` for a dynamic axis) and numpy dtype."""
    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


class Runner:
    """What every runtime offers: named inputs/outputs, ``run`` by name, and the preprocessing,
    class names and input shape stored with the model. One subclass per file format
    (``.onnx``/``.eslim``: ONNX Runtime; ``.xml``: OpenVINO; ``.tflite``: LiteRT; ``.pte``: ExecuTorch);
    ``load_model`` picks it from the file suffix."""

    format = ""  # the runtime's short name: onnxruntime, openvino, litert, executorch
    name: str
    metadata: dict[str, Any]
    threads: int | None

    _inputs: list[TensorSpec]  # set by each runtime when it opens the model
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs; returns every output by name."""
        raise NotImplementedError

    @property
    def input_name(self) -> str:
        return self.inputs[0].name

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.metadata.get("preprocess", {}))

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names", []))

    @property
    def input_shape(self) -> tuple[int, ...]:
        if "input_shape" in self.metadata:
            return tuple(self.metadata["input_shape"])
        return tuple(int(d) for d in self.inputs[0].shape[1:])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch already preprocessed to the model's input shape."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.name}: input shape {tuple(x.shape[1:])} != model input {self.input_shape}")
        return self.run({self.input_name: x})[self.outputs[0].name]

    __call__ = predict

    def classify_image(self, path: str | os.PathLike) -> Prediction:
        """Read an image (any size or colour mode: it is converted), return the top class."""
        return top_class(self.predict(self.preprocess.load_image(path))[0], self.class_names)


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64",
               "tensor(double)": "float64", "tensor(bool)": "bool"}


def _ort_spec(arg) -> TensorSpec:
    return TensorSpec(arg.name, tuple(d if isinstance(d, int) else None for d in arg.shape),
                      _ORT_DTYPES.get(arg.type, "float32"))


class OnnxRunner(Runner):
    """An ONNX Runtime session plus the preprocessing and class names stored with the model."""

    format = "onnxruntime"

    def __init__(self, model: bytes | str | os.PathLike, threads: int | None = None, name: str | None = None,
                 metadata: dict[str, Any] | None = None, path: Path | None = None):
        import onnxruntime as ort

        source = model if isinstance(model, bytes) else open_onnx(model).session_source()
        # the file the model came from (an .eslim's, for bytes unpacked from one)
        self.path = path if path is not None or isinstance(model, bytes) else model_file(model, (".onnx",))
        self.name = name or (self.path.name if self.path is not None else "model")
        try:
            self.session = ort.InferenceSession(source, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT's own error types (InvalidGraph, Fail, ...) for models it cannot run
            raise load_failure(self.name, "ONNX Runtime cannot load the model", e) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = metadata if metadata is not None else json.loads(meta.get(METADATA_KEY, "{}"))
        self._inputs = [_ort_spec(a) for a in self.session.get_inputs()]
        self._outputs = [_ort_spec(a) for a in self.session.get_outputs()]
        self.threads = threads

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, feeds)
        return {o.name: v for o, v in zip(self._outputs, values)}


def load_failure(what: str | os.PathLike, problem: str, error: Exception) -> ArtifactError:
    """One line for a model a runtime refuses: the runtime's first line of complaint, no traceback."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ArtifactError(f"{what}: {problem} ({reason})")


def top_class(logits: np.ndarray, class_names: list[str] | None = None) -> Prediction:
    """Softmax of one row of logits and its top class (named when ``class_names`` has it)."""
    logits = np.asarray(logits, np.float64).reshape(-1)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    i = int(probs.argmax())
    names = class_names or []
    return Prediction(i, names[i] if i < len(names) else str(i), float(probs[i]), probs)


def signature_required(require_signature: bool | None = None) -> bool:
    """``require_signature`` if given, else whether ``EDGESLIM_REQUIRE_SIGNATURE`` is set (1/true/yes)."""
    if require_signature is not None:
        return require_signature
    return os.environ.get(REQUIRE_SIGNATURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def load_model(path: str | os.PathLike, threads: int | None = None, public_key: str | os.PathLike | None = None,
               require_signature: bool | None = None) -> Runner:
    """Open a model for inference, the runtime chosen by the file suffix: ``.onnx`` and ``.eslim``
    (ONNX Runtime), ``.xml`` (OpenVINO IR), ``.tflite`` (LiteRT), ``.pte`` (ExecuTorch; see
    ``executorch_runner`` for why that one imports torch). The last three need their extras.

    An ``.eslim`` file's digests are always checked, its signature when ``public_key`` (PEM)
    is given; running one unverified logs a one-line warning. ``require_signature=True`` (default:
    the ``EDGESLIM_REQUIRE_SIGNATURE`` environment variable) refuses anything that is not an
    ``.eslim`` whose signature verified. ``False``: no policy and no warning, for files the
    caller has just written itself. A folder stands for the exported model in it (``model_file``):
    its ``model.eslim`` first when a signature is to be checked, else its ``model.onnx`` first."""
    required = signature_required(require_signature)
    signed_first = public_key is not None or required
    path = model_file(path, (".eslim", ".onnx") if signed_first else (".onnx", ".eslim"))
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix != ".eslim":
        kind = path.suffix if path.suffix in (".xml", ".tflite", ".pte") else ".onnx"
        if public_key is not None:
            raise ArtifactError(f"{path}: {kind} files carry no signature, so --verify cannot check it; pack it "
                                "as .eslim (`edgeslim pack --sign KEY`) and verify that")
        if required:
            raise ArtifactError(f"{path}: signatures are required ({REQUIRE_SIGNATURE_ENV}=1 or "
                                f"--require-signature) and {kind} files carry none; run a signed .eslim with --verify")
        return _open_unsigned(path, threads)
    if required and public_key is None:
        raise ArtifactError(f"{path}: signatures are required ({REQUIRE_SIGNATURE_ENV}=1 or --require-signature) "
                            "but no public key was given to check it; pass --verify KEY.pub")
    from .artifact import open_artifact  # torch-free loader of the compressed format

    onnx_bytes, metadata = open_artifact(path, public_key=public_key)
    if public_key is None and require_signature is None:
        state = "signed, but no public key was given" if metadata["artifact"]["signed"] else "not signed"
        log.warning("warning: running %s unverified (%s; only its checksums were checked); pass --verify KEY.pub, "
                    "or set %s=1 to refuse unverified models", path, state, REQUIRE_SIGNATURE_ENV)
    return OnnxRunner(onnx_bytes, threads, name=path.name, metadata=metadata, path=path)


def _open_unsigned(path: Path, threads: int | None) -> Runner:
    # each runtime's module is imported only for its own files: none is needed for the others
    if path.suffix == ".xml":
        from .openvino_runner import OpenVinoRunner

        return OpenVinoRunner(path, threads)
    if path.suffix == ".tflite":
        from .litert_runner import LiteRtRunner

        return LiteRtRunner(path, threads)
    if path.suffix == ".pte":
        from .executorch_runner import ExecuTorchRunner

        return ExecuTorchRunner(path, threads)
    return OnnxRunner(path, threads)
