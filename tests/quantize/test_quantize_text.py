import json

import numpy as np
import onnx
import pytest

from edgeslim.errors import ConfigError
from edgeslim.quantize.text import TextQuantizeConfig, quantize_text_model
from edgeslim.runtime.text import load_text_model

TEXTS = ["the quick brown fox jumps over the lazy dog.", "edge devices run small models close to the data.",
         "quantization stores weights as eight bit integers.", "pruning removes attention heads and neurons.",
         "a student model learns from its teacher.", "the dog sleeps in the sun all day.",
         "small models answer quickly on a phone.", "integers are faster than floats on many chips.",
         "the teacher writes on the board.", "a fox and a dog are friends."]


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_fused_int8_stays_close_to_float(tiny_bert, tiny_tokenizer, tmp_path, method):
    config = TextQuantizeConfig(method=method, samples=8, benchmark=False)
    s = quantize_text_model(tiny_bert, tiny_tokenizer[0], tmp_path, config, TEXTS * 2, TEXTS)
    assert s["fusion"]["kept"] and s["fusion"]["fused_ops"].get("Attention") == 2
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert ("QAttention" in ops or "MatMulInteger" in ops) if method == "dynamic" else "QuantizeLinear" in ops
    assert s["mean_cosine"] > 0.98 and s["sentences"] == len(TEXTS)
    emb = load_text_model(tmp_path / "model.onnx").embed(TEXTS[:2])  # tokenizer kept in the int8 file
    assert emb.shape == (2, 32)
    assert json.loads((tmp_path / "summary.json").read_text())["method"] == method


def test_keep_float_ranks_ops_and_static_needs_text(tiny_bert, tiny_tokenizer, tmp_path):
    config = TextQuantizeConfig(method="dynamic", samples=8, keep_float=1, benchmark=False)
    s = quantize_text_model(tiny_bert, tiny_tokenizer[0], tmp_path / "a", config, TEXTS, TEXTS)
    losses = [r["cosine_loss"] for r in s["sensitivity"]]
    assert losses == sorted(losses, reverse=True) and s["float_nodes"] == [s["sensitivity"][0]["node"]]
    with pytest.raises(ConfigError, match="calibration text"):
        quantize_text_model(tiny_bert, tiny_tokenizer[0], tmp_path / "b", TextQuantizeConfig(method="static",
                            benchmark=False), [], [])


def test_cli_quantize_text_checkpoint(tiny_bert, tiny_tokenizer, tmp_path):
    from typer.testing import CliRunner

    from edgeslim.cli import app
    from edgeslim.models.text import save_text_checkpoint

    ck = save_text_checkpoint(tiny_bert, tmp_path / "ck", tiny_tokenizer[0])
    data = tmp_path / "calib.txt"
    data.write_text("\n".join(TEXTS * 2) + "\n")
    r = CliRunner().invoke(app, ["quantize", str(ck), "--method", "static", "--calib-data", str(data),
                                 "--samples", "8", "--out", str(tmp_path / "q"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output[r.output.index("{"):])
    assert s["mean_cosine"] > 0.98 and s["sentences"] == 12 and "speed" in s
    r = CliRunner().invoke(app, ["export", str(ck), "--json"])
    assert r.exit_code == 0, r.output
    assert (ck / "model.onnx").exists() and np.isfinite(json.loads(r.output)["max_abs_diff"])
