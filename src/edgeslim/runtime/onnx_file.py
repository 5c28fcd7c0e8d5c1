"""The one way edgeslim opens a user's ``.onnx`` file (runtime, split planning, serving).

``open_onnx`` reads the file once, refuses what is not an ONNX model (a directory, an empty,
truncated or garbage file, another protobuf) with one ``ArtifactError`` line, and refuses
external-data references (weights stored in side files) that are absolute or lead out of
the model's folder, so a model cannot make edgeslim or ONNX Runtime read ``/etc/passwd`` or
``../../secret``. ONNX Runtime then gets the very bytes that were checked (or, when the model
does have external data beside it, the checked path). Torch-free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import ArtifactError

MAX_ONNX_BYTES = 2**31 - 1  # protobuf's limit; bigger models keep their weights in external data


def _fail(path, message: str) -> ArtifactError:
    return ArtifactError(f"{path}: {message}; refusing to load it")


def _graph_tensors(graph) -> Iterator:
    import onnx

    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            yield from ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs):
                yield from _graph_tensors(sub)


def external_tensors(model) -> list[tuple[str, str]]:
    """``(tensor name, location)`` of every tensor (initializers, constants, subgraphs) whose
    data lives outside the model bytes."""
    import onnx

    out = []
    for t in _graph_tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out.append((t.name, {kv.key: kv.value for kv in t.external_data}.get("location", "")))
    return out


def check_external_data(path: Path, model) -> list[tuple[str, str]]:
    """Refuse any external-data location that is absolute, leaves the model's folder (also
    through a symlink) or is not a regular file there; returns the references."""
    refs = external_tensors(model)
    folder = path.resolve().parent
    for name, location in refs:
        try:
            target = (folder / location).resolve()
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            target = None
        if not location or os.path.isabs(location) or target is None or not target.is_relative_to(folder):
            raise _fail(path, f"tensor {name!r} points to external data {location!r} outside the model's folder")
        if not target.is_file():
            raise _fail(path, f"tensor {name!r} points to external data {location!r}, which is not a file beside "
                              "the model")
    return refs


@dataclass
class OnnxFile:
    """A checked ONNX file: its bytes and parsed model (external data not loaded)."""
    path: Path
    data: bytes = field(repr=False)
    model: object = field(repr=False)
    has_external_data: bool

    def session_source(self) -> bytes | str:
        """What to give ``onnxruntime.InferenceSession``: the checked bytes, or the path when
        the weights are in (checked) side files that ONNX Runtime resolves from it."""
        return str(self.path) if self.has_external_data else self.data


def model_file(path: str | os.PathLike, suffixes: tuple[str, ...] = (".onnx", ".eslim")) -> Path:
    """The model file to open for ``path``: ``path`` itself, or for a folder (a checkpoint, or
    what ``quantize`` / ``compress`` wrote) the ``model.onnx`` (``export``) or ``model.eslim``
    (``pack``) inside it, the first of ``suffixes`` present. A folder without one is refused
    with one line saying to export it, not ONNX Runtime's traceback."""
    path = Path(path)
    if not path.is_dir():
        return path
    names = [f"model{s}" for s in suffixes]
    for name in names:
        if (path / name).is_file():
            return path / name
    raise _fail(path, f"is a directory with no exported model in it ({' or '.join(names)}); if it is a checkpoint "
                      f"folder, run `edgeslim export {path}` first")


def open_onnx(path: str | os.PathLike) -> OnnxFile:
    """Read and check an ONNX file (see the module docstring), or the ``model.onnx`` of a folder
    (``model_file``); ``FileNotFoundError`` if missing."""
    import onnx
    from google.protobuf.message import DecodeError

    path = model_file(path, (".onnx",))
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise _fail(path, "is a directory, not an ONNX model file")
    if not path.is_file():
        raise _fail(path, "is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "is empty, not an ONNX model")
    if size > MAX_ONNX_BYTES:
        raise _fail(path, f"{size:,} bytes is over protobuf's 2 GiB limit; store the weights as external data")
    data = path.read_bytes()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise _fail(path, "not an ONNX model (the protobuf does not parse: truncated or another format)") from None
    if model.ir_version <= 0 or not model.opset_import or not model.HasField("graph") or not model.graph.output:
        raise _fail(path, "not an ONNX model (no IR version, opset or graph outputs: truncated or another protobuf)")
    refs = check_external_data(path, model)
    return OnnxFile(path, data, model, bool(refs))


def load_onnx(path: str | os.PathLike):
    """The checked ``onnx.ModelProto`` of a file, with its (checked) external data loaded."""
    from onnx.external_data_helper import load_external_data_for_model

    f = open_onnx(path)
    if f.has_external_data:
        load_external_data_for_model(f.model, str(f.path.resolve().parent))
    return f.model
