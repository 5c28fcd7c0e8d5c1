"""Distil a sentence encoder on unlabeled text: the student learns to reproduce the teacher's
embeddings (cosine and MSE on the L2-normalised vectors; no labels needed)."""
from __future__ import annotations

import time
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError


class TextDistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-4, gt=0)
    loss: Literal["cosine", "mse", "cosine+mse"] = "cosine+mse"
    max_length: int = Field(128, ge=4)
    max_seconds: float | None = Field(None, gt=0)  # stop early (wall clock) for a bounded run
    seed: int = 0


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    cosine = (1 - (student * teacher).sum(1)).mean()
    # x 384-ish: per-dimension MSE of unit vectors is tiny; scaled by the width it is comparable to cosine
    mse = ((student - teacher) ** 2).sum(1).mean()
    return {"cosine": cosine, "mse": mse, "cosine+mse": cosine + mse}[kind]


def _batches(tokenizer, texts: Sequence[str], batch_size: int, max_length: int):
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding()
    for i in range(0, len(texts), batch_size):
        enc = tokenizer.encode_batch(list(texts[i:i + batch_size]))
        yield (torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc]))


def distill_text(student, teacher, tokenizer, texts: Sequence[str], config: TextDistillConfig,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train ``student`` (in place) to match ``teacher``'s sentence embeddings on ``texts``.
    ``tokenizer`` is a ``tokenizers.Tokenizer``. Returns the loss history and time taken."""
    if len(texts) < config.batch_size:
        raise ConfigError(f"distillation needs at least batch_size={config.batch_size} sentences, got {len(texts)}")
    torch.manual_seed(config.seed)
    order = np.random.default_rng(config.seed)
    teacher.eval()
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr)
    history, t0, step = [], time.perf_counter(), 0
    for epoch in range(config.epochs):
        shuffled = [texts[i] for i in order.permutation(len(texts))]
        student.train()
        total, n = 0.0, 0
        for ids, mask in _batches(tokenizer, shuffled, config.batch_size, config.max_length):
            with torch.no_grad():
                target = teacher(ids, mask)
            loss = embedding_loss(student(ids, mask), target, config.loss)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n, step = total + loss.item(), n + 1, step + 1
            if config.max_seconds and time.perf_counter() - t0 > config.max_seconds:
                break
        history.append({"epoch": epoch, "loss": total / max(n, 1), "steps": n})
        log(f"epoch {epoch}: loss {total / max(n, 1):.4f} ({n} steps)")
        if config.max_seconds and time.perf_counter() - t0 > config.max_seconds:
            break
    student.eval()
    return {"history": history, "steps": step, "seconds": time.perf_counter() - t0}
