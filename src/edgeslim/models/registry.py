"""A registry of model builders: one obvious way to create each model (timm style)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    default_dataset: str | None = None
    input_size: int | None = None  # smaller images are zero-padded to this size


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, default_dataset: str | None = None,
                   input_size: int | None = None):
    """Decorator: make ``builder(**kwargs) -> nn.Module`` available as ``create(name)``."""
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, builder, description, default_dataset, input_size)
        return builder
    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model. The name and kwargs are recorded on the module so a
    checkpoint can rebuild it later without pickling code."""
    model = model_spec(name).builder(**kwargs)
    model.edgeslim_arch = {"name": name, "kwargs": dict(kwargs)}
    return model
