"""``edgeslim export``: checkpoint folder -> model.onnx, with a parity report."""
from __future__ import annotations

from pathlib import Path

from ..data.datasets import load_dataset_for
from ..errors import ConfigError
from ..models.checkpoint import Checkpoint
from ..models.resolve import resolve_model, source_folder
from .onnx_export import export_onnx, parity
from .optimize import GraphOptimization, OptimizeMode, folded_nodes


def onnx_metadata(ckpt: Checkpoint) -> dict:
    keys = ("preprocess", "class_names", "dataset", "input_shape", "architecture", "compression")
    meta = {k: ckpt.meta[k] for k in keys if k in ckpt.meta}
    meta["metrics"] = {k: v for k, v in ckpt.meta.get("metrics", {}).items() if isinstance(v, (int, float))}
    return meta


def export_deployed(model, path: str | Path, input_shape: tuple[int, ...], metadata: dict | None, timing) -> Path:
    """The float ONNX file a user deploys, as ``edgeslim export`` writes it (graph rewrites kept
    where measured faster, ``optimize="auto"``), timed with ``timing`` (an ``edgeslim.Timing``: its
    first batch size and its threads). Every speed comparison against float (quantize, compress)
    uses this one baseline."""
    return export_onnx(model, path, input_shape, metadata,
                       optimize=GraphOptimization("auto", timing.batch[0], timing.threads))


def export_checkpoint(folder: str | Path | Checkpoint, out: str | Path | None = None, fmt: str = "onnx",
                      parity_samples: int = 256, data_dir: str | Path | None = None,
                      optimize: OptimizeMode = "auto") -> dict:
    """Export a checkpoint and check parity on real test images (random inputs if the
    data set is not available). ``optimize``: exact graph rewrites for ONNX Runtime, kept
    where measured faster here (``auto``), always, or never (``edgeslim.export.optimize``)."""
    if fmt != "onnx":
        raise ConfigError(f"format {fmt!r} is not supported; use 'onnx' (or `edgeslim pack` for a compressed .eslim)")
    ckpt = resolve_model(folder)
    if out is None and source_folder(ckpt) is None:
        raise ConfigError(f"{folder}: not a checkpoint folder, so there is no default output; pass out= (--out)")
    out = Path(out) if out else source_folder(ckpt) / "model.onnx"
    export_onnx(ckpt.model, out, ckpt.input_shape, onnx_metadata(ckpt), optimize=optimize)
    inputs, source = _parity_inputs(ckpt, parity_samples, data_dir)
    return {"onnx": str(out), "bytes": out.stat().st_size, "parity_inputs": source,
            "folded_conv_pool": folded_nodes(out), **parity(ckpt.model, out, inputs)}


def _parity_inputs(ckpt: Checkpoint, n: int, data_dir):
    import torch

    try:
        data = load_dataset_for(ckpt.meta, data_dir=data_dir)
        return data.test.x[:n], f"{data.name} test images"
    except Exception:  # no data here: random inputs still catch export bugs
        return torch.randn(n, *ckpt.input_shape), "random inputs"
