"""torch -> LiteRT ``.tflite`` with ``litert-torch`` (float, or int8 with its PT2E quantizer:
int8 weights, activations, inputs and outputs), the metadata in the sidecar ``model.tflite.json``.

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


def _convert_here(model: nn.Module, input_shape: tuple[int, ...], calib: np.ndarray | None) -> bytes:
    import litert_torch

    # batch 1: litert-torch 0.10 cannot lower a dynamic batch axis through flatten/reshape
    # (its JAX bridge needs concrete shapes); the runner resizes or runs larger batches in rows
    example = (torch.zeros(1, *input_shape),)
    model = model.eval()
    if calib is None:
        return bytes(litert_torch.convert(model, example).model_content())
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    with torch.no_grad():
        for row in calib:  # the graph was captured at batch 1
            prepared(torch.from_numpy(np.ascontiguousarray(row[None], dtype=np.float32)))
    quantized = convert_pt2e(prepared, fold_quantize=False)
    return bytes(litert_torch.convert(quantized, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
                 .model_content())


def litert_python() -> str | None:
    """The interpreter that has ``litert-torch``: this one, ``$EDGESLIM_LITERT_PYTHON``, or the
    ``-litert`` virtual environment beside this one; ``None`` if there is none."""
    import importlib.util

    if importlib.util.find_spec("litert_torch") is not None:
        return sys.executable
    candidate = os.environ.get(LITERT_PYTHON_ENV) or str(Path(sys.prefix + "-litert") / "bin" / "python")
    return candidate if Path(candidate).is_file() else None


def _convert_in_subprocess(python: str, model: nn.Module, input_shape: tuple[int, ...],
                           calib: np.ndarray | None) -> bytes:
    from ..models.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="edgeslim-tflite-") as tmp:
        tmp = Path(tmp)
        save_checkpoint(model, tmp / "ckpt", {"input_shape": list(input_shape)})
        args = [python, "-m", "edgeslim.export.tflite_export", str(tmp / "ckpt"), str(tmp / "model.tflite")]
        if calib is not None:
            np.save(tmp / "calib.npy", np.ascontiguousarray(calib, dtype=np.float32), allow_pickle=False)
            args.append(str(tmp / "calib.npy"))
        src = str(Path(__file__).resolve().parents[2])  # this very edgeslim, not another install
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=CONVERT_TIMEOUT_S)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ArtifactError(f"litert-torch could not convert the model (in {python}): {tail}")
        return (tmp / "model.tflite").read_bytes()


def export_tflite(model: nn.Module, out: str | Path, input_shape: tuple[int, ...],
                  metadata: dict[str, Any] | None = None, calib: np.ndarray | None = None) -> Path:
    """Write ``model`` as ``.tflite`` (float; int8 when ``calib`` inputs are given) and its sidecar."""
    python = litert_python()
    if python is None:
        raise MissingExtraError("--format tflite needs the optional package 'litert-torch' (here, or in a second "
                                f"environment named by {LITERT_PYTHON_ENV}): pip install 'edgeslim[litert]'")
    if python == sys.executable:
        data = _convert_here(model, input_shape, calib)
    else:
        data = _convert_in_subprocess(python, model, input_shape, calib)
    meta = {**(metadata or {}), "int8": calib is not None}
    out = Path(out)
    atomic_write_files({out: data, sidecar_path(out): json.dumps(meta, indent=1).encode("utf-8")})
    return out


def _main(argv: list[str]) -> None:
    """Worker: ``CHECKPOINT OUT.tflite [CALIB.npy]`` (run by ``_convert_in_subprocess``)."""
    from .._io import atomic_write_bytes
    from ..models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(argv[0])
    calib = np.load(argv[2], allow_pickle=False) if len(argv) > 2 else None
    atomic_write_bytes(argv[1], _convert_here(ckpt.model, tuple(ckpt.input_shape), calib))


if __name__ == "__main__":
    _main(sys.argv[1:])
