"""The on-device runtime: ONNX Runtime (or OpenVINO, LiteRT) + numpy + Pillow. It never imports torch
(ExecuTorch's bindings, loaded only for ``.pte`` files, are the one exception: see executorch_runner)."""
from .bench import benchmark, slower_than_baseline
from .preprocess import Preprocess
from .runner import OnnxRunner, Prediction, Runner, TensorSpec, load_model

__all__ = ["benchmark", "slower_than_baseline", "Preprocess", "Prediction", "Runner", "OnnxRunner", "TensorSpec", "load_model"]
