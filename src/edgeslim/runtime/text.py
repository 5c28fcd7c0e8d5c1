"""Text embedding on the device: ONNX Runtime + the ``tokenizers`` package (no torch, no transformers).

A text model is an ONNX graph with int64 inputs ``input_ids`` and ``attention_mask`` and one
output ``sentence_embedding``. Its tokenizer (a Hugging Face ``tokenizer.json``) travels inside
the model as the metadata entry ``edgeslim_tokenizer`` (so it is also inside an ``.eslim``,
covered by its digests and signature) and as a ``tokenizer.json`` file beside it; the embedded
copy wins, the file is the fallback for ONNX files written by other tools.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ArtifactError, ConfigError
from .runner import Runner, load_model

TOKENIZER_KEY = "edgeslim_tokenizer"
TEXT_INPUTS = ("input_ids", "attention_mask")
DEFAULT_MAX_LENGTH = 128
# A fixed English passage: benchmark inputs are real word pieces (a realistic mix of token
# ids), not random integers, repeated until the requested sequence length is filled.
_BENCH_PASSAGE = ("Edge devices run compressed models close to the data. Quantization stores weights as "
                  "eight-bit integers, pruning removes attention heads and neurons that matter little, and "
                  "distillation teaches a smaller student to reproduce the embeddings of its teacher. ")


def is_text_model(runner: Runner) -> bool:
    return {i.name for i in runner.inputs} >= set(TEXT_INPUTS)


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ConfigError("text models need the 'tokenizers' package: pip install edgeslim[text]") from None
    return tokenizers


def tokenizer_json(runner: Runner, model_path: str | os.PathLike | None = None) -> str:
    """The tokenizer stored in the model, else the ``tokenizer.json`` beside ``model_path``."""
    # only an ONNX file stores it (other formats have no free-form metadata to hold 700 kB)
    session = getattr(runner, "session", None)
    embedded = session.get_modelmeta().custom_metadata_map.get(TOKENIZER_KEY) if session is not None else None
    if embedded:
        return embedded
    beside = Path(model_path).parent / "tokenizer.json" if model_path is not None else None
    if beside is not None and beside.is_file():
        return beside.read_text(encoding="utf-8")
    raise ArtifactError(f"{runner.name}: a text model needs its tokenizer: none is stored in the model and there "
                        "is no tokenizer.json beside it; export it with edgeslim or copy the tokenizer.json of "
                        "its Hugging Face folder next to it")


class TextEmbedder:
    """Tokenize sentences and run a text model: ``embed(["a sentence", ...]) -> [n, dim]``."""

    def __init__(self, runner: Runner, tokenizer: str, max_length: int | None = None):
        self.runner = runner
        self.max_length = int(max_length or runner.metadata.get("max_length", DEFAULT_MAX_LENGTH))
        try:
            self.tokenizer = _tokenizers().Tokenizer.from_str(tokenizer)
        except Exception as e:  # the Rust parser's own exception type
            raise ArtifactError(f"{runner.name}: the tokenizer does not parse ({str(e)[:200]})") from None
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding()  # to the longest sentence of each batch, not a fixed length
        self._feeds = {i.name for i in runner.inputs}
        # position embeddings the model has (files from other tools: unknown, so unchecked)
        self.max_positions = int(runner.metadata.get("max_positions", 1 << 30))

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer.encode_batch(list(texts))
        feeds = {"input_ids": np.array([e.ids for e in enc], np.int64),
                 "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
        if "token_type_ids" in self._feeds:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        return feeds

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(feeds)[self.runner.outputs[0].name]

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        texts = list(texts)
        if not texts:
            raise ConfigError("no text to embed")
        return np.concatenate([self.run(self.encode(texts[i:i + batch_size]))
                               for i in range(0, len(texts), batch_size)])

    def bench_inputs(self, batch: int, seq_len: int) -> dict[str, np.ndarray]:
        """``batch`` rows of exactly ``seq_len`` real tokens ([CLS] passage... [SEP]), all attended."""
        if seq_len > self.max_positions:
            raise ConfigError(f"{self.runner.name}: --seq-len {seq_len} is longer than the model's "
                              f"{self.max_positions} positions")
        ids = self.tokenizer.encode(_BENCH_PASSAGE, add_special_tokens=False).ids
        head, tail = self.tokenizer.encode("", add_special_tokens=True).ids[:1], \
            self.tokenizer.encode("", add_special_tokens=True).ids[1:]
        body = (ids * (seq_len // max(len(ids), 1) + 1))[:max(seq_len - len(head) - len(tail), 0)]
        row = np.array((head + body + tail)[:seq_len], np.int64)
        feeds = {"input_ids": np.tile(row, (batch, 1)), "attention_mask": np.ones((batch, len(row)), np.int64)}
        if "token_type_ids" in self._feeds:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        return feeds


def text_embedder(runner: Runner, model_path: str | os.PathLike | None = None) -> TextEmbedder:
    return TextEmbedder(runner, tokenizer_json(runner, model_path))


def load_text_model(path: str | os.PathLike, threads: int | None = None,
                    public_key: str | os.PathLike | None = None,
                    require_signature: bool | None = None) -> TextEmbedder:
    """Open an ``.onnx`` / ``.eslim`` text model (see ``load_model`` for the signature policy)."""
    runner = load_model(path, threads=threads, public_key=public_key, require_signature=require_signature)
    if not is_text_model(runner):
        raise ArtifactError(f"{path}: not a text model (its inputs are not input_ids and attention_mask); "
                            "pass an image instead of --text")
    return text_embedder(runner, path)
