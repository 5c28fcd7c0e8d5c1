import json

import pytest
import torch
import torch.nn as nn

from edgeslim.errors import CheckpointError
from edgeslim.models import create, load_checkpoint, save_checkpoint


def test_round_trip_is_exact(tmp_path):
    model = create("seed-cnn", width=0.5)
    save_checkpoint(model, tmp_path / "c", {"input_shape": [1, 32, 32]})
    loaded = load_checkpoint(tmp_path / "c")
    x = torch.randn(3, 1, 32, 32)
    model.eval()
    assert torch.equal(model(x), loaded.model(x))
    meta = json.loads((tmp_path / "c" / "model.json").read_text())
    assert meta["architecture"] == {"name": "seed-cnn", "kwargs": {"width": 0.5}}


def test_loading_never_unpickles(tmp_path):
    save_checkpoint(create("lenet-300-100"), tmp_path / "c", {"input_shape": [1, 28, 28]})
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["model.json", "weights.safetensors"]
    assert (tmp_path / "c" / "weights.safetensors").read_bytes()[8:9] == b"{"  # safetensors JSON header


def test_smaller_saved_shapes_are_restored(tmp_path):
    """A checkpoint whose layers are narrower than the architecture default (structured
    pruning) loads into correctly shrunk modules."""
    model = create("seed-cnn")
    conv1, conv2, fc1 = model.features[0], model.features[3], model.classifier[1]
    keep = torch.arange(0, 16, 2)
    conv1.weight = nn.Parameter(conv1.weight[keep].clone()); conv1.bias = nn.Parameter(conv1.bias[keep].clone())
    conv1.out_channels = 8
    conv2.weight = nn.Parameter(conv2.weight[:, keep].clone()); conv2.in_channels = 8
    save_checkpoint(model, tmp_path / "p", {"input_shape": [1, 32, 32]})
    loaded = load_checkpoint(tmp_path / "p").model
    assert loaded.features[0].out_channels == 8 and loaded.features[3].in_channels == 8
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(model.eval()(x), loaded(x))
    assert fc1.in_features == 2048


def test_user_module_by_import_path(tmp_path):
    from edgeslim.models.zoo import LeNet5

    model = LeNet5(num_classes=3)  # not created through the registry
    save_checkpoint(model, tmp_path / "k", {"input_shape": [1, 32, 32]})
    assert json.loads((tmp_path / "k" / "model.json").read_text())["architecture"]["name"] == \
        "edgeslim.models.zoo:LeNet5"
    with pytest.raises(CheckpointError, match="not a registered model.*trust_code=True"):
        load_checkpoint(tmp_path / "k")  # a class path is imported only when the caller trusts it
    # rebuilt with default arguments (10 classes), then fitted to the saved 3-class head
    loaded = load_checkpoint(tmp_path / "k", trust_code=["edgeslim.models.zoo:LeNet5"]).model
    assert loaded.classifier[-1].out_features == 3
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model.eval()(x), loaded(x))


def test_user_module_instance(tmp_path):
    model = nn.Sequential(nn.Linear(4, 2))
    save_checkpoint(model, tmp_path / "u", {"input_shape": [4]})
    with pytest.raises(CheckpointError, match="pass model="):
        # torch.nn.Sequential needs its layers: the recorded class cannot be rebuilt alone
        load_checkpoint(tmp_path / "u")
    loaded = load_checkpoint(tmp_path / "u", model=nn.Sequential(nn.Linear(4, 2)))
    assert torch.equal(loaded.model[0].weight, model[0].weight)


def test_missing_files_are_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing weights.safetensors"):
        load_checkpoint(tmp_path / "empty")


def test_corrupt_weights_are_explained(tmp_path):
    save_checkpoint(create("lenet-5"), tmp_path / "c", {"input_shape": [1, 32, 32]})
    (tmp_path / "c" / "weights.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="does not match the sha256 recorded in model.json"):
        load_checkpoint(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "model.json").read_text())
    del meta["weights_sha256"]  # a checkpoint from before the digest was recorded
    (tmp_path / "c" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "c")
