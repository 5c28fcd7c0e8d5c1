"""Training: ``fit(model, split, TrainConfig(...))``, the high-level ``train_model`` and the
``finetune_config`` every recovery fine-tune starts from."""
from .loop import StopTraining, TrainConfig, cross_entropy_loss, fit, iterate_batches, set_seed
from .api import finetune_config, train_model

__all__ = ["TrainConfig", "fit", "train_model", "finetune_config", "StopTraining", "cross_entropy_loss",
           "iterate_batches", "set_seed"]
