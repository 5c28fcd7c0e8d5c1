"""One resolver for every command's model argument: folders, registry names with arguments,
--weights (key for key), user classes only when trusted; the CLI takes each of them."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from edgeslim.cli import app
from edgeslim.errors import CheckpointError
from edgeslim.models import create, resolve_model, trusted_code
from edgeslim.models.resolve import parse_model_name

SMALL_NET = "mobilenet_v3_small,num_classes=10,in_channels=1,small_input=true,width=0.25"
runner = CliRunner()


def _save_state(model, path):
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_parse_model_name_reads_json_values():
    assert parse_model_name("resnet18,num_classes=10,small_input=true,width=0.5") == (
        "resnet18", {"num_classes": 10, "small_input": True, "width": 0.5})
    with pytest.raises(CheckpointError, match="not KEY=VALUE"):
        parse_model_name("resnet18,small_input")


def test_folder_and_registry_name(digits_checkpoint):
    folder, trained = digits_checkpoint
    ckpt = resolve_model(folder)
    assert torch.equal(ckpt.model.state_dict()["classifier.3.weight"], trained.model.state_dict()["classifier.3.weight"])
    assert ckpt.meta["source"] == str(folder)
    named = resolve_model(SMALL_NET)
    assert named.input_shape == (1, 32, 32) and named.model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a registered model.*resnet18"):
        resolve_model("resnet9000")


def test_a_checkpoint_made_from_another_is_its_own_source(digits_checkpoint, tmp_path):
    """A pruned copy saved with its original's meta once kept the original's folder as its source, so
    `edgeslim export pruned/` wrote pruned/'s model over original/model.onnx."""
    import edgeslim
    from edgeslim.models import save_checkpoint

    folder, _ = digits_checkpoint
    original = resolve_model(folder)
    copy = tmp_path / "pruned"
    save_checkpoint(original.model, copy, original.meta)
    assert "source" not in json.loads((copy / "model.json").read_text())
    assert resolve_model(copy).meta["source"] == str(copy)
    before = sorted(p.name for p in folder.iterdir())
    assert edgeslim.export(copy, edgeslim.Export(optimize="never")).artifact == copy / "model.onnx"
    assert sorted(p.name for p in folder.iterdir()) == before


def test_weights_load_key_for_key_and_fit_the_head(tmp_path):
    torch.manual_seed(0)
    trained = create("mobilenet_v3_small", num_classes=7, width=0.25).eval()
    weights = _save_state(trained, tmp_path / "w.safetensors")
    ckpt = resolve_model("mobilenet_v3_small,width=0.25", weights)  # built with 1000 classes: the head is fitted
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(ckpt.model(x), trained(x)) and ckpt.meta["weights"] == str(weights)
    with pytest.raises(CheckpointError, match=r"missing \(bn1.bias.*unexpected \(classifier.0.bias"):
        resolve_model("resnet18", weights)
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_model("resnet18", tmp_path / "none.safetensors")


def test_registered_prefix_loads_its_sources():
    from edgeslim.models.checkpoint import Checkpoint
    from edgeslim.models.resolve import _PREFIXES, register_source_prefix

    register_source_prefix("test-src", lambda rest, weights: Checkpoint(torch.nn.Identity(), {"rest": rest}))
    try:
        assert resolve_model("test-src:/some/folder").meta == {"rest": "/some/folder"}
    finally:
        del _PREFIXES["test-src"]


class UserNet(torch.nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.fc = torch.nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_user_class_only_when_trusted():
    name = f"{__name__}:UserNet,classes=5,input_shape=[1,2,2]"
    with pytest.raises(CheckpointError, match="--trust-code"):
        resolve_model(name)
    with trusted_code([f"{__name__}:UserNet"]):
        ckpt = resolve_model(name)
    assert ckpt.input_shape == (1, 2, 2) and ckpt.model.fc.out_features == 5


def test_cli_eval_and_export_a_registry_model_with_weights(tmp_path):
    torch.manual_seed(0)
    weights = _save_state(create(SMALL_NET.split(",")[0], **parse_model_name(SMALL_NET)[1]),
                          tmp_path / "w.safetensors")
    r = runner.invoke(app, ["eval", SMALL_NET, "--weights", str(weights), "--dataset", "digits", "--limit", "40",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["samples"] == 40
    r = runner.invoke(app, ["export", SMALL_NET, "--weights", str(weights), "--out", str(tmp_path / "m.onnx"),
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["max_abs_diff"] < 1e-4
    r = runner.invoke(app, ["export", SMALL_NET, "--json"])
    assert r.exit_code != 0 and "pass out=" in str(r.exception)


def test_cli_train_fits_a_named_model_with_arguments_to_the_data(tmp_path):
    out = tmp_path / "m"
    r = runner.invoke(app, ["train", "--model", "mobilenet_v3_small,width=0.25", "--dataset", "digits",
                            "--epochs", "0", "--out", str(out)])  # built and evaluated, not trained
    assert r.exit_code == 0, r.output
    arch = json.loads((out / "model.json").read_text())["architecture"]
    assert arch == {"name": "mobilenet_v3_small",
                    "kwargs": {"num_classes": 10, "in_channels": 1, "small_input": True, "width": 0.25}}
