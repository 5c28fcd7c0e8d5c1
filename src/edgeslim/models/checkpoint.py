"""Checkpoint folders: ``weights.safetensors`` + ``model.json``. Loading never unpickles.

The JSON names the architecture (a registry name, or ``module:Class`` for a user's
own importable class) and its arguments. Structurally pruned models have smaller
tensors than their architecture's defaults; loading shrinks each layer to the saved
shapes, so every later step (eval, export, bench) sees the real, smaller model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .._io import atomic_write_bytes, read_json, write_json
from ..errors import CheckpointError
from ..runtime.preprocess import Preprocess
from .registry import create

WEIGHTS = "weights.safetensors"
META = "model.json"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.meta.get("preprocess", {}))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))


def architecture_of(model: nn.Module) -> dict[str, Any]:
    """How to rebuild ``model``: its registry entry, else its importable class path."""
    arch = getattr(model, "edgeslim_arch", None)
    if arch:
        return dict(arch)
    cls = type(model)
    return {"name": f"{cls.__module__}:{cls.__qualname__}", "kwargs": {}}


def build_architecture(arch: dict[str, Any]) -> nn.Module:
    name, kwargs = arch["name"], arch.get("kwargs", {})
    if ":" not in name:
        if name == "efficientnet-lite0":
            kwargs = {**kwargs, "pretrained": False}  # the saved weights replace them
        model = create(name, **kwargs)
        model.edgeslim_arch = dict(arch)
        return model
    module, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"cannot import model class {name!r} ({e}); pass model= to "
                              "load_checkpoint with an instance of your model") from None
    return obj(**kwargs)


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; tied tensors are saved twice.
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(model: nn.Module, folder: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``weights.safetensors`` and ``model.json`` atomically into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = _plain_state(model)
    tmp = folder / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    atomic_write_bytes(folder / WEIGHTS, tmp.read_bytes())
    tmp.unlink()
    full = {"format_version": FORMAT_VERSION, "architecture": architecture_of(model), **meta}
    write_json(folder / META, full)
    return folder


def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    if name in module._parameters:
        module._parameters[name] = nn.Parameter(value, requires_grad=module._parameters[name].requires_grad)
    else:
        module._buffers[name] = value


def fit_modules_to_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Shrink (or grow) layers whose saved tensors have other shapes, keeping attributes
    such as ``out_channels`` and depthwise ``groups`` consistent with the new shapes."""
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        changed = False
        for tname, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            key = prefix + tname
            if tensor is not None and key in state and state[key].shape != tensor.shape:
                _set_tensor(module, tname, torch.empty_like(state[key]))
                changed = True
        if not changed:
            continue
        if isinstance(module, nn.Conv2d):
            w = module.weight
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            module.out_channels = w.shape[0]
            if depthwise:
                module.groups = module.in_channels = w.shape[0]
            else:
                module.in_channels = w.shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.num_features = module.running_mean.shape[0] if module.running_mean is not None \
                else module.weight.shape[0]


def load_checkpoint(folder: str | Path, model: nn.Module | None = None) -> Checkpoint:
    """Load a checkpoint folder. ``model`` overrides the recorded architecture."""
    folder = Path(folder)
    if folder.is_file() and folder.name in (WEIGHTS, META):
        folder = folder.parent
    for f in (WEIGHTS, META):
        if not (folder / f).exists():
            raise CheckpointError(f"{folder}: missing {f}; a checkpoint folder holds {WEIGHTS} and {META} "
                                  "(written by `edgeslim train`)")
    meta = read_json(folder / META)
    try:
        state = load_file(str(folder / WEIGHTS))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{folder / WEIGHTS}: not a valid safetensors file ({e})") from None
    if model is None:
        model = build_architecture(meta["architecture"])
    fit_modules_to_state(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{folder}: weights do not match the architecture "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]}); for your own model class, "
                              "pass model=<an instance of it> to load_checkpoint")
    model.eval()
    return Checkpoint(model, meta)
