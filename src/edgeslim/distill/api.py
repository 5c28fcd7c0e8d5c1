"""Knowledge distillation on top of ``edgeslim.train.fit``.

``kd_loss_fn(teacher, ...)`` is a ``loss_fn`` for ``fit``: use it as the recovery step
after pruning or inside quantization-aware training. ``distill(student, Distill(...), data=...,
teacher=...) -> Result`` runs the whole thing, hint layers and their adapters included.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from ..config import Result
from ..data.datasets import Split
from ..errors import ConfigError
from ..models.checkpoint import Checkpoint, architecture_of, load_checkpoint, save_checkpoint
from ..models.registry import create
from ..train.loop import fit
from .config import Distill, distill_config
from .losses import FeatureCapture, hint_loss, hinton_loss, make_adapter

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def crop_flip(x: torch.Tensor, generator: torch.Generator, min_scale: float = 0.6) -> torch.Tensor:
    """Per-sample random crop (side scale ``min_scale``..1, random position) resized back to
    the input size, and a random horizontal flip; one ``grid_sample`` call for the batch."""
    n = x.shape[0]
    scale = min_scale + (1 - min_scale) * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1 - scale)[:, None]
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class StudentWithAdapters(nn.Module):
    """The student plus the hint adapters, so that ``fit`` trains both; ``forward`` is the
    student's. Keep ``.student`` after training; the adapters are thrown away."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.adapters = adapters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 50) -> nn.Module:
    """Re-estimate every batch-norm layer's running mean and variance on ``x`` (a cumulative
    average over one pass). After structured pruning the old statistics no longer match
    the layer outputs, and models ported from TensorFlow (EfficientNet-Lite: momentum
    0.01) would need thousands of training steps to forget them."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    saved = [(m, m.momentum) for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return model


def _freeze(teacher: nn.Module) -> nn.Module:
    # eval mode only: the teacher runs under torch.no_grad, and its requires_grad flags are
    # left alone because students are often deep copies of the teacher (pruning recovery).
    return teacher.eval()


class KDLoss:
    """A ``loss_fn(model, x, y) -> (loss, logits)`` for ``edgeslim.train.fit`` that adds the
    teacher's soft targets (and optional hints). The teacher stays in eval mode and runs
    under ``torch.no_grad``. With hints, call :meth:`attach` and train the module it returns."""

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9,
                 unlabeled: bool = False, hint_layers: list[tuple[str, str]] | None = None,
                 hint_weight: float = 1.0, augment: Augment | None = None, seed: int = 0,
                 teacher_logits: torch.Tensor | None = None):
        self.teacher = _freeze(teacher)
        # the teacher's logits for every training sample, computed once (see cache_teacher_logits)
        self.teacher_logits = teacher_logits
        self.temperature, self.alpha, self.unlabeled = temperature, alpha, unlabeled
        self.hint_layers = list(hint_layers or [])
        self.hint_weight = hint_weight
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self.adapters: nn.ModuleDict | None = None
        self._student_capture: FeatureCapture | None = None
        self._teacher_capture: FeatureCapture | None = None

    def attach(self, student: nn.Module, sample: torch.Tensor) -> nn.Module:
        """Hook the hint layers and build one adapter per pair from a forward pass on
        ``sample``; returns the module to train (the student itself when there are no hints)."""
        if not self.hint_layers:
            return student
        self.detach()
        self._student_capture = FeatureCapture(student, [s for s, _ in self.hint_layers])
        self._teacher_capture = FeatureCapture(self.teacher, [t for _, t in self.hint_layers])
        with torch.no_grad():
            was_training = student.training
            student.eval()
            student(sample[:2])
            student.train(was_training)
            self.teacher(sample[:2])
        self.adapters = nn.ModuleDict({
            _key(s): make_adapter(self._student_capture.outputs[s].shape, self._teacher_capture.outputs[t].shape)
            for s, t in self.hint_layers})
        return StudentWithAdapters(student, self.adapters)

    def detach(self) -> None:
        """Remove the forward hooks (call when training is over)."""
        for cap in (self._student_capture, self._teacher_capture):
            if cap is not None:
                cap.remove()
        self._student_capture = self._teacher_capture = None

    @property
    def needs_index(self) -> bool:
        return self.teacher_logits is not None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.teacher_logits is not None:
            if index is None or self.augment is not None:
                raise ConfigError("cached teacher logits need the batch's sample indices and unaugmented "
                                  "inputs: train with edgeslim.train.fit and augmentation off")
            teacher_logits = self.teacher_logits[index]
        else:
            if self.augment is not None:
                x = self.augment(x, self.generator)
            self.teacher.eval()
            with torch.no_grad():
                teacher_logits = self.teacher(x)
        logits = model(x)
        loss = hinton_loss(logits, teacher_logits, None if self.unlabeled else y, self.temperature, self.alpha)
        if self.hint_layers:
            if self.adapters is None or self._student_capture is None:
                raise ConfigError("hint_layers are set: call KDLoss.attach(student, sample) and train "
                                  "the module it returns")
            for s, t in self.hint_layers:
                loss = loss + self.hint_weight * hint_loss(self._student_capture.outputs[s],
                                                           self._teacher_capture.outputs[t], self.adapters[_key(s)])
        return loss, logits


def _key(layer_name: str) -> str:
    return layer_name.replace(".", "__") or "root"


def kd_loss_fn(teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9, unlabeled: bool = False,
               augment: Augment | None = None, seed: int = 0) -> KDLoss:
    """Logit distillation as a drop-in ``loss_fn`` for ``fit`` (pruning recovery, QAT):
    ``fit(student, split, cfg, loss_fn=kd_loss_fn(teacher, 4.0, 0.9))``."""
    return KDLoss(teacher, temperature, alpha, unlabeled=unlabeled, augment=augment, seed=seed)


def teacher_labels(teacher: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The teacher's top-1 class for each input (pseudo labels for unlabeled data)."""
    from ..evaluate.metrics import predict_logits

    return predict_logits(_freeze(teacher), x, batch_size).argmax(1)


CACHE_LIMIT_BYTES = 1 << 30


def cache_teacher_logits(teacher: nn.Module, data: Split, config: Distill,
                         trained_with: dict | None = None) -> torch.Tensor | None:
    """The teacher's logits for every sample of ``data``, when every epoch would show the
    teacher the same inputs (no augmentation, no hints) and they fit in 1 GiB: one teacher
    pass instead of one per epoch. ``None`` otherwise."""
    from ..evaluate.metrics import predict_logits

    if config.augment(trained_with) is not False or config.hint_layers:
        return None
    with torch.no_grad():
        num_classes = int(_freeze(teacher)(data.x[:1]).shape[1])
    if len(data) * num_classes * 4 > CACHE_LIMIT_BYTES:
        return None
    return predict_logits(teacher, data.x)


def distill(model: nn.Module | Checkpoint, config: Distill | dict | None = None, data: Any = None, *,
            teacher: nn.Module | Checkpoint, val: Split | None = None, progress: bool = True) -> Result:
    """Train a copy of the student ``model`` (left untouched) from ``teacher``; ``Result.model`` is
    the trained student, ``summary["history"]`` one metrics dict per epoch (and ``accuracy`` on the
    test split when ``data`` is a DataBundle). ``data``: a DataBundle (train split to learn on, val
    split to choose the best epoch) or a training Split. A ``Checkpoint`` teacher tells
    ``finetune.augment=None`` how it was trained. With ``config.unlabeled`` the labels are ignored
    (the teacher's predictions replace them, so the logged training accuracy is agreement with
    the teacher)."""
    config = distill_config(config)
    trained_with = teacher.meta.get("train_config") if isinstance(teacher, Checkpoint) else None
    teacher = teacher.model if isinstance(teacher, Checkpoint) else teacher
    student = copy.deepcopy(model.model if isinstance(model, Checkpoint) else model)
    train = data.train if hasattr(data, "train") else data
    if train is None:
        raise ConfigError("data is required: the training Split (or a DataBundle) the student learns on")
    val = val if val is not None else getattr(data, "val", None)
    cached = cache_teacher_logits(teacher, train, config, trained_with)
    if config.unlabeled:
        labels = cached.argmax(1) if cached is not None else teacher_labels(teacher, train.x)
        train = Split(train.x, labels)
    augment = crop_flip if config.augment(trained_with) == "crop_flip" else None
    ft = config.finetune
    loss = KDLoss(teacher, ft.temperature, ft.alpha, config.unlabeled, config.hint_layers,
                  config.hint_weight, augment, config.seed, teacher_logits=cached)
    if config.recalibrate_bn:
        recalibrate_batchnorm(student, train.x)
    trainable = loss.attach(student, train.x[:2])
    try:
        history = fit(trainable, train, config.train_config(trained_with), loss_fn=loss, val=val,
                      progress=progress, description="distill")
    finally:
        loss.detach()
    if config.recalibrate_bn:
        recalibrate_batchnorm(student, train.x)
    student.eval()
    summary: dict[str, Any] = {"config": config.model_dump(), "history": history}
    if getattr(data, "test", None) is not None:
        from ..evaluate.metrics import evaluate_split

        summary["accuracy"] = evaluate_split(student, data.test)["accuracy"]
    return Result(model=student, summary=summary)


def width_student(teacher: nn.Module, width: float, input_shape: tuple[int, ...] | None = None,
                  from_teacher: bool = False) -> nn.Module:
    """A student with the teacher's architecture and every layer's channels scaled by ``width``.

    Registered models are rebuilt fresh through their ``width`` argument. Any other module
    (or ``from_teacher=True``) is the teacher itself shrunk by structured pruning
    (``edgeslim.prune.prune_structured`` with channel ratio ``1 - width``; needs
    ``input_shape``): it keeps the teacher's strongest channels and their weights."""
    if not 0 < width <= 1:
        raise ConfigError(f"width must be in (0, 1], got {width}")
    arch = architecture_of(teacher)
    name, kwargs = arch["name"], dict(arch.get("kwargs", {}))
    if from_teacher or ":" in name:
        if input_shape is None:
            raise ConfigError(f"a width student of {name!r} is made by structured pruning of the teacher: "
                              "pass input_shape (one sample's shape, e.g. (3, 224, 224))")
        from ..prune import prune_structured

        return prune_structured(teacher, tuple(input_shape), ratio=1.0 - width).model
    kwargs["width"] = width * float(kwargs.get("width", 1.0))
    kwargs.pop("pretrained", None)
    try:
        return create(name, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model {name!r} has no width argument ({e})") from None


def distill_checkpoint(teacher: str | Path | Checkpoint, student: str | Checkpoint | None = None,
                       width: float = 0.25, config: Distill | dict | None = None, out: str | Path | None = None,
                       dataset: str | None = None, data_dir: str | Path | None = None,
                       progress: bool = True) -> Result:
    """``edgeslim distill``: teacher model -> distilled student checkpoint. ``student`` is a
    registered model name built at ``width`` (default: the teacher's architecture), or any other
    model source :func:`edgeslim.models.resolve_model` accepts, trained as it is.
    ``Result.artifact`` is the folder written (``out``; None: nothing written), ``summary`` the
    student's checkpoint meta (``metrics``: test accuracy, the teacher's, training time)."""
    from ..data.datasets import load_dataset_for
    from ..evaluate.metrics import evaluate_split
    from ..train.api import checkpoint_meta, model_kwargs_for

    from ..models.registry import list_models
    from ..models.resolve import resolve_model, source_name

    config = distill_config(config)
    t_ckpt = resolve_model(teacher)
    t_name = t_ckpt.meta["architecture"]["name"]
    # the student sees the teacher's inputs: the data set padded as the teacher's was
    data = load_dataset_for(t_ckpt.meta, dataset, data_dir, default="fashion-mnist")
    if student is None or student == t_name:
        s_model = width_student(t_ckpt.model, width)
    elif isinstance(student, Checkpoint) or student not in list_models():  # a folder, NAME,args, module:Class
        s_model = resolve_model(student).model
    else:
        kwargs = {**model_kwargs_for(student, data.input_shape, data.num_classes), "width": width}
        s_model = create(student, **kwargs)
    if tuple(data.input_shape) != t_ckpt.input_shape:
        raise ConfigError(f"student input {data.input_shape} differs from the teacher's {t_ckpt.input_shape}")
    t0 = time.perf_counter()
    res = distill(s_model, config, data.train, teacher=t_ckpt, val=data.val, progress=progress)
    s_model, history = res.model, res.summary["history"]
    metrics = evaluate_split(s_model, data.test)
    metrics["train_seconds"] = time.perf_counter() - t0
    metrics["teacher_accuracy"] = t_ckpt.meta.get("metrics", {}).get("accuracy", math.nan)
    meta = checkpoint_meta(data, metrics, history=history, validation=data.validation,
                           distill={"teacher": source_name(t_ckpt), "width": width, **config.model_dump()})
    if out is not None:
        save_checkpoint(s_model, out, meta)
    return Result(model=s_model, artifact=Path(out) if out is not None else None,
                  summary={"architecture": architecture_of(s_model), **meta})


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and range of repeated measurements."""
    import statistics

    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}
