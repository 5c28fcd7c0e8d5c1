"""edgeslim.config: one config class per method, shared FineTune / Timing blocks, one Result,
one error type naming the bad field."""
import subprocess
import sys

import pytest

import edgeslim
from edgeslim.config import Result, Timing
from edgeslim.errors import ConfigError

# every method's class, with the fields it needs to be valid
CLASSES = [(edgeslim.Unstructured, {}), (edgeslim.Structured, {"sparsity": 0.3}), (edgeslim.NM, {}),
           (edgeslim.StaticInt8, {}), (edgeslim.DynamicInt8, {}), (edgeslim.QAT, {}),
           (edgeslim.WeightSharing, {}), (edgeslim.Distill, {})]


@pytest.mark.parametrize("cls, needed", CLASSES, ids=lambda c: getattr(c, "__name__", ""))
def test_every_config_names_a_bad_field_in_a_config_error(cls, needed):
    cls(**needed)
    with pytest.raises(ConfigError, match=f"invalid {cls.__name__} config: sparsty: unknown field"):
        cls(**needed, sparsty=0.5)
    with pytest.raises(ConfigError, match="seed: must be an integer"):
        cls(**needed, seed="one")
    block = "timing" if "timing" in cls.model_fields else "finetune"
    with pytest.raises(ConfigError, match=f"{block}.rounds: must be >= 1|{block}.epochs: must be >= 0"):
        cls(**needed, **{block: {"rounds": 0} if block == "timing" else {"epochs": -1}})


@pytest.mark.parametrize("make, method, cls", [
    (edgeslim.prune.prune_config, "nm", edgeslim.NM),
    (edgeslim.quantize.quantize_config, "qat", edgeslim.QAT),
    (edgeslim.distill.distill_config, "distill", edgeslim.Distill)])
def test_the_method_field_picks_the_class(make, method, cls):
    config = make({"method": method, "seed": 3})
    assert type(config) is cls and config.seed == 3
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        make({"method": "nope"})
    with pytest.raises(ConfigError, match="expected one of"):
        make(edgeslim.Timing())  # a config of another kind


def test_timing_is_the_one_definition_of_faster():
    t = Timing()
    assert t.batch == [1] and Timing(batch=8).batch == [8]
    assert t.faster(t.margin) and not t.faster(1.0) and Timing(margin=1.0).faster(1.0)
    with pytest.raises(ConfigError, match="margin: must be >= 1"):
        Timing(margin=0.9)


def test_result_is_one_shape():
    r = Result(summary={"a": 1})
    assert r.model is None and r.artifact is None and r.warnings == []


def test_configs_build_without_torch():
    code = ("import sys\nfrom edgeslim.config import FineTune, Timing, Result\n"
            "FineTune(epochs=2); Timing(batch=[1, 64])\nassert 'torch' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
