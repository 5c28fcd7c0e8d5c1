"""``edgeslim.train(model, TrainConfig(...), data=...) -> Result``: a model name (or any model source)
and a data set -> a trained model and, with ``out=``, its checkpoint folder."""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..config import Result
from ..data.datasets import DataBundle, hold_out, load_dataset
from ..models.checkpoint import Checkpoint, save_checkpoint
from ..errors import ConfigError
from ..models.registry import create, list_models, model_spec
from .loop import TrainConfig, fit, set_seed


# What a fine-tune repeats of the model's own training (the rest, epochs, lr, batch size, is its own).
INHERITED_SETTINGS = ("augment", "hflip", "optimizer", "weight_decay", "label_smoothing")


def finetune_config(trained_with: TrainConfig | dict | None = None, augment: bool | None = None,
                    **settings: Any) -> TrainConfig:
    """The ``TrainConfig`` of a fine-tune (pruning recovery, QAT, weight sharing): augmentation,
    optimiser, weight decay and label smoothing as the model was trained (``trained_with``: its
    checkpoint's ``train_config``; unknown: TrainConfig's defaults, no augmentation), with the
    fine-tune's own ``settings`` (epochs, lr, batch_size, ...). ``augment`` overrides the
    recorded augmentation (flips and shifts together)."""
    if isinstance(trained_with, TrainConfig):
        trained_with = trained_with.model_dump()
    inherited = {k: v for k, v in (trained_with or {}).items() if k in INHERITED_SETTINGS}
    if augment is not None:
        inherited.update(augment=augment, hflip=augment)
    return TrainConfig(**{**inherited, **settings})


def model_kwargs_for(name: str, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """Arguments that fit a registered model to a data set's input shape and classes (its spec's)."""
    return model_spec(name).kwargs_for(input_shape, num_classes)


def load_data_for(model_name: str | None, dataset: str, data_dir: str | Path | None = None) -> DataBundle:
    """Load ``dataset`` padded to the input size the model expects (28 -> 32 for seed-cnn)."""
    return load_dataset(dataset, data_dir, pad_to=model_spec(model_name).input_size if model_name else None)


def checkpoint_meta(data: DataBundle, metrics: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"input_shape": list(data.input_shape), "preprocess": data.preprocess.to_dict(),
            "class_names": data.class_names, "dataset": data.name, "metrics": metrics or {}, **extra}


def train(model: str | nn.Module | Checkpoint, config: TrainConfig | dict | None = None,
          data: str | DataBundle = "fashion-mnist", *, out: str | Path | None = None,
          data_dir: str | Path | None = None, progress: bool = True, model_kwargs: dict[str, Any] | None = None,
          val_samples: int | None = None) -> Result:
    """Train a registered model (by name: fitted to the data by its spec) or any ``nn.Module`` on
    ``data`` (a data set name or a DataBundle) and, with ``out``, save a checkpoint folder. Any
    other model source :func:`edgeslim.models.resolve_model` accepts (a checkpoint folder,
    ``NAME,key=value``, a Checkpoint) is trained from its weights.

    ``val_samples`` training samples (default: a tenth, at most 5,000; 0: none) are held out for
    choosing the best epoch; the checkpoint records which, so that pruning, quantization and the
    accuracy budget of ``compress`` later judge on images this training never saw.

    ``config``: a TrainConfig or a dict (a bad field raises ConfigError naming it). Returns a
    Result: ``model`` the trained module (a copy: the model passed in is left untouched),
    ``artifact`` the checkpoint folder (``out``), ``summary`` its test metrics (accuracy, loss,
    per-class accuracy, train_seconds)."""
    from ..evaluate.metrics import evaluate_split

    if isinstance(model, str) and model not in list_models():
        from ..models.resolve import parse_model_name, resolve_model

        name, named_kwargs = parse_model_name(model)
        if name in list_models() and not Path(model).exists():  # NAME,key=value: fitted to the data, then these
            model, model_kwargs = name, {**named_kwargs, **(model_kwargs or {})}
        else:  # a checkpoint folder or module:Class: trained further from its weights
            model = resolve_model(model).model
    elif isinstance(model, Checkpoint):
        model = model.model
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model)  # the one rule of every verb: the model passed in is left as it was
    name = model if isinstance(model, str) else None
    data = data if isinstance(data, DataBundle) else load_data_for(name, data, data_dir)
    config = config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))
    if data.val is None:
        data = hold_out(data, val_samples, seed=config.seed)
    elif val_samples is not None and val_samples != len(data.val):
        raise ConfigError(f"val_samples={val_samples}, but the data given already holds out {len(data.val)}")
    set_seed(config.seed)
    if name:
        kwargs = {**model_kwargs_for(name, data.input_shape, data.num_classes), **(model_kwargs or {})}
        model = create(name, **kwargs)
    t0 = time.perf_counter()
    history = fit(model, data.train, config, val=data.val, progress=progress, description=f"train {name or ''}")
    metrics = evaluate_split(model, data.test)
    metrics["train_seconds"] = time.perf_counter() - t0
    meta = checkpoint_meta(data, metrics, history=history, train_config=config.model_dump(),
                           validation=data.validation)
    if out is not None:
        save_checkpoint(model, out, meta)
    return Result(model=model, artifact=Path(out) if out is not None else None, summary=metrics)
