"""The on-device runtime: ONNX Runtime + numpy + Pillow. It never imports torch."""
from .bench import benchmark, slower_than_baseline
from .preprocess import Preprocess
from .runner import Prediction, Runner, load_model

__all__ = ["benchmark", "slower_than_baseline", "Preprocess", "Prediction", "Runner", "load_model"]
