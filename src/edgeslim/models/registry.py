"""A registry of model builders: one obvious way to create each model (timm style).

A :class:`ModelSpec` holds what the rest of edgeslim needs to know about a model, so no
command tests model names: the builder arguments that fit it to a data set
(``input_kwargs``), the preprocessing its pretrained weights expect (``preprocess``), which
builder argument turns pretrained weights on (``pretrained_arg``, switched off when saved
weights replace them) and what a registry name alone stands for (``name_meta``: input
shape, classes, data set). Another model family plugs in with one ``register_model`` call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from ..errors import ConfigError
from ..runtime.preprocess import Preprocess

# (input_shape, num_classes) -> builder kwargs that fit the model to that data
InputKwargs = Callable[[tuple[int, ...], int], dict[str, Any]]
# builder kwargs -> meta of the model built from its name: input_shape, class_names, dataset, preprocess
NameMeta = Callable[[dict[str, Any]], dict[str, Any]]


def classes_only(input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    return {"num_classes": num_classes}


def image_kwargs(input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """Convolutional models sized by their input: channels and side."""
    return {"num_classes": num_classes, "in_channels": input_shape[0], "input_size": input_shape[-1]}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    default_dataset: str | None = None
    input_size: int | None = None  # smaller images are zero-padded to this size
    input_kwargs: InputKwargs = classes_only
    preprocess: Preprocess | None = None  # what its pretrained weights expect (None: data-set statistics)
    pretrained_arg: str | None = None  # builder flag that loads pretrained weights (on by default)
    # meta of the model built from its name alone (default: input_size-square images, default_dataset)
    name_meta: NameMeta | None = None

    def kwargs_for(self, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
        """Builder arguments that fit this model to a data set's input shape and classes."""
        return self.input_kwargs(tuple(input_shape), num_classes)

    def meta_for(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """What the model ``create(name, **kwargs)`` takes, predicts and was trained on."""
        if self.name_meta is not None:
            return self.name_meta(kwargs)
        if self.input_size is None:
            return {}
        side = int(kwargs.get("input_size", self.input_size))
        return {"input_shape": [int(kwargs.get("in_channels", 1)), side, side], "dataset": self.default_dataset,
                # smaller images of the data set are zero-padded to the model's side
                "preprocess": Preprocess(pad_to=(side, side)).to_dict()}

    def without_pretrained(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` for an architecture whose weights are about to be replaced (no download/read)."""
        return {**kwargs, self.pretrained_arg: False} if self.pretrained_arg else dict(kwargs)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, default_dataset: str | None = None,
                   input_size: int | None = None, **spec: Any):
    """Decorator: make ``builder(**kwargs) -> nn.Module`` available as ``create(name)``.
    ``spec``: the other :class:`ModelSpec` fields (``input_kwargs``, ``preprocess``, ...)."""
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, builder, description, default_dataset, input_size, **spec)
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
