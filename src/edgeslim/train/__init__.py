"""Training. ``edgeslim.train(model, TrainConfig(...), data=...) -> Result`` (this package is callable:
:func:`edgeslim.train.api.train`); ``fit(model, split, TrainConfig(...))`` is the loop under it, and
``finetune_config`` the TrainConfig every recovery fine-tune starts from."""
from .._verb import callable_package
from .loop import StopTraining, TrainConfig, cross_entropy_loss, fit, iterate_batches, set_seed
from .api import finetune_config, train

__all__ = ["TrainConfig", "fit", "train", "finetune_config", "StopTraining", "cross_entropy_loss",
           "iterate_batches", "set_seed"]

callable_package(__name__, "edgeslim.train.api:train")
