"""What the non-ONNX runtimes share: the optional package each needs, and the JSON sidecar that
carries edgeslim's metadata for formats without a metadata field (``.tflite``, ``.pte``). Torch-free."""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ArtifactError, MissingExtraError

# file suffix -> (runtime name, extra that installs it)
FORMATS = {".onnx": ("onnxruntime", None), ".eslim": ("onnxruntime", None), ".xml": ("openvino", "openvino"),
           ".tflite": ("litert", "litert"), ".pte": ("executorch", "executorch")}
MAX_SIDECAR_BYTES = 1 << 20  # metadata is class names and a preprocessing spec: kilobytes


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional runtime package, or raise one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{what} needs the optional package {module.split('.')[0]!r}: "
                                f"pip install 'edgeslim[{extra}]'") from None


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.tflite`` -> ``model.tflite.json``."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def companion_files(model_path: str | os.PathLike) -> list[Path]:
    """What travels with a model file: an OpenVINO ``.bin``, a ``.tflite``/``.pte`` metadata sidecar."""
    p = Path(model_path)
    return {".xml": [p.with_suffix(".bin")], ".tflite": [sidecar_path(p)], ".pte": [sidecar_path(p)]}.get(p.suffix, [])


def model_bytes(model_path: str | os.PathLike) -> int:
    """The size of a model: its file plus an OpenVINO IR's weights (``.bin``); not the metadata."""
    p = Path(model_path)
    return p.stat().st_size + sum(f.stat().st_size for f in companion_files(p) if f.suffix == ".bin" and f.is_file())


def read_sidecar(model_path: str | os.PathLike) -> dict[str, Any]:
    """The metadata written beside a model file; ``{}`` when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise ArtifactError(f"{path}: {path.stat().st_size:,} bytes is too large for a metadata sidecar "
                            f"(limit {MAX_SIDECAR_BYTES:,}); refusing to read it")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: the metadata sidecar is not valid JSON ({e}); re-export the model") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: the metadata sidecar must be a JSON object; re-export the model")
    return meta


def check_model_file(path: Path, what: str) -> None:
    """Refuse a directory, an empty file or something that is not a regular file with one line."""
    if path.is_dir():
        raise ArtifactError(f"{path}: is a directory, not {what}; refusing to load it")
    if not path.is_file() or path.stat().st_size == 0:
        raise ArtifactError(f"{path}: is empty or not a regular file, not {what}; refusing to load it")
