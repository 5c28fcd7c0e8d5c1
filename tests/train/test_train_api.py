"""edgeslim.train(model, TrainConfig, data=...) -> Result, on the tiny digits data."""
import pytest
import torch

import edgeslim
from edgeslim.errors import ConfigError
from edgeslim.models import create, load_checkpoint


def test_train_verb_returns_the_model_its_folder_and_metrics(digits, tmp_path):
    res = edgeslim.train("seed-cnn", edgeslim.TrainConfig(epochs=3, batch_size=64), data=digits,
                         out=tmp_path / "m", progress=False)
    assert isinstance(res, edgeslim.Result) and isinstance(res.model, torch.nn.Module)
    assert res.artifact == tmp_path / "m" and (res.artifact / "model.json").is_file()
    saved = load_checkpoint(res.artifact)
    assert res.summary.keys() == saved.meta["metrics"].keys() and 0.5 < res.summary["accuracy"] <= 1
    assert res.summary["accuracy"] == saved.meta["metrics"]["accuracy"]
    assert edgeslim.evaluate(res.artifact, data=digits).summary["accuracy"] == res.summary["accuracy"]
    assert res.warnings == []


def test_train_verb_leaves_a_module_passed_in_untouched(digits):
    model = create("seed-cnn", width=0.25, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = edgeslim.train(model, {"epochs": 1, "max_steps": 3}, data=digits, progress=False)
    assert res.artifact is None and res.model is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in res.model.state_dict().items())


def test_train_verb_names_a_bad_config_field(digits):
    with pytest.raises(ConfigError, match="^invalid TrainConfig config: lr: must be > 0"):
        edgeslim.train("lenet-300-100", {"lr": 0}, data=digits, progress=False)
