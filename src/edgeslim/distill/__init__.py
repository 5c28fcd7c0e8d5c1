"""Knowledge distillation: Hinton soft targets, hint layers with learned adapters, and a
``loss_fn`` factory (``kd_loss_fn``) for pruning recovery and quantization-aware training.

The package itself is callable: ``edgeslim.distill(student, Distill(...), data=..., teacher=...)``
is :func:`edgeslim.distill.api.distill` (returns an ``edgeslim.Result``)."""
from .._verb import callable_package
from .api import (KDLoss, StudentWithAdapters, cache_teacher_logits, crop_flip, distill, distill_checkpoint,
                  kd_loss_fn, recalibrate_batchnorm, summarize, teacher_labels, width_student)
from .config import Distill, DistillMethod, distill_config
from .losses import FeatureCapture, hint_loss, hinton_loss, make_adapter

__all__ = ["Distill", "DistillMethod", "distill_config", "KDLoss", "StudentWithAdapters", "cache_teacher_logits",
           "crop_flip", "distill", "distill_checkpoint", "kd_loss_fn", "recalibrate_batchnorm", "summarize",
           "teacher_labels", "width_student", "FeatureCapture", "hint_loss", "hinton_loss", "make_adapter"]


callable_package(__name__, "edgeslim.distill.api:distill")
