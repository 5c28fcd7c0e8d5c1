"""Shared fixtures: a tiny seed-cnn trained on digits, its checkpoint and its ONNX export."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits():
    from edgeslim.data import load_digits

    return load_digits(pad_to=32)


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory, digits):
    """seed-cnn trained for 3 epochs on digits, saved as a checkpoint folder."""
    import edgeslim
    from edgeslim.models import load_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "seed-cnn"
    res = edgeslim.train("seed-cnn", edgeslim.TrainConfig(epochs=4, batch_size=64, augment=False, hflip=False), digits,
                         out=out, progress=False)
    return out, load_checkpoint(res.artifact, model=res.model)


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory, digits_checkpoint):
    import edgeslim

    folder, _ = digits_checkpoint
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    edgeslim.export(folder, edgeslim.Export(optimize="never"), out=out)  # a fixed graph: tests cut it at named tensors
    return out


@pytest.fixture
def wait_for_port():
    """``wait(proc, port)``: block until the server process ``proc`` accepts connections on
    127.0.0.1:``port`` (fails with its output if it exits or 60 s pass)."""
    import socket
    import time

    def wait(proc, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.2)
    return wait


def _format_missing(fmt: str) -> str | None:
    """Why ``fmt`` cannot be exported here (its extra is not installed), or None."""
    import importlib.util

    if fmt == "tflite":
        from edgeslim.export.tflite_export import litert_python

        if importlib.util.find_spec("ai_edge_litert") is None:
            return "ai-edge-litert is not installed (pip install 'edgeslim[litert-runtime]')"
        if litert_python() is None:
            return ("litert-torch is not installed here nor in VENV-litert / $EDGESLIM_LITERT_PYTHON "
                    "(scripts/bootstrap.sh creates it)")
        return None
    module = {"openvino": "openvino", "executorch": "executorch"}.get(fmt)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'edgeslim[{fmt}]')"
    return None


@pytest.fixture(scope="session")
def exported_formats(tmp_path_factory, digits_checkpoint):
    """The digits seed-cnn exported once per installed format: {format: export report}
    (a format whose extra is missing maps to the reason, a str)."""
    import edgeslim
    from edgeslim.export.api import SUFFIXES

    folder, _ = digits_checkpoint
    out = tmp_path_factory.mktemp("formats")
    reports = {}
    for fmt, suffix in SUFFIXES.items():
        reports[fmt] = _format_missing(fmt) or edgeslim.export(folder, edgeslim.Export(format=fmt, optimize="never"),
                                                                out=out / f"model{suffix}").summary
    return reports


@pytest.fixture
def exported(exported_formats):
    """``exported(fmt)``: the export report of ``fmt``, or skip with the reason its extra is missing."""
    def get(fmt: str) -> dict:
        report = exported_formats[fmt]
        if isinstance(report, str):
            pytest.skip(f"{fmt}: {report}")
        return report
    return get


@pytest.fixture
def format_missing():
    """``format_missing(fmt)``: why ``fmt``'s extra is missing here, or None."""
    return _format_missing


# ---- text models (issue 16): a 2-layer random BERT and a small WordPiece tokenizer ----

TINY_TEXTS = [
    "the quick brown fox jumps over the lazy dog.",
    "edge devices run small models close to the data.",
    "quantization stores weights as eight bit integers.",
    "pruning removes attention heads and neurons.",
    "a student model learns from its teacher.",
    "the dog sleeps in the sun all day.",
    "small models answer quickly on a phone.",
    "integers are faster than floats on many chips.",
    "the teacher writes on the board.",
    "a fox and a dog are friends.",
    "data stays on the device.",
    "heads and neurons matter a little.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer over the words of TINY_TEXTS, BERT-style ([CLS] ... [SEP]), as tokenizer.json."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for t in TINY_TEXTS for w in t.replace(".", " .").split()})
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path, len(vocab)


@pytest.fixture(scope="session")
def tiny_bert_config(tiny_tokenizer):
    _, vocab_size = tiny_tokenizer
    return {"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}  # deterministic training steps


@pytest.fixture
def tiny_bert(tiny_bert_config):
    """A random 2-layer BERT sentence encoder (registered as all-minilm-l6-v2 with a config)."""
    import torch

    from edgeslim.models import create

    torch.manual_seed(0)
    return create("all-minilm-l6-v2", config=tiny_bert_config).eval()


@pytest.fixture(scope="session")
def tiny_text_onnx(tmp_path_factory, tiny_tokenizer, tiny_bert_config):
    import torch

    from edgeslim.export.text import export_text_onnx
    from edgeslim.models import create

    torch.manual_seed(0)
    model = create("all-minilm-l6-v2", config=tiny_bert_config).eval()
    out = tmp_path_factory.mktemp("text") / "model.onnx"
    export_text_onnx(model, out, tiny_tokenizer[0], max_length=32)
    return out


@pytest.fixture
def torch_free():
    """``torch_free(code) -> stdout``: run ``code`` in a fresh interpreter and fail if it errs or
    imported torch or transformers (the device runtime must not)."""
    import subprocess
    import sys

    def run(code: str) -> str:
        check = "\nimport sys\nassert not {'torch', 'transformers'} & set(sys.modules), 'torch was imported'\n"
        out = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout
    return run


@pytest.fixture
def blank_image(tmp_path):
    """An 8x8 black PNG (any size and mode is converted by the runtime)."""
    import numpy as np
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    return path
