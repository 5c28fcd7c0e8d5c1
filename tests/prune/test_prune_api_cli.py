"""edgeslim.prune(...) entry point, config validation, sensitivity analysis, CLI."""
from __future__ import annotations

import json

import pytest
import torch

import edgeslim
import edgeslim.prune as P
from edgeslim.errors import ConfigError
from edgeslim.models import create, load_checkpoint


def test_package_is_callable_and_returns_a_result_leaving_the_input_untouched(digits):
    model = create("seed-cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = edgeslim.prune(model, edgeslim.Unstructured(sparsity=0.5), data=digits)
    assert isinstance(res, edgeslim.Result) and res.model is not model and res.warnings == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    summary = res.summary
    assert summary["after"]["weight_sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert summary["before"]["macs"] == summary["after"]["macs"] > 0
    assert set(summary["layer_sparsity"]) == {"features.0", "features.3", "classifier.1", "classifier.3"}
    assert "accuracy_drop_points" in summary


@pytest.mark.parametrize("bad,match", [
    ({"sparsity": 1.0}, "sparsity.*\\[0, 1\\)"),
    ({"sparsity": -0.1}, "sparsity"),
    ({"layers": ["classifier.9"]}, "no layer named 'classifier.9'"),
    ({"layers": ["features.1"]}, "ReLU"),
    ({"method": "nm", "layers": ["features.0"]}, "multiple of m=4"),
    ({"method": "unstructured", "criterion": "bn_scale"}, "criterion: Input should be .lamp., .magnitude., .taylor. or .l1."),
    ({"method": "unstructured", "target_macs": 0.5}, "target_macs: unknown field"),
    ({"method": "structured", "sparsity": 0.3, "target_macs": 0.5}, "not sparsity and target_macs"),
    ({"method": "structured", "target_macs": 1.5}, "target_macs"),
    ({"schedule": "gradual"}, "finetune.epochs >= 1"),
    ({"finetune": {"epochs": -1}}, "finetune.epochs: must be >= 0"),
    ({"method": "structured", "sparsity": 0.3, "timing": {"batch": [0]}}, "timing.batch"),
    ({"method": "nm", "n": 4}, "n < m"),
    ({"bogus": 1}, "bogus"),
    ({"method": "structured", "sparsity": 0.3, "layers": ["classifier.3"]}, "model output"),
])
def test_bad_configs_fail_before_any_work(bad, match):
    model = create("seed-cnn")
    with pytest.raises(ConfigError, match=match):
        P.prune(model, bad, input_shape=(1, 32, 32))


def test_taylor_without_data_is_a_clear_error():
    with pytest.raises(ConfigError, match="taylor importance needs calibration batches"):
        P.prune(create("seed-cnn"), {"criterion": "taylor"}, input_shape=(1, 32, 32))


def test_sensitivity_analysis_allocation_and_figure(digits_checkpoint, digits, tmp_path):
    _, ckpt = digits_checkpoint
    sens = P.sensitivity_analysis(ckpt.model, digits.test, levels=(0.5, 0.9, 0.99))
    assert set(sens["layers"]) == {"features.0", "features.3", "classifier.1", "classifier.3"}
    assert all(len(v["accuracy"]) == 3 for v in sens["layers"].values())
    # the model is restored after the analysis
    assert P.weight_sparsity(ckpt.model) == 0.0
    plan = P.allocate_sparsity(sens, 0.8)
    total = sum(v["params"] for v in sens["layers"].values())
    reached = sum(plan[n] * v["params"] for n, v in sens["layers"].items()) / total
    assert reached == pytest.approx(0.8, abs=1e-6)
    png = P.plot_sensitivity(sens, tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="out of reach"):
        P.allocate_sparsity(sens, 0.995)


def test_cli_prune_writes_a_checkpoint_eval_accepts(digits_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from edgeslim.cli import app

    folder, _ = digits_checkpoint
    out = tmp_path / "pruned"
    r = CliRunner().invoke(app, ["prune", str(folder), "--method", "structured", "--target-macs", "0.5",
                                 "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["after"]["macs"] <= 0.5 * summary["before"]["macs"]
    assert all(s["speedup"] > 0 for s in summary["speed"])  # timed beside the original on ONNX Runtime
    ckpt = load_checkpoint(out)
    assert ckpt.meta["compression"][-1]["stage"] == "prune"
    assert ckpt.meta["compression"][-1]["method"] == "structured"
    assert ckpt.model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    r = CliRunner().invoke(app, ["eval", str(out), "--json", "--limit", "50"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["prune", str(folder), "--sparsity", "1.2", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError)


def test_cli_prune_to_a_latency_target(digits_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from edgeslim.cli import app

    r = CliRunner().invoke(app, ["prune", str(digits_checkpoint[0]), "--method", "structured", "--target-latency",
                                 "0.8", "--latency-batch", "4", "--out", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["config"]["timing"]["batch"] == [4] and summary["latency_plan"]["latency_fraction"] <= 0.8


def test_structured_needs_a_target():
    with pytest.raises(ConfigError, match="needs target_macs"):
        P.prune_config({"method": "structured"})
    assert P.prune_config({"method": "structured", "sparsity": 0.3}).sparsity == 0.3


def test_a_default_is_not_taken_for_the_callers_choice():
    """Regression: make_config dumped every field of a PruneConfig as if set, so the default
    sparsity 0.9 silently became the channel ratio of a structured prune. Structured pruning
    has no default target now: it is one of its own fields, never inherited from another method."""
    with pytest.raises(ConfigError, match="needs target_macs"):
        P.Structured()
    with pytest.raises(ConfigError, match="needs target_macs"):
        P.prune(create("seed-cnn"), {"method": "structured"}, input_shape=(1, 32, 32))
    assert P.Structured(sparsity=0.3).sparsity == 0.3


def test_method_picks_the_config_class_and_a_config_instance_is_used_as_is():
    for method, cls in (("unstructured", P.Unstructured), ("structured", P.Structured), ("nm", P.NM)):
        extra = {"sparsity": 0.3} if method == "structured" else {}
        assert type(P.prune_config({"method": method, **extra})) is cls
    assert type(P.prune_config(None)) is P.Unstructured  # the default method
    config = P.NM(n=1)
    assert P.prune_config(config) is config
    with pytest.raises(ConfigError, match="unknown method 'dense'"):
        P.prune_config({"method": "dense"})


@pytest.mark.parametrize("old,new", [("finetune_epochs", "finetune.epochs"), ("finetune_lr", "finetune.lr"),
                                     ("finetune_augment", "finetune.augment"), ("latency_batch", "timing.batch"),
                                     ("distill", "finetune.distill")])
def test_an_old_key_names_its_new_place(old, new):
    with pytest.raises(ConfigError, match=f"'{old}' was renamed: use '{new}'"):
        P.prune_config({"method": "structured", "sparsity": 0.3, old: 1})


def test_a_method_starts_from_its_own_finetune_defaults():
    from edgeslim import FineTune

    config = P.Unstructured(finetune=FineTune(epochs=3))  # a plain FineTune keeps only what it set
    assert (config.finetune.epochs, config.finetune.lr, config.finetune.alpha) == (3, 2e-3, 0.7)
    structured = P.Structured(sparsity=0.2, finetune=FineTune(epochs=3)).finetune
    assert (structured.lr, structured.temperature, structured.alpha) == (4e-3, 1.0, 0.5)
    assert P.Structured(sparsity=0.2).timing.batch == [1, 64]


def test_finetune_loss_fn_is_used_for_finetuning_only(digits):
    calls = {"calibration": 0, "finetune": 0}

    def ce(name):
        def loss(model, x, y):
            calls[name] += 1
            logits = model(x)
            return torch.nn.functional.cross_entropy(logits, y), logits
        return loss

    P.prune(create("seed-cnn"), P.Unstructured(criterion="taylor", sparsity=0.5, finetune={"epochs": 1},
                                               calibration_batches=3),
            data=digits, loss_fn=ce("calibration"), finetune_loss_fn=ce("finetune"))
    assert calls["calibration"] == 3 and calls["finetune"] == len(range(0, len(digits.train), 128))


@pytest.mark.parametrize("augment,trained_with_flips,trained_plain", [(None, True, False), (True, True, True),
                                                                    (False, False, False)])
def test_finetune_repeats_how_the_model_was_trained(augment, trained_with_flips, trained_plain):
    from edgeslim.prune.api import _finetune_config
    from edgeslim.train import TrainConfig

    config = P.Unstructured(finetune={"epochs": 3, "lr": 5e-4, "augment": augment})
    for trained, expected in ((TrainConfig(augment=True, hflip=True, optimizer="sgd", label_smoothing=0.1),
                               trained_with_flips), (TrainConfig(), trained_plain), (None, trained_plain)):
        cfg = _finetune_config(config, trained and trained.model_dump())  # None: nothing recorded
        assert (cfg.augment, cfg.hflip) == (expected, expected)
        assert (cfg.epochs, cfg.lr) == (3, 5e-4)  # the fine-tune's own settings
        if trained is not None:
            assert (cfg.optimizer, cfg.label_smoothing) == (trained.optimizer, trained.label_smoothing)


def test_cli_prune_config_file_with_options_on_top(digits_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from edgeslim.cli import app

    cfg = tmp_path / "p.yaml"
    cfg.write_text("method: unstructured\nsparsity: 0.5\nscope: layer\nfinetune: {distill: false}\n")
    r = CliRunner().invoke(app, ["prune", str(digits_checkpoint[0]), "--config", str(cfg), "--sparsity", "0.6",
                                 "--out", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    config = json.loads(r.stdout)["config"]
    assert (config["sparsity"], config["scope"], config["finetune"]["distill"]) == (0.6, "layer", False)
    cfg.write_text("method: unstructured\nfinetune_epochs: 2\n")
    r = CliRunner().invoke(app, ["prune", str(digits_checkpoint[0]), "--config", str(cfg), "--out", str(tmp_path / "x")])
    assert isinstance(r.exception, ConfigError) and not (tmp_path / "x").exists()
    assert str(r.exception) == f"invalid prune config {cfg}: 'finetune_epochs' was renamed: use 'finetune.epochs'"


def test_a_prune_that_loses_accuracy_without_finetuning_says_how_to_recover(digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    hard = edgeslim.prune(ckpt, edgeslim.Unstructured(sparsity=0.97, schedule="oneshot"), data=digits)
    assert hard.summary["accuracy_drop_points"] > 1
    assert any("--finetune-epochs" in w for w in hard.warnings)
    gentle = edgeslim.prune(ckpt, edgeslim.Unstructured(sparsity=0.1), data=digits)
    assert gentle.summary["accuracy_drop_points"] <= 1 and not gentle.warnings
