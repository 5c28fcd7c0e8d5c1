"""torch -> LiteRT ``.tflite`` with ``litert-torch`` (float), then, for int8, Google's
``ai-edge-quantizer`` on that float file (static int8 weights and activations, min/max calibrated on
the calibration inputs), the metadata in the sidecar ``model.tflite.json``.

Why not litert-torch's own PT2E quantizer: on EfficientNet-Lite0 its int8 file agreed with the
float model on 82.5% of the 200 sample photos' top-1 (79% top-1, float 89%); ai-edge-quantizer's
``static_wi8_ai8`` on the float file agreed on 98% and kept 89.5% top-1.

litert-torch pins ``typing-extensions<4.13`` (through xdsl), which the rest of edgeslim's
dependencies (pydantic 2.12+) cannot share, so it usually lives in a second virtual
environment: when ``litert_torch`` does not import here, the conversion runs in
``$EDGESLIM_LITERT_PYTHON`` (default: ``VENV-litert/bin/python`` beside this one, which
``scripts/bootstrap.sh`` creates) as ``python -m edgeslim.export.tflite_export``. The model goes
there as a checkpoint folder (safetensors + JSON) and the calibration inputs as ``.npy``: nothing
is pickled. The LiteRT *runtime* (``ai-edge-litert``) installs in the main environment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .._io import atomic_write_files
from ..errors import ArtifactError, MissingExtraError
from ..runtime.formats import sidecar_path

LITERT_PYTHON_ENV = "EDGESLIM_LITERT_PYTHON"
CONVERT_TIMEOUT_S = 1800


def _convert_here(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    import litert_torch

    # batch 1: litert-torch 0.10 cannot lower a dynamic batch axis through flatten/reshape
    # (its JAX bridge needs concrete shapes); the runner resizes or runs larger batches in rows
    return bytes(litert_torch.convert(model.eval(), (torch.zeros(1, *input_shape),)).model_content())


def _quantize_here(float_model: bytes, calib: np.ndarray) -> bytes:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer

    signatures = Interpreter(model_content=float_model).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    qt = quantizer.Quantizer(bytearray(float_model))
    qt.load_quantization_recipe("static_wi8_ai8")
    rows = [{name: np.ascontiguousarray(row[None], dtype=np.float32)} for row in calib]
    stats = qt.calibrate({key: rows}, mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
    return bytes(qt.quantize(stats).quantized_model)


def litert_python() -> str | None:
    """The interpreter that has ``litert-torch``: this one, ``$EDGESLIM_LITERT_PYTHON``, or the
    ``-litert`` virtual environment beside this one; ``None`` if there is none."""
    import importlib.util

    if importlib.util.find_spec("litert_torch") is not None:
        return sys.executable
    candidate = os.environ.get(LITERT_PYTHON_ENV) or str(Path(sys.prefix + "-litert") / "bin" / "python")
    return candidate if Path(candidate).is_file() else None


def quantizer_python() -> str | None:
    """The interpreter that has ``ai-edge-quantizer``: this one, else the litert-torch one."""
    import importlib.util

    if importlib.util.find_spec("ai_edge_quantizer") is not None:
        return sys.executable
    return litert_python()


def _run_worker(python: str, args: list[str], failure: str) -> None:
    src = str(Path(__file__).resolve().parents[2])  # this very edgeslim, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([python, "-m", "edgeslim.export.tflite_export", *args], capture_output=True, text=True,
                          env=env, timeout=CONVERT_TIMEOUT_S)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ArtifactError(f"{failure} (in {python}): {tail}")


def _convert_in_subprocess(python: str, model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    from ..models.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="edgeslim-tflite-") as tmp:
        tmp = Path(tmp)
        save_checkpoint(model, tmp / "ckpt", {"input_shape": list(input_shape)})
        _run_worker(python, ["convert", str(tmp / "ckpt"), str(tmp / "model.tflite")],
                    "litert-torch could not convert the model")
        return (tmp / "model.tflite").read_bytes()


def quantize_tflite(float_model: bytes, calib: np.ndarray) -> bytes:
    """Static int8 (``static_wi8_ai8``: int8 weights per channel, int8 activations) of a float
    ``.tflite``, calibrated by min/max on ``calib`` (N, *input shape), one row at a time (the file
    was converted at batch 1). It runs in a child process: ai-edge-quantizer brings absl logging,
    whose handler outlives the call and wrote to a closed stderr later in the same process (a
    test run crashed that way), so a long-lived process (a server, a search) never imports it."""
    python = quantizer_python()
    if python is None:
        raise MissingExtraError("--format tflite --int8 needs the optional package 'ai-edge-quantizer': "
                                "pip install 'edgeslim[litert-quantize]'")
    with tempfile.TemporaryDirectory(prefix="edgeslim-tflite-q-") as tmp:
        tmp = Path(tmp)
        (tmp / "float.tflite").write_bytes(float_model)
        np.save(tmp / "calib.npy", np.ascontiguousarray(calib, dtype=np.float32), allow_pickle=False)
        _run_worker(python, ["quantize", str(tmp / "float.tflite"), str(tmp / "calib.npy"), str(tmp / "int8.tflite")],
                    "ai-edge-quantizer could not quantize the model")
        return (tmp / "int8.tflite").read_bytes()


def export_tflite(model: nn.Module, out: str | Path, input_shape: tuple[int, ...],
                  metadata: dict[str, Any] | None = None, calib: np.ndarray | None = None) -> Path:
    """Write ``model`` as ``.tflite`` (float; int8 when ``calib`` inputs are given) and its sidecar."""
    python = litert_python()
    if python is None:
        raise MissingExtraError("--format tflite needs the optional package 'litert-torch' (here, or in a second "
                                f"environment named by {LITERT_PYTHON_ENV}): pip install 'edgeslim[litert]'")
    if python == sys.executable:
        data = _convert_here(model, input_shape)
    else:
        data = _convert_in_subprocess(python, model, input_shape)
    if calib is not None:
        data = quantize_tflite(data, calib)
    meta = {**(metadata or {}), "int8": calib is not None}
    out = Path(out)
    atomic_write_files({out: data, sidecar_path(out): json.dumps(meta, indent=1).encode("utf-8")})
    return out


def _main(argv: list[str]) -> None:
    """Worker (run by ``_run_worker``): ``convert CHECKPOINT OUT.tflite`` or
    ``quantize FLOAT.tflite CALIB.npy OUT.tflite``."""
    from .._io import atomic_write_bytes
    from ..models.checkpoint import load_checkpoint

    command, *paths = argv
    if command == "convert":
        ckpt = load_checkpoint(paths[0])
        data = _convert_here(ckpt.model, tuple(ckpt.input_shape))
    elif command == "quantize":
        data = _quantize_here(Path(paths[0]).read_bytes(), np.load(paths[1], allow_pickle=False))
    else:
        raise SystemExit(f"unknown command {command!r}: convert | quantize")
    atomic_write_bytes(paths[-1], data)


if __name__ == "__main__":
    _main(sys.argv[1:])
