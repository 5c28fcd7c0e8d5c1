"""Knowledge distillation: Hinton soft targets, hint layers with learned adapters, and a
``loss_fn`` factory (``kd_loss_fn``) for pruning recovery and quantization-aware training."""
from .api import (DistillConfig, KDLoss, StudentWithAdapters, cache_teacher_logits, crop_flip, distill,
                  distill_checkpoint, kd_loss_fn,
                  recalibrate_batchnorm, summarize, teacher_labels, width_student)
from .losses import FeatureCapture, hint_loss, hinton_loss, make_adapter

__all__ = ["DistillConfig", "KDLoss", "StudentWithAdapters", "cache_teacher_logits", "crop_flip", "distill", "distill_checkpoint",
           "kd_loss_fn", "recalibrate_batchnorm", "summarize", "teacher_labels", "width_student",
           "FeatureCapture", "hint_loss", "hinton_loss", "make_adapter"]
