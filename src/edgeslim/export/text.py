"""Export a sentence encoder to ONNX: int64 ``input_ids``/``attention_mask`` with dynamic batch
and sequence axes, output ``sentence_embedding`` [batch, dim]. The tokenizer goes inside the
model (metadata entry ``edgeslim_tokenizer``, hence also inside an ``.eslim``) and as
``tokenizer.json`` beside it; parity with PyTorch is checked on real sentences."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import torch
import torch.nn as nn

from .._io import atomic_write_bytes, oserror_for, temp_path
from ..models.text import INPUT_NAMES, OUTPUT_NAME
from ..runtime.text import DEFAULT_MAX_LENGTH, TOKENIZER_KEY, TextEmbedder
from .onnx_export import OPSET, save_onnx, set_metadata

PARITY_TEXTS = (
    "A short one.",
    "Edge inference keeps the data on the device and answers in milliseconds.",
    "Quantized transformers trade a little accuracy for a large gain in speed, and the embeddings they "
    "produce should stay close to those of the float model on every sentence we try.",
    "ok",
)


def _dynamic_axes() -> dict[str, dict[int, str]]:
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    return {**axes, OUTPUT_NAME: {0: "batch"}}


def embed_torch(model: nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES)).numpy()


def export_text_onnx(model: nn.Module, out: str | Path, tokenizer: str | Path,
                     max_length: int = DEFAULT_MAX_LENGTH, metadata: dict[str, Any] | None = None,
                     parity_texts: Sequence[str] = PARITY_TEXTS, opset: int = OPSET) -> dict[str, Any]:
    """Write ``model`` (a ``SentenceEncoder``) to ``out`` and ``tokenizer.json`` beside it;
    returns the paths, the embedding size and parity (max |diff| vs PyTorch) on ``parity_texts``."""
    from ..runtime.runner import OnnxRunner

    out, tokenizer_text = Path(out), Path(tokenizer).read_text(encoding="utf-8")
    model = model.eval()
    # token ids 0..2 exist in every vocabulary; the trace only needs the shapes
    dummy = {"input_ids": np.array([[0, 1, 2]], np.int64), "attention_mask": np.ones((1, 3), np.int64)}
    with temp_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        try:
            torch.onnx.export(model, tuple(torch.from_numpy(dummy[n]) for n in INPUT_NAMES), str(tmp),
                              dynamo=False, opset_version=opset, input_names=list(INPUT_NAMES),
                              output_names=[OUTPUT_NAME], dynamic_axes=_dynamic_axes())
        except OSError as e:
            raise oserror_for(e, out) from e
        proto = onnx.load(str(tmp))
    dim, positions = int(model.config.hidden_size), int(model.config.max_position_embeddings)
    max_length = min(int(max_length), positions)
    set_metadata(proto, {"task": "text-embedding", "max_length": max_length, "max_positions": positions,
                         "embedding_dim": dim, **(metadata or {})})
    entry = proto.metadata_props.add()
    entry.key, entry.value = TOKENIZER_KEY, tokenizer_text
    onnx.checker.check_model(proto)
    save_onnx(proto, out)
    tok_path = atomic_write_bytes(out.parent / "tokenizer.json", tokenizer_text.encode("utf-8"))
    embedder = TextEmbedder(OnnxRunner(out), tokenizer_text, max_length)
    feeds = embedder.encode(list(parity_texts))
    diff = np.abs(embed_torch(model, feeds) - embedder.run(feeds))
    return {"onnx": str(out), "tokenizer": str(tok_path), "bytes": out.stat().st_size, "embedding_dim": dim,
            "max_abs_diff": float(diff.max()), "samples": len(parity_texts), "parity_inputs": "sentences"}
