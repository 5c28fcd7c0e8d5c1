"""What every compression verb shares: the fine-tuning settings (:class:`FineTune`), how ONNX
Runtime is timed and what counts as faster (:class:`Timing`), the one :class:`Result` every verb
returns, and :func:`make_config` (one way a config is built from a class, a dict or a YAML mapping,
errors naming the field).

Every verb (``edgeslim.train``, ``evaluate``, ``export``, ``prune``, ``quantize``, ``distill``,
``compress``, ``search``) reads ``VERB(model, config, data=...) -> Result``; ``config`` is one class
per method (``TrainConfig``; ``Evaluate``; ``Export``; ``Unstructured``, ``Structured``, ``NM``,
picked by their ``method`` field, as are ``StaticInt8``, ``DynamicInt8``, ``QAT``,
``WeightSharing``; ``Distill``; a recipe; ``SearchConfig``). A verb never modifies the model passed
in: it works on a copy and returns the new model in ``Result.model`` (or a file in
``Result.artifact``).

This module imports pydantic only (no torch), so configs can be built and checked anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, field_validator
from pydantic import model_validator
from pydantic.fields import FieldInfo

from .errors import ConfigError, config_error
from .runtime.bench import FASTER_MARGIN

M = TypeVar("M", bound=BaseModel)
# every method name (a union tag in pydantic's error locations, dropped from the field paths)
_ALL_TAGS = ("unstructured", "structured", "nm", "static", "dynamic", "qat", "weight_sharing", "distill")


class _Checked(BaseModel):
    """Building a config directly (``Structured(sparsity=2)``) raises the same ConfigError, naming the
    field, as building it from a dict or YAML does."""
    model_config = ConfigDict(extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise config_error(e, f"{type(self).__name__} config", _ALL_TAGS) from None

    # validation from a dict (nested blocks, TypeAdapter) keeps pydantic's own path, so errors
    # inside a larger config are reported once, with their full field path
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


class _Settings(_Checked):
    """A block of settings shared by several methods; each method starts it from its own defaults
    (:func:`with_defaults`), so a base-class instance is re-read as the method's, keeping only the
    fields the caller set."""
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _from_base(cls, data: Any) -> Any:
        if isinstance(data, _Settings) and not isinstance(data, cls):
            return data.model_dump(exclude_unset=True)
        return data


class FineTune(_Settings):
    """Recovery training after a lossy step (pruning, QAT, centroid fine-tuning) or the training of a
    distilled student. ``augment``: random flips + 2-pixel shifts (``True``), none (``False``), as the
    model was trained (``None``: its checkpoint's ``train_config``; none recorded: off), or
    ``"crop_flip"`` (random resized crop + flip, for photos; distillation only). ``distill``: learn
    from the original model's soft targets (Hinton loss at ``temperature``, ``alpha`` on the soft
    targets) instead of the labels alone."""
    epochs: int = Field(0, ge=0)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    augment: Union[bool, Literal["crop_flip"], None] = None
    distill: bool = True
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1)
    max_steps: Optional[int] = Field(None, ge=1)


class Timing(_Settings):
    """How ONNX Runtime is timed (``edgeslim.runtime.benchmark``: interleaved rounds) and what counts
    as faster: a speedup of at least ``margin`` (below it, the difference is timing noise). ``batch``:
    one batch size or several (a latency layout must pay at all of them; a single report times the
    first)."""
    batch: list[int] = Field(default=[1])
    threads: Optional[int] = Field(1, ge=1)
    rounds: int = Field(20, ge=1)
    warmup: int = Field(5, ge=0)
    margin: float = Field(FASTER_MARGIN, ge=1.0)

    @field_validator("batch", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("batch")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError(f"batch sizes must be >= 1 (at least one), got {v}")
        return v

    def faster(self, speedup: float) -> bool:
        """The one definition of "faster" every verb and the pipeline use."""
        return speedup >= self.margin


def with_defaults(cls: type[M], name: str, **defaults: Any) -> type[M]:
    """``cls`` with other defaults and the same checks: every method shares one ``FineTune`` /
    ``Timing`` shape but starts from its own values (pruning fine-tunes at lr 1e-3, QAT at 1e-4)."""
    fields = {k: (cls.model_fields[k].annotation, FieldInfo.merge_field_infos(cls.model_fields[k], default=v))
              for k, v in defaults.items()}
    sub = create_model(name, __base__=cls, __module__=__name__, **fields)
    sub.__doc__ = f"{cls.__name__} with this method's defaults ({', '.join(f'{k}={v!r}' for k, v in defaults.items())})."
    return sub


class MethodConfig(_Checked):
    """Base of every method's config: unknown fields are refused, and a key renamed in the one-name
    clean-up gets a one-line error naming its new place."""
    model_config = ConfigDict(extra="forbid")
    RENAMED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [k for k in data if k in cls.RENAMED and k not in cls.model_fields]
            if old:
                raise ValueError("; ".join(f"{k!r} was renamed: use {cls.RENAMED[k]!r}" for k in old))
        return data


# Old keys (before the one-name clean-up) of every verb, with their new place.
FINETUNE_RENAMED = {"finetune_epochs": "finetune.epochs", "finetune_lr": "finetune.lr",
                    "finetune_batch_size": "finetune.batch_size", "finetune_augment": "finetune.augment",
                    "augmentation": "finetune.augment", "hflip": "finetune.augment",
                    "epochs": "finetune.epochs", "lr": "finetune.lr", "batch_size": "finetune.batch_size",
                    "max_steps": "finetune.max_steps", "temperature": "finetune.temperature",
                    "alpha": "finetune.alpha", "distill": "finetune.distill"}
TIMING_RENAMED = {"latency_batch": "timing.batch", "latency_threads": "timing.threads", "bench_batch": "timing.batch",
                  "threads": "timing.threads"}
BITS_RENAMED = {"bits_conv": "conv_bits", "bits_linear": "linear_bits"}


@dataclass
class Result:
    """What every verb returns. ``model``: the new torch model (never the one passed in), or None
    when the result is a file only; ``artifact``: the file written (ONNX, checkpoint folder), if
    any; ``summary``: what was done and measured (JSON-ready); ``warnings``: what the caller should
    know (also logged)."""
    model: Any = None
    artifact: Optional[Path] = None
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def config_classes(union: Any) -> tuple[type, ...]:
    """The classes of ``Annotated[Union[...], Field(discriminator="method")]`` (a union of one is the class)."""
    inner = union.__args__[0]
    return tuple(getattr(inner, "__args__", (inner,)))


def method_tags(union: Any) -> tuple[str, ...]:
    """The ``method`` values of a discriminated union of configs."""
    return tuple(t for cls in config_classes(union) for t in cls.model_fields["method"].annotation.__args__)


def make_config(union: Any, config: Any, source: str, default_method: str) -> Any:
    """One config of ``union`` (a discriminated union on ``method``) from a config instance (returned
    as is), a dict or YAML mapping (``method`` defaults to ``default_method``) or None (the default
    method's defaults). A bad field raises ConfigError naming it."""
    if isinstance(config, BaseModel):
        allowed = config_classes(union)
        if not isinstance(config, allowed):
            raise ConfigError(f"invalid {source}: expected one of {', '.join(c.__name__ for c in allowed)}, "
                              f"got {type(config).__name__}")
        return config
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"invalid {source}: expected a config object or a mapping, got {type(config).__name__}")
    data = {"method": default_method, **(config or {})}
    try:
        return TypeAdapter(union).validate_python(data)
    except ValidationError as e:
        raise config_error(e, source, method_tags(union)) from None
