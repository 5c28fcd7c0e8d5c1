"""Training: ``fit(model, split, TrainConfig(...))`` and the high-level ``train_model``."""
from .loop import TrainConfig, cross_entropy_loss, fit, iterate_batches, set_seed
from .api import train_model

__all__ = ["TrainConfig", "fit", "train_model", "cross_entropy_loss", "iterate_batches", "set_seed"]
