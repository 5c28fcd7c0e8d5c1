import torch
import torch.nn as nn

from edgeslim.evaluate import agreement, count_macs, count_nonzero_params, evaluate_checkpoint, metrics_from_logits
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


def test_evaluate_checkpoint_reports_everything(digits_checkpoint):
    folder, _ = digits_checkpoint
    r = evaluate_checkpoint(folder)
    for key in ("accuracy", "loss", "per_class_accuracy", "params", "nonzero_params", "macs", "bytes"):
        assert key in r
    assert r["dataset"] == "digits" and r["samples"] == 359 and r["bytes"] > r["params"] * 4
