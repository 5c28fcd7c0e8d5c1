"""One function turns whatever a user names as a model into a :class:`Checkpoint`; every
command that takes a model calls it (``edgeslim eval/export/prune/quantize/distill/compress/
search/train``):

- a checkpoint folder (``weights.safetensors`` + ``model.json``, written by edgeslim);
- a registry name, optionally with builder arguments: ``efficientnet-lite0`` (its offline
  pretrained weights), ``resnet18,num_classes=10,small_input=true`` (values are JSON);
- ``module:Class[,key=value...]``: a user's own ``nn.Module``, imported only under the trust
  flag (``edgeslim --trust-code`` / ``--allow-class``, or ``trusted_code()``);
- any of the last two with ``weights=FILE.safetensors`` (``--weights``): a user's trained
  weights (e.g. a torchvision ``state_dict`` saved with safetensors) loaded key for key.

- ``PREFIX:REST`` for a prefix registered with :func:`register_source_prefix` (e.g. ``hf:PATH``
  for a local Hugging Face folder): that loader builds the Checkpoint.

The reserved argument ``input_shape=[C,H,W]`` sets the input a model built from a name takes
(default: what its :class:`~edgeslim.models.registry.ModelSpec` says). Nothing is downloaded.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..errors import CheckpointError
from .checkpoint import (META, WEIGHTS, Checkpoint, CodeTrust, _check_plain_json, build_architecture,
                         fit_modules_to_state, load_checkpoint)
from .registry import list_models, model_spec

# "PREFIX:REST" model sources (e.g. "hf:PATH"): (REST, weights) -> Checkpoint
SourceLoader = Callable[[str, "str | Path | None"], Checkpoint]
_PREFIXES: dict[str, SourceLoader] = {}


def register_source_prefix(prefix: str, loader: SourceLoader) -> None:
    """Let ``resolve_model("PREFIX:REST")`` (every command's model argument) call ``loader(REST, weights)``."""
    _PREFIXES[prefix] = loader

def parse_model_name(text: str) -> tuple[str, dict[str, Any]]:
    """``"resnet18,num_classes=10,small_input=true"`` -> ``("resnet18", {"num_classes": 10, ...})``."""
    name, *args = [part.strip() for part in re.split(r",(?![^\[]*\])", text)]  # not the commas of [1,32,32]
    kwargs: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise CheckpointError(f"model argument {arg!r} in {text!r} is not KEY=VALUE "
                                  "(e.g. resnet18,num_classes=10,small_input=true)")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value  # a bare word: a string
    _check_plain_json(kwargs, f"arguments of {name}")
    return name, kwargs


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors ``state_dict`` into ``model`` key for key; layers whose saved tensors
    have other shapes (another class count, a pruned model) are resized to them first."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--weights {path}: no such file (a .safetensors state_dict)")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"--weights {path}: not a safetensors file ({e}); save a state_dict with "
                              "safetensors.torch.save_file(model.state_dict(), FILE)") from None
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"--weights {path} does not match the architecture key for key: {len(missing)} missing "
            f"({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}), {len(unexpected)} unexpected "
            f"({', '.join(unexpected[:6])}{', ...' if len(unexpected) > 6 else ''}); check the model name and its "
            "arguments (e.g. small_input=true) or save the weights from the same architecture")
    fit_modules_to_state(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"--weights {path}: tensor shapes do not fit ({str(e).splitlines()[1:2]})") from None


def _name_meta(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a model built from its registry name takes, predicts and was trained on."""
    if ":" in name:
        return {}
    spec = model_spec(name)
    meta = spec.meta_for(kwargs)
    if spec.preprocess is not None:
        meta.setdefault("preprocess", spec.preprocess.to_dict())
    return meta


def _outputs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(model.eval()(torch.zeros(1, *input_shape)).reshape(1, -1).shape[1])


def resolve_model(source: str | Path | Checkpoint, weights: str | Path | None = None,
                  trust_code: CodeTrust | None = None) -> Checkpoint:
    """The model ``source`` names (see the module docstring), with ``weights`` loaded into it."""
    if isinstance(source, Checkpoint):
        if weights is not None:
            load_weights(source.model, weights)
        return source
    text = str(source)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _PREFIXES:
        return _PREFIXES[prefix](rest, weights)
    path = Path(text)
    if path.is_dir() or (path.is_file() and path.name in (WEIGHTS, META)):
        ckpt = load_checkpoint(path, trust_code=trust_code)
        if weights is not None:
            load_weights(ckpt.model, weights)
            ckpt.meta["weights"] = str(weights)
        # the folder loaded is the source (outputs default to beside it), whatever the model it was made from
        ckpt.meta["source"] = str(path if path.is_dir() else path.parent)
        return ckpt
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: a weights file, not a model; name the architecture and pass the file with "
                              f"--weights (e.g. `resnet18 --weights {path}`)")
    if path.exists() or "/" in text:  # a path, not a name: a folder that is not (or no longer) there
        load_checkpoint(path)  # raises, naming what a checkpoint folder holds
    name, kwargs = parse_model_name(text)
    if ":" not in name and name not in list_models():
        raise CheckpointError(f"{text!r} is neither a checkpoint folder nor a registered model; registered "
                              f"models: {', '.join(list_models())} (or module:Class with --trust-code)")
    input_shape = kwargs.pop("input_shape", None)
    arch = {"name": name, "kwargs": kwargs}
    if weights is None:
        model = build_architecture(arch, trust_code, pretrained=True)
    else:
        model = build_architecture(arch, trust_code)
        load_weights(model, weights)
    meta = {"architecture": arch, "source": text, **_name_meta(name, kwargs)}
    if input_shape is not None:
        meta["input_shape"] = list(input_shape)
    if "input_shape" not in meta:
        raise CheckpointError(f"{name}: its input shape is unknown; add input_shape=[C,H,W] to the model "
                              f"argument (e.g. {name},input_shape=[3,32,32])")
    if meta.get("class_names") and len(meta["class_names"]) != _outputs(model, tuple(meta["input_shape"])):
        del meta["class_names"]  # weights with another head: the names of the name-built model do not apply
    if weights is not None:
        meta["weights"] = str(weights)
    model.eval()
    return Checkpoint(model, meta)


def source_name(source: str | Path | Checkpoint) -> str:
    """How reports name a model source: its path or name, else its architecture."""
    if isinstance(source, Checkpoint):
        return source.meta.get("source") or (source.meta.get("architecture") or {}).get("name", "model")
    return str(source)


def source_folder(source: str | Path | Checkpoint) -> Path | None:
    """The checkpoint folder ``source`` is, if it is one (outputs default to beside it)."""
    if isinstance(source, Checkpoint):
        folder = source.meta.get("source")
        return Path(folder) if folder and Path(folder).is_dir() else None
    return Path(source) if Path(source).is_dir() else None
