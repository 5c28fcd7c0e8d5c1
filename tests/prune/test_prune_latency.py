"""Latency-aware structured pruning: the planner (on a synthetic, deterministic latency),
the exact channel counts it asks for, candidate layers, config errors, and one real run."""
from __future__ import annotations

import math

import pytest
import torch

import edgeslim.prune as P
from edgeslim.errors import ConfigError
from edgeslim.evaluate import count_macs
from edgeslim.models import create
from edgeslim.prune.latency import REFILL_SLACK, DeployedLatency, candidate_layers, keep_ratio, plan_for_latency
from edgeslim.prune.structured import _channels

from .test_prune_structured import ResidualNet

LENET_LAYERS = ["features.0", "features.3", "classifier.1", "classifier.3"]


@pytest.mark.parametrize("keep", [1, 2, 3, 5, 6])
def test_keep_ratio_keeps_exactly_that_many_channels(keep):
    model = create("lenet-5")
    res = P.prune_structured(model, (1, 32, 32), ratio=0.0, max_ratio=0.999,
                             layer_ratios={"features.0": keep_ratio(6, keep), "classifier.1": keep_ratio(120, keep)})
    assert res.channels["features.0"] == (6, keep) and res.channels["classifier.1"] == (120, keep)


def test_candidates_are_one_layer_per_prunable_group():
    assert candidate_layers(create("lenet-5"), (1, 32, 32)) == LENET_LAYERS
    assert candidate_layers(create("lenet-5"), (1, 32, 32), layers=["features.3"]) == ["features.3"]
    # the stem, depthwise and pointwise convs share channels through the residual add: one group
    residual = candidate_layers(ResidualNet(), (1, 16, 16))
    assert len(residual) == 2 and "branch" in residual


def _planner(model, latency, target, step=0.1):
    def prune_to(ratios):
        return P.prune_structured(model, (1, 32, 32), ratio=0.0, max_ratio=0.999, layer_ratios=ratios).model
    score = lambda m: -count_macs(m, (1, 32, 32))  # noqa: E731  deterministic stand-in for accuracy
    return plan_for_latency(model, LENET_LAYERS, target, prune_to, score, latency, step=step)


def test_plan_meets_the_target_in_steps_of_the_original_latency():
    model = create("lenet-5")
    macs = lambda m: count_macs(m, (1, 32, 32)) / 1e3  # noqa: E731  a latency that grows with channels
    plan = _planner(model, macs, target=0.5, step=0.2)
    assert plan.latency_fraction <= 0.5 and plan.original_latency_ms == macs(model)
    fractions = [1.0] + [s["latency_fraction"] for s in plan.steps]
    assert all(a - b >= 0.2 - 1e-3 for a, b in zip(fractions, fractions[1:]))  # every step saves >= 20%
    pruned = P.prune_structured(model, (1, 32, 32), ratio=0.0, max_ratio=0.999, layer_ratios=plan.ratios).model
    assert {n: c for n, c in _channels(pruned).items() if n in plan.keep} == plan.keep
    assert macs(pruned) == pytest.approx(plan.latency_ms)


def test_binary_search_keeps_the_most_channels_a_step_function_allows():
    model = create("lenet-5")

    def blocky(m):  # only features.0 matters, in blocks of 4 filters: 1-4 -> 1.0, 5-6 -> 2.0
        return float(math.ceil(_channels(m)["features.0"] / 4))

    plan = _planner(model, blocky, target=0.5)
    assert plan.keep["features.0"] == 4  # the largest count in the cheaper block
    assert plan.latency_fraction == 0.5 and [s["layer"] for s in plan.steps] == ["features.0"]


def test_a_cut_that_re_timed_buys_little_is_not_taken():
    """The quick timing credits features.3's cuts with time they do not save; the confirming one
    shows it, so the plan reaches its target by the layer that really costs time."""
    model = create("lenet-5")
    conv2 = _channels(model)["features.3"]

    def true(m):  # only features.0 costs time
        return 1.0 + _channels(m)["features.0"] / 6

    calls = []

    def optimistic(m):
        calls.append(1)  # unchecked, the planner keeps cutting whatever the quick timing credits
        assert len(calls) < 200, "the plan keeps taking cuts that buy no time"
        return true(m) - (conv2 - _channels(m)["features.3"]) / 16

    def prune_to(ratios):
        return P.prune_structured(model, (1, 32, 32), ratio=0.0, max_ratio=0.999, layer_ratios=ratios).model

    plan = plan_for_latency(model, LENET_LAYERS, 0.7, prune_to, lambda m: count_macs(m, (1, 32, 32)), optimistic,
                            confirm=true)
    assert plan.keep["features.3"] == conv2 and plan.keep["features.0"] < 6 and plan.latency_fraction <= 0.7


def test_unreachable_latency_is_a_clear_error():
    model = create("lenet-5")
    with pytest.raises(ConfigError, match="target_latency 0.10 is out of reach.*0.67 of the original"):
        _planner(model, lambda m: 1.0 + min(_channels(m)["features.0"], 3) / 3, target=0.1)


def test_deployed_latency_is_relative_to_the_original_and_cached_per_layout():
    latency = DeployedLatency(create("lenet-5"), (1, 32, 32), batches=2, threads=1, rounds=2, confirm_rounds=2)
    a, b = create("lenet-5"), create("lenet-5")
    first = latency(a)  # the original's own layout: close to the original's latency
    assert latency.reference_ms > 0 and 0.5 < first / latency.reference_ms < 2
    assert latency(b) == first and latency.measurements == 1
    assert latency.confirm(a) > 0 and latency.measurements == 2


@pytest.mark.parametrize("bad,match", [
    ({"method": "unstructured", "target_latency": 0.5}, "target_latency: unknown field"),
    ({"method": "structured", "target_latency": 0.5, "target_macs": 0.5}, "not target_macs and target_latency"),
    ({"method": "structured", "target_latency": 1.5}, "target_latency"),
    ({"method": "structured", "target_latency": 0.5, "round_to": 8}, "round_to"),
])
def test_bad_latency_configs(bad, match):
    with pytest.raises(ConfigError, match=match):
        P.prune(create("lenet-5"), bad, input_shape=(1, 32, 32))


def test_target_latency_needs_data():
    with pytest.raises(ConfigError, match="the latency layout scores candidate layouts on calibration data"):
        P.prune(create("lenet-5"), {"method": "structured", "target_latency": 0.5}, input_shape=(1, 32, 32))


def test_prune_to_a_measured_latency(digits):
    torch.manual_seed(0)
    lines = []
    r = P.prune(create("lenet-5"), {"method": "structured", "target_latency": 0.8, "latency_step": 0.25,
                                     "timing": {"batch": 8}}, data=digits, log=lines.append)
    pruned, s = r.model, r.summary
    plan = s["latency_plan"]
    assert plan["latency_fraction"] <= 0.8 and plan["steps"]
    assert sum("of the original latency" in line for line in lines) == len(plan["steps"])
    assert s["after"]["macs"] < s["before"]["macs"]
    assert {n: s["channels"][n][1] for n in plan["keep"]} == plan["keep"]
    assert pruned(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_structured_pruning_is_timed_beside_the_original(digits):
    lines = []
    s = P.prune(create("lenet-5"), {"method": "structured", "target_macs": 0.3, "timing": {"batch": [4, 16]},
                                    "layout": "uniform"}, data=digits, log=lines.append).summary
    assert [speed["batch"] for speed in s["speed"]] == [4, 16]
    for speed in s["speed"]:
        assert speed["original_p50_ms"] > 0 and speed["pruned_p50_ms"] > 0
        assert speed["speedup"] == pytest.approx(speed["original_p50_ms"] / speed["pruned_p50_ms"], rel=0.01)
    assert any(line.startswith("ONNX Runtime at batch 4") for line in lines)
    assert any(line.startswith("ONNX Runtime at batch 16") for line in lines)
    s = P.prune(create("lenet-5"), {"method": "structured", "target_macs": 0.3, "measure_speed": False},
                data=digits).summary
    assert "speed" not in s and not [w for w in s.get("warnings", []) if "ONNX Runtime" in w]
    s = P.prune(create("lenet-5"), {"method": "unstructured", "sparsity": 0.5}, data=digits).summary
    assert "speed" not in s


def test_a_pruned_model_that_is_not_faster_is_reported(digits, monkeypatch):
    import edgeslim.prune.latency as latency

    monkeypatch.setattr(latency, "measured_speedup", lambda *a, **k: [
        {"batch": 1, "threads": 1, "original_p50_ms": 0.05, "pruned_p50_ms": 0.04, "speedup": 1.25},
        {"batch": 64, "threads": 1, "original_p50_ms": 0.5, "pruned_p50_ms": 0.49, "speedup": 1.02}])
    uniform = {"method": "structured", "target_macs": 0.5, "layout": "uniform"}
    r = P.prune(create("lenet-5"), uniform, data=digits)
    s = r.summary
    assert r.warnings == s["warnings"]
    assert s["speed"][1]["speedup"] == 1.02
    slower = [w for w in s["warnings"] if "ONNX Runtime" in w]  # (an untrained model may also lose accuracy)
    assert len(slower) == 1 and "not faster on ONNX Runtime" in slower[0]  # batch 64 only
    assert "at batch 64" in slower[0] and "latency layout" in slower[0]

    monkeypatch.setattr(latency, "measured_speedup", lambda *a, **k: [
        {"batch": 1, "threads": 1, "original_p50_ms": 0.05, "pruned_p50_ms": 0.04, "speedup": 1.25}])
    s = P.prune(create("lenet-5"), uniform, data=digits).summary
    assert not [w for w in s.get("warnings", []) if "ONNX Runtime" in w]

    def export_fails(*a, **k):
        raise RuntimeError("Unsupported ONNX op")

    monkeypatch.setattr(latency, "measured_speedup", export_fails)
    r = P.prune(create("lenet-5"), uniform, data=digits)
    pruned, s = r.model, r.summary
    assert "speed" not in s and "Unsupported ONNX op" in s["warnings"][0]
    assert pruned(torch.zeros(1, 1, 32, 32)).shape == (1, 10)  # the pruned model is not lost


def test_a_mac_budget_plan_gives_back_the_channels_that_cost_no_time():
    model = create("lenet-5")
    shape = (1, 32, 32)
    budget = 0.35 * count_macs(model, shape)

    def blocky(m):  # time moves in blocks of 4 channels in the convs, smoothly in the linear layers
        c = _channels(m)
        return (1.0 + math.ceil(c["features.0"] / 4) + math.ceil(c["features.3"] / 4)
                + (c["classifier.1"] + c["classifier.3"]) / 40)

    def prune_to(ratios):
        return P.prune_structured(model, shape, ratio=0.0, max_ratio=0.999, layer_ratios=ratios).model

    plan = plan_for_latency(model, LENET_LAYERS, 0.0, prune_to, lambda m: count_macs(m, shape), blocky,
                            step=0.2, done=lambda m, fraction: count_macs(m, shape) <= budget)
    pruned = prune_to(plan.ratios)
    assert count_macs(pruned, shape) <= budget and any("grown_from" in s for s in plan.steps)
    assert blocky(pruned) <= plan.steps[-1]["latency_ms"] + 1e-9
    cut_to = [s["latency_ms"] for s in plan.steps if "grown_from" not in s][-1]
    limit = cut_to + REFILL_SLACK * blocky(model)  # the speed the cuts bought, give or take timing noise
    assert plan.latency_ms <= limit
    for name, k in plan.keep.items():  # every layer is as wide as the budget and that speed allow
        if k < plan.original[name]:
            wider = prune_to({**plan.ratios, name: keep_ratio(plan.original[name], k + 1)})
            assert count_macs(wider, shape) > budget or blocky(wider) > limit
