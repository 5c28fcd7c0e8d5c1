"""``edgeslim.evaluate(model, Evaluate(...), data=...) -> Result`` (and ``edgeslim eval``): everything
a user asks about a model in one summary dict: a checkpoint folder (torch), or a deployable
``.onnx`` / ``.eslim`` / ... file (evaluated by the torch-free runtime, as on the device)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field

from ..config import Result, _Checked
from ..data.datasets import DataBundle, load_dataset_for
from ..errors import DataError
from ..models.checkpoint import WEIGHTS, Checkpoint
from ..models.resolve import resolve_model, source_folder, source_name
from .metrics import evaluate_split
from .size import file_bytes, size_report

MODEL_FILES = (".onnx", ".eslim", ".xml", ".tflite", ".pte")  # every format edgeslim.runtime runs


class Evaluate(_Checked):
    """What to evaluate on: ``limit`` test samples (None: all)."""
    limit: Optional[int] = Field(None, ge=1)


def check_data_fits(data: DataBundle, input_shape: tuple[int, ...], class_names: list[str], what: str) -> None:
    """Refuse a data set whose inputs or classes are not the model's (a score on it means nothing)."""
    if tuple(data.input_shape) != tuple(input_shape):
        raise DataError(f"data set {data.name} gives inputs of shape {tuple(data.input_shape)}, but {what} takes "
                        f"{tuple(input_shape)}; evaluate it on the data set it was trained on")
    if class_names and data.class_names and list(class_names) != list(data.class_names):
        raise DataError(f"data set {data.name} has classes {_names(data.class_names)}, but {what} predicts "
                        f"{_names(class_names)}; evaluate it on the data set it was trained on")


def _names(names: list[str]) -> str:
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


def streamed_path(dataset: str | Path | DataBundle | None) -> bool:
    """Whether ``dataset`` is a path read in batches (labels file, image folder, .npy), not a data
    set held in memory (fashion-mnist, digits, a class-folder tree split into train/test)."""
    from ..data.sources import data_kind

    if not isinstance(dataset, (str, Path)) or not Path(dataset).exists():
        return False
    kind = data_kind(dataset)
    return kind is not None and kind.name != "class-folders"


def evaluate_source(model, source, limit: int | None = None, batch_size: int = 64, progress: bool = False) -> dict:
    """Metrics over a data source read a batch at a time (memory bounded by the batch; only the
    logits are kept). ``model``: torch or a numpy callable (an ONNX runner)."""
    import numpy as np
    import torch

    from .metrics import metrics_from_logits, predict_logits

    if not source.labelled:
        raise DataError(f"{source.name}: has no labels ({source.kind}); evaluation needs labels.tsv / labels.csv, "
                        "class sub-folders or y.npy")
    indices = np.arange(min(limit or len(source), len(source)))
    logits, labels = [], []
    for x, y in source.batches(batch_size, indices, progress, f"evaluate on {source.name}"):
        logits.append(predict_logits(model, torch.from_numpy(x), batch_size))
        labels.append(torch.from_numpy(y))
    return metrics_from_logits(torch.cat(logits), torch.cat(labels))


def _evaluate_data(model, meta: dict, preprocess, input_shape, class_names, what: str, dataset, data_dir,
                   limit: int | None, progress: bool) -> tuple[str, dict]:
    """(data set name, metrics): a streamed path in batches, else the test split of a data set."""
    if streamed_path(dataset):
        from ..data.sources import open_data

        source = open_data(dataset, preprocess)
        check_data_fits(source, input_shape, class_names, what)
        return source.name, evaluate_source(model, source, limit, progress=progress)
    data = dataset if isinstance(dataset, DataBundle) else load_dataset_for(meta, dataset, data_dir,
                                                                             default="fashion-mnist")
    check_data_fits(data, input_shape, class_names, what)
    test = data.test.subset(limit) if limit else data.test
    return data.name, evaluate_split(model, test)


def evaluate(model: str | Path | Checkpoint, config: Evaluate | dict | None = None,
             data: str | Path | DataBundle | None = None, *, data_dir: str | Path | None = None,
             progress: bool = False) -> Result:
    """Test-set accuracy, loss, per-class accuracy, params, non-zeros, MACs and bytes of a model (a
    checkpoint folder, registry name, ...: see :func:`edgeslim.models.resolve_model`), or of an
    exported model file (``.onnx``, ``.eslim``, ``.xml``, ``.tflite``, ``.pte``: see :func:`evaluate_file`).

    ``data``: a data set name, a path read in batches, or a DataBundle (default: the data set the
    model records). Returns a Result whose ``summary`` is the metrics dict (``model`` and
    ``artifact`` are None: nothing new is made)."""
    config = config if isinstance(config, Evaluate) else Evaluate(**(config or {}))
    return Result(summary=_metrics(model, data, data_dir, config.limit, progress))


def _metrics(folder, dataset, data_dir, limit: int | None, progress: bool) -> dict:
    if not isinstance(folder, Checkpoint) and Path(folder).suffix in MODEL_FILES and Path(folder).is_file():
        return evaluate_file(folder, dataset, data_dir, limit, progress=progress)
    ckpt = resolve_model(folder)
    saved = source_folder(ckpt)
    name, metrics = _evaluate_data(ckpt.model, ckpt.meta, ckpt.preprocess, ckpt.input_shape, ckpt.class_names,
                                   f"model {source_name(ckpt)}", dataset, data_dir, limit, progress)
    return {"checkpoint": source_name(ckpt), "dataset": name, **metrics, **size_report(ckpt.model, ckpt.input_shape),
            "bytes": file_bytes(saved / WEIGHTS) if saved else _state_bytes(ckpt.model),
            "class_names": ckpt.class_names}


def _state_bytes(model) -> int:
    """The weights' size in memory (a model not saved as a checkpoint folder)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def evaluate_file(path: str | Path, dataset: str | None = None, data_dir: str | Path | None = None,
                  limit: int | None = None, public_key: str | Path | None = None, progress: bool = False) -> dict:
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
    from ..runtime.preprocess import Preprocess

    name, metrics = _evaluate_data(runner, meta, Preprocess.from_dict(meta.get("preprocess", {})), runner.input_shape,
                                   runner.class_names, str(path), dataset, data_dir, limit, progress)
    result = {"checkpoint": str(path), "dataset": name, **metrics,
              "bytes": model_bytes(path), "class_names": runner.class_names, "evaluated_with": runner.format}
    if Path(path).suffix == ".onnx":
        stats = onnx_weight_stats(path)
        result.update(params=stats["weight_params"], nonzero_params=stats["weight_nonzero"],
                      sparsity=1 - stats["weight_nonzero"] / max(stats["weight_params"], 1))
    return result
