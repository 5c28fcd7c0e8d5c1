"""Recipe parsing and validation: every error names the field that is wrong."""
import pytest

import edgeslim
from edgeslim.errors import ConfigError
from edgeslim.pipeline import list_recipes, load_recipe, parse_recipe
from edgeslim.pipeline.recipe import PruneStage

BUILTIN = ("smallest", "fastest", "balanced")


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_recipes_parse(name):
    r = load_recipe(name)
    assert r.name == name and r.stages and r.description and r.max_accuracy_drop > 0


def test_builtin_recipes_keep_their_settings_under_the_new_names():
    fastest = load_recipe("fastest").stages
    assert fastest[0].config.timing.batch == [1, 64] and fastest[0].config.target_latency == 0.45
    assert (fastest[0].config.finetune.epochs, fastest[0].config.finetune.lr) == (8, 4e-3)
    assert fastest[1].keep_float_if_slower and fastest[1].config.samples == 512
    smallest = load_recipe("smallest").stages
    assert smallest[0].config.scope == "global" and smallest[0].config.criterion == "lamp"
    assert smallest[0].config.sparsity == 0.96 and smallest[0].config.schedule == "gradual"
    share = smallest[1].config
    assert (share.conv_bits, share.linear_bits, share.finetune.epochs, share.finetune.lr) == (5, 4, 2, 5e-4)
    balanced = load_recipe("balanced").stages
    assert [s.config.finetune.lr for s in balanced[:2]] == [1e-3, 5e-4] and balanced[0].config.sparsity == 0.2


def test_list_recipes_has_descriptions():
    rows = {r["name"]: r for r in list_recipes()}
    assert set(BUILTIN) <= set(rows)
    assert all(rows[n]["description"] for n in BUILTIN)
    assert rows["smallest"]["stages"] == "prune -> share_weights -> export"
    assert "structured" in rows["fastest"]["description"]


def test_recipe_from_yaml_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("max_accuracy_drop: 0.3\nstages:\n  - {type: prune, sparsity: 0.5}\n  - {type: quantize}\n")
    r = load_recipe(p)
    assert r.name == "mine" and [s.type for s in r.stages] == ["prune", "quantize"]
    assert r.stages[0].config.method == "unstructured" and r.max_accuracy_drop == 0.3
    assert type(r.stages[0].config) is edgeslim.Unstructured and r.stages[0].config.sparsity == 0.5
    assert type(r.stages[1].config) is edgeslim.StaticInt8 and r.stages[1].config.benchmark is False


def test_a_stage_holds_its_verbs_config_and_keeps_the_recipes_own_defaults():
    r = parse_recipe({"stages": [{"type": "prune", "method": "nm"}, {"type": "distill", "width": 0.5},
                                 {"type": "share_weights", "finetune": {"lr": 1e-3}},
                                 {"type": "quantize", "method": "dynamic"}]})
    prune, distill, share, quant = r.stages
    assert type(prune.config) is edgeslim.NM and type(quant.config) is edgeslim.DynamicInt8
    assert type(distill.config) is edgeslim.Distill and distill.width == 0.5
    assert (distill.config.finetune.epochs, distill.config.finetune.augment) == (5, None)  # as the teacher trained
    assert (share.config.finetune.epochs, share.config.finetune.lr) == (1, 1e-3)  # a block merges, key by key
    # a stage built in Python holds the same config object the verb takes
    stage = PruneStage(type="prune", config=edgeslim.Structured(target_macs=0.5))
    assert stage.config.target_macs == 0.5 and "target_macs 0.50" in stage.summary()


@pytest.mark.parametrize("old, new", [("finetune_epochs", "finetune.epochs"), ("finetune_lr", "finetune.lr"),
                                      ("latency_batch", "timing.batch"), ("distill", "finetune.distill")])
def test_a_recipe_with_an_old_key_names_the_new_one(old, new):
    with pytest.raises(ConfigError) as e:
        parse_recipe({"stages": [{"type": "prune", "sparsity": 0.5, old: 1}]})
    assert str(e.value) == f"invalid recipe <dict>: stages[0]: '{old}' was renamed: use '{new}'"


@pytest.mark.parametrize("recipe, expected", [
    ({"stages": [{"type": "prune", "sparsity": 0.5}, {"type": "prune", "sparsity": 1.2}]},
     "stages[1].sparsity: must be in [0, 1)"),
    ({"stages": [{"type": "prune", "sparsity": 0.5, "sparsty": 0.3}]}, "stages[0].sparsty: unknown field"),
    ({"stages": [{"type": "prune", "method": "structured"}]}, "stages[0]: structured pruning needs target_macs"),
    ({"stages": [{"type": "prune", "target_macs": 0.5}]}, "stages[0].target_macs: unknown field"),
    ({"stages": [{"type": "prune", "finetune": {"temperature": 0}}]}, "stages[0].finetune.temperature: must be > 0"),
    ({"stages": [{"type": "prune", "method": "dense"}]}, "stages[0]: unknown method 'dense'"),
    ({"stages": [{"type": "quantize"}, {"type": "distill"}]}, "stages[1]: 'distill' works on the PyTorch model"),
    ({"stages": [{"type": "squeeze"}]}, "stages[0]: unknown stage type 'squeeze'"),
    ({"stages": [{"type": "share_weights", "conv_bits": 9}]}, "stages[0].conv_bits: must be <= 8"),
    ({"stages": [{"type": "quantize", "calibration": "magic"}]}, "stages[0].calibration"),
    ({"max_accuracy_drop": -1, "stages": [{"type": "export"}]}, "max_accuracy_drop: must be >= 0"),
    ({"stages": []}, "stages:"),
    ({"stages": [{"type": "export", "format": "coreml"}]}, "stages[0].format"),
])
def test_validation_errors_name_the_field(recipe, expected):
    with pytest.raises(ConfigError) as e:
        parse_recipe(recipe)
    assert expected in str(e.value)


def test_unknown_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="built-in"):
        load_recipe("no-such-recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
