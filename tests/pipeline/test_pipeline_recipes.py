"""Recipe parsing and validation: every error names the field that is wrong."""
import pytest

from edgeslim.errors import ConfigError
from edgeslim.pipeline import list_recipes, load_recipe, parse_recipe

BUILTIN = ("smallest", "fastest", "balanced")


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_recipes_parse(name):
    r = load_recipe(name)
    assert r.name == name and r.stages and r.description and r.max_accuracy_drop > 0


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
    assert r.stages[0].method == "unstructured" and r.max_accuracy_drop == 0.3
    assert r.stages[0].prune_config().sparsity == 0.5


@pytest.mark.parametrize("recipe, expected", [
    ({"stages": [{"type": "prune", "sparsity": 0.5}, {"type": "prune", "sparsity": 1.2}]},
     "stages[1].sparsity: must be in [0, 1)"),
    ({"stages": [{"type": "prune", "sparsity": 0.5, "sparsty": 0.3}]}, "stages[0].sparsty: unknown field"),
    ({"stages": [{"type": "prune", "method": "structured"}]}, "stages[0]: structured pruning needs target_macs"),
    ({"stages": [{"type": "prune", "target_macs": 0.5}]}, "stages[0]: target_macs applies to method='structured'"),
    ({"stages": [{"type": "prune", "temperature": 0}]}, "stages[0].temperature: must be > 0"),
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
