"""The training loop: fixed seeds, a rich progress bar, and a pluggable loss so that
distillation and quantization-aware training reuse it."""
from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import ConfigDict, Field

from ..config import _Checked

from ..data.datasets import Split

# loss_fn(model, x, y) -> (loss, logits). A loss with a true ``needs_index`` attribute is also
# given ``index=`` (the batch's row numbers in the training split), e.g. to look up cached
# teacher outputs.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TrainConfig(_Checked):
    """How a model is trained; a bad field raises ConfigError naming it."""
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    optimizer: str = Field("adamw", pattern="^(adamw|sgd)$")
    schedule: str = Field("cosine", pattern="^(cosine|constant)$")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # Off by default (measured on Fashion-MNIST, 10 epochs from scratch: seed-cnn 92.10% without,
    # 91.31% with flips + shifts). Fine-tunes repeat what the model was trained with
    # (edgeslim.train.finetune_config): a model trained without them loses accuracy when
    # fine-tuned with them (lenet-300-100: about 4 points).
    augment: bool = False  # random shifts of up to 2 pixels
    hflip: bool = False  # random horizontal flips (plausible for clothes, wrong for digits or text)
    seed: int = 0
    max_steps: int | None = Field(None, ge=1)
    # with a validation split: end with the weights of the epoch that scored best on it, not the last
    keep_best: bool = True


def set_seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_indices(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
                  ) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def iterate_batches(split: Split, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for idx in batch_indices(len(split), batch_size, shuffle, generator):
        yield split.x[idx], split.y[idx]


def augment_batch(x: torch.Tensor, generator: torch.Generator, hflip: bool = True, shift: bool = True
                  ) -> torch.Tensor:
    """Random horizontal flips and a random shift of up to 2 pixels (cheap, shape-preserving)."""
    if hflip:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if shift:
        dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    return x


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def loss_fn(model, x, y):
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits
    return loss_fn


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), disable=not enabled,
                    transient=False)


class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to end training early (a candidate that cannot recover)."""


def fit(model: nn.Module, train: Split, config: TrainConfig, loss_fn: LossFn | None = None,
        val: Split | None = None, progress: bool = True, description: str = "train",
        on_step: Callable[[int], None] | None = None, best_after_step: int = 0,
        on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model`` in place; return one dict of metrics per epoch.

    ``val`` (held out of the training data, never the test split) is scored after every epoch;
    with ``config.keep_best`` the model ends with the weights of the best-scoring epoch among
    those ending at or after step ``best_after_step`` (e.g. once gradual pruning reached its
    final sparsity). ``on_epoch(record)`` may raise :class:`StopTraining` to stop early."""
    set_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    needs_index = bool(getattr(loss_fn, "needs_index", False))
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(total, 1), pct_start=0.15)
             if config.schedule == "cosine" else None)
    history, step = [], 0
    best = _BestEpoch(model) if val is not None and config.keep_best else None
    if best is not None and best_after_step == 0:
        # the weights fine-tuning starts from compete too: a fine-tune that only loses (centroids of
        # an already recovered model, a drifting lr) hands back what it was given
        best.offer({"epoch": 0, **_scores(model, val)})
    with _progress(progress) as bar:
        task = bar.add_task(description, total=total, stats="")
        for epoch in range(config.epochs):
            model.train()
            seen, correct, loss_sum, t0 = 0, 0, 0.0, time.perf_counter()
            for idx in batch_indices(len(train), config.batch_size, True, gen):
                if step >= total:
                    break
                x, y = train.x[idx], train.y[idx]
                if config.augment or config.hflip:
                    x = augment_batch(x, gen, hflip=config.hflip, shift=config.augment)
                loss, logits = loss_fn(model, x, y, index=idx) if needs_index else loss_fn(model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched:
                    sched.step()
                if on_step:
                    on_step(step)
                step += 1
                seen += len(y)
                correct += int((logits.argmax(1) == y).sum())
                loss_sum += float(loss.detach()) * len(y)
                rate = seen / (time.perf_counter() - t0)
                bar.update(task, advance=1, stats=f"epoch {epoch + 1} loss {loss_sum / seen:.4f} "
                                                  f"acc {correct / seen:.3f} {rate:,.0f} img/s")
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                      "train_accuracy": correct / max(seen, 1), "seconds": time.perf_counter() - t0}
            if val is not None:
                record.update(_scores(model, val))
                if best is not None and step >= best_after_step:
                    best.offer(record)
            history.append(record)
            if on_epoch is not None:
                try:
                    on_epoch(record)
                except StopTraining:
                    record["stopped_early"] = True
                    break
            if step >= total:
                break
    if best is not None:
        best.restore(history)
    model.eval()
    return history


def _scores(model: nn.Module, val: Split) -> dict[str, float]:
    from ..evaluate.metrics import evaluate_split

    return {f"val_{k}": v for k, v in evaluate_split(model, val).items() if k in ("accuracy", "loss")}


class _BestEpoch:
    """The weights of the best epoch so far by validation accuracy (ties: the later epoch)."""

    def __init__(self, model: nn.Module):
        self.model, self.state, self.accuracy, self.epoch = model, None, -1.0, None

    def offer(self, record: dict) -> None:
        if record["val_accuracy"] >= self.accuracy:
            self.accuracy, self.epoch = record["val_accuracy"], record["epoch"]
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self, history: list[dict]) -> None:
        if self.state is None:
            return
        if not history or self.epoch != history[-1]["epoch"]:
            self.model.load_state_dict(self.state)
        for record in history:
            record["best"] = record["epoch"] == self.epoch
