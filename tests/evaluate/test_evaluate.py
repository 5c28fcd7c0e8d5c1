import torch
import torch.nn as nn

import edgeslim
from edgeslim.evaluate import Evaluate, agreement, count_macs, count_nonzero_params, metrics_from_logits
from edgeslim.models import create


def test_macs_of_seed_cnn_match_hand_count():
    conv1 = 32 * 32 * 16 * 9
    conv2 = 16 * 16 * 32 * 16 * 9
    fc = 2048 * 128 + 128 * 10
    assert count_macs(create("seed-cnn"), (1, 32, 32)) == conv1 + conv2 + fc


def test_macs_see_custom_conv_modules():
    class SamePadConv(nn.Conv2d):  # a custom conv: hook-based counters miss these
        def forward(self, x):
            return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1)), self.weight, self.bias)

    model = nn.Sequential(SamePadConv(3, 8, 3))
    assert count_macs(model, (3, 10, 10)) == 10 * 10 * 8 * 3 * 9


def test_metrics_and_agreement_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    y = torch.tensor([0, 0, 0])
    m = metrics_from_logits(logits, y)
    assert abs(m["accuracy"] - 2 / 3) < 1e-6 and m["per_class_accuracy"][0] == m["accuracy"]
    assert abs(agreement(logits, torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])) - 2 / 3) < 1e-6


def test_nonzero_params():
    lin = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, 0] = 1
    assert count_nonzero_params(lin) == 1


def test_evaluate_reports_everything(digits_checkpoint):
    folder, _ = digits_checkpoint
    res = edgeslim.evaluate(folder)
    r = res.summary
    assert res.model is None and res.artifact is None and res.warnings == []
    for key in ("accuracy", "loss", "per_class_accuracy", "params", "nonzero_params", "macs", "bytes"):
        assert key in r
    assert r["dataset"] == "digits" and r["samples"] == 359 and r["bytes"] > r["params"] * 4


def test_eval_accepts_an_exported_file_and_matches_the_checkpoint(digits_checkpoint, digits_onnx):
    from typer.testing import CliRunner

    from edgeslim.cli import app

    folder, _ = digits_checkpoint
    torch_result, file_result = edgeslim.evaluate(folder).summary, edgeslim.evaluate(digits_onnx).summary
    assert file_result["evaluated_with"] == "onnxruntime" and file_result["dataset"] == "digits"
    assert abs(file_result["accuracy"] - torch_result["accuracy"]) < 1e-9  # same model, same test split
    assert file_result["params"] == torch_result["params"] - sum(  # weights only: biases are not counted
        m.bias.numel() for m in digits_checkpoint[1].model.modules() if getattr(m, "bias", None) is not None)
    r = CliRunner().invoke(app, ["eval", str(digits_onnx), "--json"])
    assert r.exit_code == 0, r.output
    assert '"evaluated_with": "onnxruntime"' in r.output


def test_eval_refuses_a_data_set_the_model_was_not_made_for(tmp_path):
    import pytest

    from edgeslim.errors import DataError
    # digits padded to 28x28 has Fashion-MNIST's shape and class count: only the class names differ
    edgeslim.train("lenet-300-100", edgeslim.TrainConfig(epochs=1), "digits", out=tmp_path / "m", progress=False)
    with pytest.raises(DataError, match="classes T-shirt/top.*predicts 0, 1, 2, 3"):
        edgeslim.evaluate(tmp_path / "m", data="fashion-mnist")


def test_evaluate_limit_and_data_bundle_and_bad_config(digits_checkpoint, digits):
    import pytest

    from edgeslim.errors import ConfigError

    folder, ckpt = digits_checkpoint
    full = edgeslim.evaluate(folder).summary
    assert edgeslim.evaluate(ckpt, data=digits).summary["accuracy"] == full["accuracy"]  # a DataBundle, same split
    assert edgeslim.evaluate(folder, Evaluate(limit=50)).summary["samples"] == 50
    with pytest.raises(ConfigError, match="^invalid Evaluate config: limit: "):
        edgeslim.evaluate(folder, {"limit": 0})
