"""``edgeslim eval``: everything a user asks about a model in one dict: a checkpoint folder
(torch), or a deployable ``.onnx`` / ``.eslim`` file (evaluated by the torch-free runtime, as on
the device)."""
from __future__ import annotations

from pathlib import Path

from ..data.datasets import DataBundle, load_dataset_for
from ..errors import DataError
from ..models.checkpoint import WEIGHTS, load_checkpoint
from .metrics import evaluate_split
from .size import file_bytes, size_report

MODEL_FILES = (".onnx", ".eslim", ".xml", ".tflite", ".pte")  # every format edgeslim.runtime runs


def check_data_fits(data: DataBundle, input_shape: tuple[int, ...], class_names: list[str], what: str) -> None:
    """Refuse a data set whose inputs or classes are not the model's (a score on it means nothing)."""
    if tuple(data.input_shape) != tuple(input_shape):
        raise DataError(f"data set {data.name} gives inputs of shape {tuple(data.input_shape)}, but {what} takes "
                        f"{tuple(input_shape)}; evaluate it on the data set it was trained on")
    if class_names and list(class_names) != list(data.class_names):
        raise DataError(f"data set {data.name} has classes {_names(data.class_names)}, but {what} predicts "
                        f"{_names(class_names)}; evaluate it on the data set it was trained on")


def _names(names: list[str]) -> str:
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


def evaluate_checkpoint(folder: str | Path, dataset: str | None = None, data_dir: str | Path | None = None,
                        limit: int | None = None) -> dict:
    """Test-set accuracy, loss, per-class accuracy, params, non-zeros, MACs and bytes of a
    checkpoint folder, or of an exported ``.onnx`` / ``.eslim`` file (see :func:`evaluate_file`)."""
    if Path(folder).suffix in MODEL_FILES and Path(folder).is_file():
        return evaluate_file(folder, dataset, data_dir, limit)
    ckpt = load_checkpoint(folder)
    data = load_dataset_for(ckpt.meta, dataset, data_dir, default="fashion-mnist")
    check_data_fits(data, ckpt.input_shape, ckpt.class_names, f"checkpoint {folder}")
    test = data.test.subset(limit) if limit else data.test
    result = {"checkpoint": str(folder), "dataset": data.name, **evaluate_split(ckpt.model, test),
              **size_report(ckpt.model, ckpt.input_shape),
              "bytes": file_bytes(Path(folder) / WEIGHTS), "class_names": ckpt.class_names}
    return result


def evaluate_file(path: str | Path, dataset: str | None = None, data_dir: str | Path | None = None,
                  limit: int | None = None, public_key: str | Path | None = None) -> dict:
    """Test-set metrics of a deployable file, run by its runtime (ONNX Runtime, OpenVINO, LiteRT,
    ExecuTorch) with the preprocessing and data
    set recorded in its metadata; parameters and non-zeros are counted from its weights."""
    from ..runtime import load_model
    from ..runtime.formats import model_bytes
    from .onnx_stats import onnx_weight_stats

    runner = load_model(path, public_key=public_key)
    meta = runner.metadata
    if not (dataset or meta.get("dataset")):
        raise DataError(f"{path}: its metadata names no data set; pass --dataset")
    data = load_dataset_for(meta, dataset, data_dir)
    check_data_fits(data, runner.input_shape, runner.class_names, str(path))
    test = data.test.subset(limit) if limit else data.test
    result = {"checkpoint": str(path), "dataset": data.name, **evaluate_split(runner, test),
              "bytes": model_bytes(path), "class_names": runner.class_names, "evaluated_with": runner.format}
    if Path(path).suffix == ".onnx":
        stats = onnx_weight_stats(path)
        result.update(params=stats["weight_params"], nonzero_params=stats["weight_nonzero"],
                      sparsity=1 - stats["weight_nonzero"] / max(stats["weight_params"], 1))
    return result
