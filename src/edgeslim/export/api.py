"""``edgeslim.export(model, Export(...), data=..., out=...) -> Result`` (and ``edgeslim export``): a
model (or an ONNX file) -> a deployable file in one of the formats the runtime runs, with a parity
check against PyTorch (or against the source ONNX)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from .._io import atomic_write_bytes
from ..config import Result, _Checked
from ..data.datasets import DataBundle, load_dataset_for
from ..errors import ArtifactError, ConfigError
from ..models.checkpoint import Checkpoint
from ..models.resolve import resolve_model, source_folder
from ..runtime.formats import model_bytes
from .onnx_export import export_onnx, parity
from .optimize import GraphOptimization, OptimizeMode, folded_nodes

SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite", "executorch": ".pte"}
# Refusal limits. Float: the same arithmetic in another runtime differs by rounding only (the
# target is < 1e-4; 1e-3 leaves room for big logits). int8: top-1 agreement with PyTorch float.
FLOAT_TOLERANCE = 1e-3
INT8_MIN_AGREEMENT = 0.95
CALIBRATION_SAMPLES = 256


class Export(_Checked):
    """What to write. ``format``: ``onnx``, ``openvino`` (``.xml`` + ``.bin``), ``tflite``, ``executorch``
    (``.pte``), or ``best`` (every format that installs, benchmarked: the fastest that agrees).
    ``int8``: ``onnx``/``openvino`` use our static QDQ quantization (``edgeslim.quantize``),
    ``tflite`` Google's ai-edge-quantizer on the float file, ``executorch`` XNNPACK's PT2E quantizer;
    all calibrate on training images.
    ``optimize``: exact graph rewrites for ONNX Runtime (``edgeslim.export.optimize``).
    ``parity_samples``: test images (random inputs without the data set) the file must agree on."""
    format: Literal["onnx", "openvino", "tflite", "executorch", "best"] = "onnx"
    int8: bool = False
    optimize: OptimizeMode = "auto"
    parity_samples: int = Field(256, ge=1)


def onnx_metadata(ckpt: Checkpoint) -> dict:
    keys = ("preprocess", "class_names", "dataset", "input_shape", "architecture", "compression")
    meta = {k: ckpt.meta[k] for k in keys if k in ckpt.meta}
    meta["metrics"] = {k: v for k, v in ckpt.meta.get("metrics", {}).items() if isinstance(v, (int, float))}
    return meta


def export_deployed(model, path: str | Path, input_shape: tuple[int, ...], metadata: dict | None, timing) -> Path:
    """The float ONNX file a user deploys, as ``edgeslim export`` writes it (graph rewrites kept
    where measured not slower, ``optimize="auto"``), timed with ``timing`` (an ``edgeslim.Timing``:
    its batch sizes and threads). Every speed comparison against float (quantize, compress) uses
    this one baseline."""
    return export_onnx(model, path, input_shape, metadata,
                       optimize=GraphOptimization("auto", tuple(timing.batch), timing.threads))


def check_parity(result: dict, int8: bool, path: Path) -> None:
    """Refuse (and remove) an export whose outputs are not those of the reference."""
    if int8 and result["top1_agreement"] < INT8_MIN_AGREEMENT:
        problem = f"int8 top-1 agreement {result['top1_agreement']:.4f} < {INT8_MIN_AGREEMENT}"
    elif not int8 and result["max_abs_diff"] > FLOAT_TOLERANCE:
        problem = f"max |diff| {result['max_abs_diff']:.2e} > {FLOAT_TOLERANCE:.0e}"
    else:
        return
    for p in written_files(path):
        p.unlink(missing_ok=True)
    raise ArtifactError(f"{path}: parity check failed ({problem} on {result['samples']} {result['parity_inputs']}); "
                        "the file was removed. Export to another format, or report the model")


def export(model: str | Path | Checkpoint, config: Export | dict | None = None,
           data: str | DataBundle | None = None, *, out: str | Path | None = None,
           data_dir: str | Path | None = None) -> Result:
    """Export a model (a checkpoint folder, registry name, ...: see :func:`edgeslim.models.resolve_model`;
    or an ``.onnx`` file, for ``openvino``) as ``config`` says (an :class:`Export`). Parity is checked
    on ``data``'s test images (a data set name or DataBundle; default: the one the model records;
    random inputs if it is not available) and a file that fails it is refused. ``out``: the file to
    write (default: ``CHECKPOINT/model.onnx``, ``.xml``, ...). Returns a Result: ``artifact`` the
    written file, ``summary`` the parity report (max / mean |diff|, top-1 agreement, bytes, ...)."""
    config = config if isinstance(config, Export) else Export(**(config or {}))
    report = _export(model, out, config.format, config.parity_samples, data, data_dir, config.optimize, config.int8)
    return Result(artifact=Path(report["path"]), summary=report)


def _export(folder: str | Path | Checkpoint, out: str | Path | None, fmt: str, parity_samples: int,
            data: str | DataBundle | None, data_dir: str | Path | None, optimize: OptimizeMode, int8: bool) -> dict:
    if fmt == "best":
        from .best import export_best

        return export_best(folder, out, parity_samples=parity_samples, data=data, data_dir=data_dir, int8=int8)
    if isinstance(folder, (str, Path)) and Path(folder).is_file() and Path(folder).suffix == ".onnx":
        return convert_onnx_file(folder, out, fmt, parity_samples, data, data_dir)
    ckpt = resolve_model(folder)
    if out is None and source_folder(ckpt) is None:
        raise ConfigError(f"{folder}: not a checkpoint folder, so there is no default output; pass out= (--out)")
    out = Path(out) if out else source_folder(ckpt) / f"model{SUFFIXES[fmt]}"
    if out.suffix != SUFFIXES[fmt]:
        raise ConfigError(f"--out {out}: a {fmt} file name must end in {SUFFIXES[fmt]} (the runtime picks the "
                          "format from the suffix)")
    inputs, source = _parity_inputs(ckpt.meta, ckpt.input_shape, parity_samples, data, data_dir)
    meta = onnx_metadata(ckpt)
    calib = _calibration_inputs(ckpt, data, data_dir, inputs) if int8 else None
    extra: dict = {}
    if fmt in ("onnx", "openvino"):
        with tempfile.TemporaryDirectory(prefix="edgeslim-export-") as tmp:
            onnx_path = out if fmt == "onnx" else Path(tmp) / "model.onnx"
            if int8:
                _qdq_onnx(ckpt, calib, Path(tmp) / "q", onnx_path)
            else:
                export_onnx(ckpt.model, onnx_path, ckpt.input_shape, meta, optimize=optimize)
                extra["folded_conv_pool"] = folded_nodes(onnx_path)
            if fmt == "openvino":
                from .openvino_export import export_openvino

                export_openvino(onnx_path, out, meta)
    elif fmt == "tflite":
        from .tflite_export import export_tflite

        export_tflite(ckpt.model, out, ckpt.input_shape, meta, calib)
    else:
        from .executorch_export import export_executorch

        export_executorch(ckpt.model, out, ckpt.input_shape, meta, calib)
    result = {"path": str(out), "format": fmt, "int8": int8, "bytes": model_bytes(out), "parity_inputs": source,
              "parity_reference": "pytorch", **extra, **parity(ckpt.model, out, inputs)}
    if fmt == "onnx":
        result["onnx"] = str(out)
    check_parity(result, int8, out)
    return result


def written_files(path: str | Path) -> list[Path]:
    """A model file and what travels with it: an OpenVINO ``.bin``, a metadata sidecar."""
    from ..runtime.formats import companion_files

    return [Path(path), *companion_files(path)]


def convert_onnx_file(onnx_path: str | Path, out: str | Path | None, fmt: str, parity_samples: int = 256,
                      data: str | DataBundle | None = None, data_dir: str | Path | None = None) -> dict:
    """An existing ``.onnx`` (float or our QDQ int8) -> OpenVINO IR; parity against ONNX Runtime."""
    from ..runtime import load_model

    if fmt != "openvino":
        raise ConfigError(f"an .onnx file converts to openvino only; {fmt} needs the checkpoint folder "
                          "(it is converted from the PyTorch model)")
    from .openvino_export import export_openvino

    onnx_path = Path(onnx_path)
    out = Path(out) if out else onnx_path.with_suffix(".xml")
    ref = load_model(onnx_path, require_signature=False)
    inputs, source = _parity_inputs(ref.metadata, ref.input_shape, parity_samples, data, data_dir)
    x = inputs.numpy()
    export_openvino(onnx_path, out, ref.metadata)
    result = {"path": str(out), "format": fmt, "int8": _is_qdq(onnx_path), "bytes": model_bytes(out), "parity_inputs": source,
              "parity_reference": f"onnxruntime on {onnx_path.name}", **compare_outputs(ref.predict(x), out, x)}
    check_parity(result, result["int8"], out)
    return result


def compare_outputs(ref: np.ndarray, path: str | Path, x: np.ndarray) -> dict:
    from ..runtime import load_model

    got = load_model(path, require_signature=False).predict(x)
    diff = np.abs(ref - got)
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()), "samples": len(x)}


def _is_qdq(onnx_path: Path) -> bool:
    from ..runtime.onnx_file import open_onnx

    return any(n.op_type == "QuantizeLinear" for n in open_onnx(onnx_path).model.graph.node)


def _qdq_onnx(ckpt: Checkpoint, calib: np.ndarray, work: Path, out: Path) -> None:
    from ..quantize import StaticInt8, quantize

    result = quantize(ckpt, StaticInt8(sensitivity=False, benchmark=False), calib, out=work,
                      metadata=onnx_metadata(ckpt))
    atomic_write_bytes(out, Path(result.artifact).read_bytes())


def _data_for(meta: dict, data: str | DataBundle | None, data_dir) -> DataBundle:
    """The data a parity check or calibration reads: ``data`` itself, the data set it names, or the model's."""
    return data if isinstance(data, DataBundle) else load_dataset_for(meta, data, data_dir)


def _calibration_inputs(ckpt: Checkpoint, data, data_dir, fallback) -> np.ndarray:
    try:
        return _data_for(ckpt.meta, data, data_dir).train.subset(CALIBRATION_SAMPLES).x.numpy()
    except Exception:  # no data here: calibrate on the parity inputs (random), as the ONNX path does
        return fallback[:CALIBRATION_SAMPLES].numpy()


def _parity_inputs(meta: dict, input_shape: tuple[int, ...], n: int, data, data_dir):
    """(inputs, what they are): ``n`` test images of the model's data set, or random inputs where
    the data set is not here (they still catch export and conversion bugs)."""
    import torch

    try:
        bundle = _data_for(meta, data, data_dir)
        return bundle.test.x[:n], f"{bundle.name} test images"
    except Exception:  # no data here
        return torch.randn(n, *input_shape), "random inputs"
