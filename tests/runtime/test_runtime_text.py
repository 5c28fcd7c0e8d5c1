import json
import shutil

import numpy as np
import onnx
import pytest

from edgeslim.errors import ArtifactError
from edgeslim.runtime import benchmark
from edgeslim.runtime.text import TOKENIZER_KEY, load_text_model


def test_text_runtime_never_imports_torch(tiny_text_onnx, torch_free):
    out = torch_free("from edgeslim.runtime.text import load_text_model\n"
                     f"print(load_text_model({str(tiny_text_onnx)!r}).embed(['a fox and a dog.']).shape)")
    assert out.strip() == "(1, 32)"


def test_batching_and_padding_do_not_change_embeddings(tiny_text_onnx):
    e = load_text_model(tiny_text_onnx)
    texts = ["a fox.", "the quick brown fox jumps over the lazy dog.", "data stays on the device."]
    together = e.embed(texts, batch_size=3)
    alone = np.concatenate([e.embed([t]) for t in texts])
    assert np.abs(together - alone).max() < 1e-5


def test_tokenizer_file_beside_is_the_fallback(tiny_text_onnx, tmp_path):
    proto = onnx.load(str(tiny_text_onnx))
    for p in [p for p in proto.metadata_props if p.key == TOKENIZER_KEY]:
        proto.metadata_props.remove(p)
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ArtifactError, match="tokenizer.json"):
        load_text_model(bare)
    shutil.copy(tiny_text_onnx.parent / "tokenizer.json", tmp_path / "tokenizer.json")
    assert load_text_model(bare).embed(["a dog."]).shape == (1, 32)


def test_bench_feeds_real_tokens_of_the_requested_length(tiny_text_onnx):
    e = load_text_model(tiny_text_onnx)
    feeds = e.bench_inputs(batch=2, seq_len=20)
    assert feeds["input_ids"].shape == (2, 20) and feeds["input_ids"].dtype == np.int64
    assert feeds["input_ids"][0, 0] == 2 and feeds["input_ids"][0, -1] == 3  # [CLS] ... [SEP]
    assert len(set(feeds["input_ids"][0].tolist())) > 5
    res = benchmark([tiny_text_onnx], batch=2, seq_len=20, rounds=2, warmup=1, iters_per_round=1)
    assert res[0]["p50_ms"] > 0


def test_cli_run_text_and_json(tiny_text_onnx):
    from typer.testing import CliRunner

    from edgeslim.cli import app

    r = CliRunner().invoke(app, ["run", str(tiny_text_onnx), "--text", "a fox and a dog.", "--json"])
    assert r.exit_code == 0, r.output
    vec = json.loads(r.output)["embedding"]
    assert len(vec) == 32 and abs(np.linalg.norm(vec) - 1) < 1e-5
    r = CliRunner().invoke(app, ["run", str(tiny_text_onnx), "--text", "a fox."])
    assert r.exit_code == 0 and "norm 1.000" in r.output
    r = CliRunner().invoke(app, ["bench", str(tiny_text_onnx), "--seq-len", "16", "--rounds", "2", "--warmup", "1"])
    assert r.exit_code == 0, r.output


def test_tokenizer_travels_inside_eslim(tiny_text_onnx, tmp_path):
    from edgeslim.export.artifact import write_artifact

    out = tmp_path / "model.eslim"  # no tokenizer.json in tmp_path: it must come from inside
    write_artifact(tiny_text_onnx, out, {"task": "text-embedding", "max_length": 32})
    got = load_text_model(out, require_signature=False).embed(["a fox and a dog."])
    want = load_text_model(tiny_text_onnx).embed(["a fox and a dog."])
    assert np.abs(got - want).max() < 1e-5


def test_cli_pack_text_onnx_then_run(tiny_text_onnx, tmp_path):
    from typer.testing import CliRunner

    from edgeslim.cli import app

    out = tmp_path / "text.eslim"
    r = CliRunner().invoke(app, ["pack", str(tiny_text_onnx), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["run", str(out), "--text", "a fox.", "--json"])
    assert r.exit_code == 0, r.output
    want = load_text_model(tiny_text_onnx).embed(["a fox."])[0]
    assert np.abs(np.array(json.loads(r.output[r.output.index("{"):])["embedding"]) - want).max() < 1e-5
