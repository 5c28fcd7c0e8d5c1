import pytest
import torch

from edgeslim.errors import ConfigError

from edgeslim.models import create
from edgeslim.train import TrainConfig, fit


def test_short_training_on_digits_learns(digits_checkpoint):
    _, ckpt = digits_checkpoint
    metrics = ckpt.meta["metrics"]
    assert metrics["accuracy"] > 0.85, metrics  # 10 classes: chance is 0.10
    history = ckpt.meta["history"]
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]


def test_fixed_seed_is_reproducible(digits):
    def run():
        torch.manual_seed(123)  # model init is seeded by fit's set_seed below? no: seed before create
        model = create("seed-cnn", width=0.25)
        fit(model, digits.train, TrainConfig(epochs=1, seed=7, max_steps=5), progress=False)
        return model.features[0].weight.detach().clone()

    assert torch.equal(run(), run())


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="^invalid TrainConfig config: epochs: must be >= 0"):
        TrainConfig(epochs=-1)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="adagrad")
    with pytest.raises(ConfigError, match="epoch_count"):
        TrainConfig(epoch_count=3)


def test_custom_loss_fn_is_used(digits):
    calls = []

    def loss_fn(model, x, y):
        calls.append(len(y))
        logits = model(x)
        return torch.nn.functional.cross_entropy(logits, y), logits

    fit(create("seed-cnn", width=0.25), digits.train, TrainConfig(epochs=1, max_steps=3), loss_fn=loss_fn,
        progress=False)
    assert len(calls) == 3


def test_a_fine_tune_that_only_loses_hands_back_its_start(digits_checkpoint, digits):
    """With a validation split, the weights fine-tuning starts from compete with every epoch: an
    lr that wrecks the model ends where it began."""
    import copy

    from edgeslim.evaluate.metrics import evaluate_split

    _, ckpt = digits_checkpoint
    model = copy.deepcopy(ckpt.model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, digits.train, TrainConfig(epochs=2, lr=50.0, schedule="constant", optimizer="sgd"),
                  val=digits.test, progress=False)
    assert max(r["val_accuracy"] for r in history) < evaluate_split(ckpt.model, digits.test)["accuracy"]
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    assert not any(r["best"] for r in history)
    # a fine-tune that helps still ends on its best epoch
    weak = create("seed-cnn", width=0.25, num_classes=10)
    history = fit(weak, digits.train, TrainConfig(epochs=2, max_steps=20), val=digits.test, progress=False)
    assert sum(r["best"] for r in history) == 1
