"""``Distill``: the settings of one distillation run (``edgeslim.distill(student, Distill(...),
data=..., teacher=...)``). ``hint_layers`` pairs (student layer, teacher layer) by module name
(``model.named_modules()``); ``unlabeled`` trains on teacher outputs only. ``finetune.augment``:
``True`` (fit's flip + 2-pixel shift, for small images), ``"crop_flip"`` (random resized crop +
flip, for photos), ``False`` (none) or ``None`` (as the teacher was trained: a ``Checkpoint``
teacher records it; a bare module: none)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from ..config import FINETUNE_RENAMED, FineTune, MethodConfig, make_config, with_defaults

DistillFineTune = with_defaults(FineTune, "DistillFineTune", epochs=10, lr=2e-3, batch_size=128, augment=True,
                                distill=True, temperature=4.0, alpha=0.9)


class Distill(MethodConfig):
    RENAMED = FINETUNE_RENAMED

    method: Literal["distill"] = "distill"
    finetune: DistillFineTune = Field(default_factory=DistillFineTune)
    weight_decay: float = Field(1e-4, ge=0)
    hint_layers: list[tuple[str, str]] = Field(default_factory=list)
    hint_weight: float = Field(1.0, ge=0)
    unlabeled: bool = False
    recalibrate_bn: bool = False  # re-estimate batch-norm statistics on the data before and after training
    seed: int = 0

    @field_validator("hint_layers")
    @classmethod
    def _distinct_students(cls, v: list[tuple[str, str]]) -> list[tuple[str, str]]:
        names = [s for s, _ in v]
        if len(set(names)) != len(names):
            raise ValueError("hint_layers: each student layer may appear once")
        return v

    @model_validator(mode="after")
    def _learns_from_the_teacher(self) -> "Distill":
        if not self.finetune.distill:
            raise ValueError("finetune.distill: distillation always learns from the teacher; leave it true")
        return self

    def augment(self, trained_with: dict | None = None) -> Union[bool, str]:
        """``finetune.augment`` with None resolved: the teacher's recorded augmentation, else none."""
        if self.finetune.augment is not None:
            return self.finetune.augment
        return bool((trained_with or {}).get("augment") or (trained_with or {}).get("hflip"))

    def train_config(self, trained_with: dict | None = None):
        """The ``edgeslim.train.TrainConfig`` of the student's training (crop_flip runs in the loss)."""
        from ..train.loop import TrainConfig

        ft = self.finetune
        shift_flip = self.augment(trained_with) is True
        return TrainConfig(epochs=ft.epochs, batch_size=ft.batch_size, lr=ft.lr, weight_decay=self.weight_decay,
                           augment=shift_flip, hflip=shift_flip, seed=self.seed, max_steps=ft.max_steps)

    def summary(self) -> str:
        return f"T={self.finetune.temperature:g}, {self.finetune.epochs} epoch(s)"


DistillMethod = Annotated[Union[Distill], Field(discriminator="method")]


def distill_config(config: Any = None, source: str = "distill config") -> Distill:
    """A ``Distill`` from a Distill (returned as is), a dict or None; ConfigError names a bad field."""
    return make_config(DistillMethod, config, source, "distill")
