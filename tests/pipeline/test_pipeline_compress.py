"""compress(): a tiny run on digits, resume after a crash, the accuracy budget, the CLI."""
import json

import numpy as np
import pytest

import edgeslim
from typer.testing import CliRunner

from edgeslim.cli import app
from edgeslim.pipeline import AccuracyBudgetExceeded, compress
from edgeslim.pipeline import stages as stages_mod

TINY = {
    "name": "tiny", "description": "test recipe", "max_accuracy_drop": 100, "seed": 0,
    "bench": {"rounds": 3, "warmup": 1},
    "stages": [
        {"type": "prune", "method": "unstructured", "sparsity": 0.6, "finetune": {"epochs": 1}},
        {"type": "share_weights", "conv_bits": 5, "linear_bits": 5, "finetune": {"epochs": 1, "max_steps": 3}},
        {"type": "quantize", "samples": 32, "sensitivity": False},
    ],
}


def test_tiny_compress_writes_checkpoints_and_measured_report(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    out = tmp_path / "c"
    res = edgeslim.compress(ckpt, TINY, out=out, progress=False)
    r = res.summary
    assert res.artifact == out / "model.onnx" and res.artifact.is_file() and res.model is None
    assert res.warnings == r["warnings"] and r["deployable"] == str(res.artifact)
    assert (out / "stages/01-prune/weights.safetensors").exists() and (out / "stages/01-prune/model.json").exists()
    assert (out / "stages/02-share_weights/weights.safetensors").exists()
    assert (out / "stages/03-quantize/model.onnx").exists()
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "done" and [s["type"] for s in state["stages"]] == ["prune", "share_weights", "quantize"]
    rep = json.loads((out / "report.json").read_text())
    rows = rep["rows"]
    assert [r["stage"] for r in rows] == ["original", "01-prune", "02-share_weights", "03-quantize"]
    for row in rows:
        assert 0.5 < row["val_accuracy"] <= 1 and row["file_bytes"] > 0 and row["macs"] > 0 and row["p50_ms"] > 0
    # the test split is measured once, for the original and the final model only
    assert 0.5 < rows[0]["accuracy"] <= 1 and 0.5 < rows[3]["accuracy"] <= 1
    assert rows[1]["accuracy"] is None and rows[2]["accuracy"] is None
    assert rows[1]["nonzero_params"] < 0.45 * rows[0]["nonzero_params"]  # 60% of the weights are gone
    assert rows[3]["evaluated_with"] == "onnxruntime" and rows[1]["evaluated_with"] == "torch"
    assert rows[3]["file_bytes"] < rows[0]["file_bytes"] / 3  # int8
    md = (out / "report.md").read_text()
    assert "03-quantize" in md and f"{rows[3]['accuracy']:.4g}" in md
    assert (out / "report.png").stat().st_size > 1000
    assert r["final"]["accuracy"] == rows[3]["accuracy"]


def test_resume_after_a_crash_skips_done_stages_and_matches(tmp_path, digits_checkpoint, monkeypatch):
    from edgeslim.runtime import load_model
    from edgeslim.data import load_digits

    ckpt, _ = digits_checkpoint
    calls = {"prune": 0}
    real_prune, real_share = stages_mod.RUNNERS["prune"], stages_mod.RUNNERS["share_weights"]

    def counting_prune(*a, **k):
        calls["prune"] += 1
        return real_prune(*a, **k)

    def crash(*a, **k):
        raise RuntimeError("power cut in stage 2")

    monkeypatch.setitem(stages_mod.RUNNERS, "prune", counting_prune)
    monkeypatch.setitem(stages_mod.RUNNERS, "share_weights", crash)
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="power cut"):
        compress(ckpt, TINY, out=out, progress=False)
    state = json.loads((out / "state.json").read_text())
    assert [s["type"] for s in state["stages"]] == ["prune"] and calls["prune"] == 1
    stage1 = out / "stages/01-prune/weights.safetensors"
    mtime = stage1.stat().st_mtime_ns

    monkeypatch.setitem(stages_mod.RUNNERS, "share_weights", real_share)
    resumed = compress(ckpt, TINY, out=out, resume=True, progress=False).summary
    assert calls["prune"] == 1, "stage 1 was run again"
    assert stage1.stat().st_mtime_ns == mtime

    fresh = compress(ckpt, TINY, out=tmp_path / "fresh", progress=False).summary
    assert calls["prune"] == 2
    for a, b in zip(resumed["rows"], fresh["rows"]):
        assert a["val_accuracy"] == b["val_accuracy"] and a["nonzero_params"] == b["nonzero_params"]
    x = load_digits(pad_to=32).test.x[:64].numpy()
    got = load_model(out / "stages/03-quantize/model.onnx").predict(x)
    want = load_model(tmp_path / "fresh/stages/03-quantize/model.onnx").predict(x)
    # same weights and ranges; float rounding across processes may differ in the last ulp, which
    # now and then moves an int8 output by one quantization step
    off = np.abs(got - want) > 1e-5
    assert off.mean() < 0.01 and np.abs(got - want).max() < 0.1
    assert (got.argmax(1) == want.argmax(1)).mean() >= 63 / 64


def test_resume_refuses_other_recipe_and_plain_rerun(tmp_path, digits_checkpoint):
    from edgeslim.errors import ConfigError

    ckpt, _ = digits_checkpoint
    recipe = {**TINY, "stages": TINY["stages"][:1]}
    compress(ckpt, recipe, out=tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        compress(ckpt, recipe, out=tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="another recipe"):
        compress(ckpt, TINY, out=tmp_path / "c", resume=True, progress=False)


def test_budget_failure_names_the_stage(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    harsh = {"name": "harsh", "max_accuracy_drop": 0.5, "bench": {"rounds": 2, "warmup": 0},
             "stages": [{"type": "prune", "sparsity": 0.995}, {"type": "export"}]}
    with pytest.raises(AccuracyBudgetExceeded) as e:
        compress(ckpt, harsh, out=tmp_path / "c", adapt=False, progress=False)
    msg = str(e.value)
    assert "accuracy budget exceeded" in msg and "Stage 01-prune" in msg and "budget 0.5" in msg
    rep = json.loads((tmp_path / "c/report.json").read_text())
    assert rep["budget"]["exceeded"] and rep["budget"]["culprit"] == "01-prune"
    assert "accuracy budget exceeded" in (tmp_path / "c/report.md").read_text()


def test_cli_recipes_and_compress(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    runner = CliRunner()
    r = runner.invoke(app, ["recipes"])
    assert r.exit_code == 0 and all(n in r.output for n in ("smallest", "fastest", "balanced"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_accuracy_drop: 100\nbench: {rounds: 2, warmup: 0}\nstages:\n"
                      "  - {type: prune, method: structured, sparsity: 0.25}\n  - {type: quantize, samples: 16}\n")
    r = runner.invoke(app, ["compress", str(ckpt), "--recipe", str(recipe), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "02-quantize" in r.output and (tmp_path / "c/report.md").exists()
    rep = json.loads((tmp_path / "c/report.json").read_text())
    assert rep["rows"][1]["macs"] < rep["rows"][0]["macs"]  # structured pruning removed compute
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {type: prune, sparsity: 1.5}\n")
    r = runner.invoke(app, ["compress", str(ckpt), "--recipe", str(bad), "--out", str(tmp_path / "d")])
    assert r.exit_code != 0 and "stages[0].sparsity" in str(r.exception)


def test_keep_float_if_slower_ships_the_measured_faster_model(tmp_path, digits_checkpoint):
    """The decision follows the side-by-side measurement: float kept (and said so) when int8 is
    slower, the int8 QDQ model otherwise."""
    import onnx

    ckpt, _ = digits_checkpoint
    recipe = {**TINY, "stages": [{"type": "quantize", "samples": 32, "sensitivity": False,
                                  "keep_float_if_slower": True}]}
    rep = compress(ckpt, recipe, out=tmp_path / "k", progress=False).summary
    info = rep["stages"][0]["info"]
    ops = {n.op_type for n in onnx.load(str(tmp_path / "k/stages/01-quantize/model.onnx")).graph.node}
    from edgeslim import Timing

    if not Timing().faster(info["int8_vs_float_speedup"]):  # the one definition of "faster"
        assert "QuantizeLinear" not in ops and "float model is kept" in info["decision"]
        assert any("float model is kept" in w for w in rep["warnings"])
    else:
        assert "QuantizeLinear" in ops and "decision" not in info


def test_latency_aware_prune_stage_plans_with_the_recipe_bench_settings(tmp_path, digits_checkpoint, monkeypatch):
    from edgeslim.prune import api as prune_api

    seen = []
    real = prune_api._prune_to_latency

    def spy(model, config, *a, **k):
        seen.append((config.timing.batch, config.timing.threads))
        return real(model, config, *a, **k)

    monkeypatch.setattr(prune_api, "_prune_to_latency", spy)
    recipe = {"name": "lat", "max_accuracy_drop": 100, "bench": {"batch": 4, "threads": 1, "rounds": 3, "warmup": 1},
              "stages": [{"type": "prune", "method": "structured", "target_latency": 0.8, "latency_step": 0.25,
                          "finetune": {"epochs": 1}}]}
    compress(digits_checkpoint[0], recipe, out=tmp_path / "c", progress=False)
    assert seen == [([4], 1)]
    info = json.loads((tmp_path / "c/state.json").read_text())["stages"][0]["info"]
    assert info["latency_plan"]["latency_fraction"] <= 0.8
    assert all(info["channels"][n][1] == k for n, k in info["latency_plan"]["keep"].items())


@pytest.fixture(scope="module")
def digits_500_val(tmp_path_factory, digits):
    """seed-cnn on digits holding out 500 validation images (the shared fixture holds out 143,
    0.7 points each: too few for budget decisions that must carry over to the test split)."""
    from edgeslim.train import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt500") / "seed-cnn"
    train("seed-cnn", TrainConfig(epochs=6, batch_size=64), digits, out=out, progress=False, val_samples=500)
    return out


def test_a_stage_that_breaks_the_budget_is_weakened_until_it_fits(tmp_path, digits_500_val):
    ckpt = digits_500_val
    harsh = {"name": "harsh", "max_accuracy_drop": 5.0, "bench": {"rounds": 2, "warmup": 0},
             "stages": [{"type": "prune", "sparsity": 0.995}, {"type": "export"}]}
    rep = compress(ckpt, harsh, out=tmp_path / "c", progress=False).summary
    attempts = rep["stages"][0]["attempts"]
    assert attempts[0]["strength"] == 1.0 and not attempts[0]["passed"]  # 99.5% of the weights: far too much
    kept = rep["stages"][0]
    assert not kept.get("skipped") and 0 < kept["strength"] < 1
    # the stage that makes the final result: within the budget by one standard error
    assert kept["metrics"]["val_drop_points"] + kept["metrics"]["val_drop_stderr"] <= 5.0
    assert len({a["strength"] for a in attempts}) == len(attempts)  # bisection never repeats itself
    sparsity = rep["rows"][1]["nonzero_params"] / rep["rows"][0]["nonzero_params"]
    assert 0.005 < sparsity < 1  # weaker than asked, but still pruned
    assert not rep["budget"]["exceeded"]
    best = json.loads((tmp_path / "c/best.json").read_text())
    assert best["file"] == "model.onnx" and (tmp_path / "c/model.onnx").exists()
    assert not list((tmp_path / "c/stages").glob("*.try-*"))  # only the kept attempt stays on disk


def test_when_nothing_fits_the_run_fails_naming_the_least_damaging_setting(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    impossible = {"name": "impossible", "max_accuracy_drop": 0.0, "bench": {"rounds": 2, "warmup": 0},
                  "stages": [{"type": "prune", "method": "nm", "n": 1, "m": 4}]}
    with pytest.raises(AccuracyBudgetExceeded, match="no stage fits a budget of 0 points.*least damaging"):
        compress(ckpt, impossible, out=tmp_path / "c", progress=False)
    state = json.loads((tmp_path / "c/state.json").read_text())
    assert state["stages"][0]["skipped"] and len(state["stages"][0]["attempts"]) == 1  # N:M is on or off
    # the original model is what stays deployable
    best = json.loads((tmp_path / "c/best.json").read_text())
    assert best["stages_applied"] == [] and (tmp_path / "c/model.onnx").exists()


def test_best_result_so_far_survives_a_crash_and_resume_reuses_attempts(tmp_path, digits_checkpoint, monkeypatch):
    ckpt, _ = digits_checkpoint
    recipe = {"name": "two", "max_accuracy_drop": 100, "bench": {"rounds": 2, "warmup": 0},
              "stages": [{"type": "prune", "sparsity": 0.5}, {"type": "prune", "sparsity": 0.7},
                         {"type": "export"}]}
    real = stages_mod.RUNNERS["prune"]
    calls = []

    def second_crashes(stage, state, ctx):
        calls.append(stage.config.sparsity)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(stage, state, ctx)

    monkeypatch.setitem(stages_mod.RUNNERS, "prune", second_crashes)
    out = tmp_path / "c"
    with pytest.raises(RuntimeError, match="killed"):
        compress(ckpt, recipe, out=out, progress=False)
    best = json.loads((out / "best.json").read_text())
    assert best["stages_applied"] == ["01-prune"] and (out / "model.onnx").exists()
    from edgeslim.runtime import load_model
    assert load_model(out / "model.onnx").predict(np.zeros((1, 1, 32, 32), np.float32)).shape == (1, 10)
    compress(ckpt, recipe, out=out, resume=True, progress=False)
    assert calls == [0.5, 0.7, 0.7]
    assert json.loads((out / "best.json").read_text())["stages_applied"] == ["01-prune", "02-prune", "03-export"]


def test_budget_allowances_and_strength_knobs():
    from edgeslim.pipeline import budget
    from edgeslim.pipeline.recipe import parse_recipe

    assert budget.allowances(["prune", "share_weights", "export"], 0.5) == pytest.approx([0.4, 0.5, 0.5])
    r = parse_recipe({"stages": [{"type": "prune", "sparsity": 0.94}, {"type": "share_weights", "conv_bits": 4},
                                 {"type": "prune", "method": "structured", "target_macs": 0.25},
                                 {"type": "quantize"}]})
    prune, share, structured, quant = r.stages
    assert budget.weakened(prune, 0.5).config.sparsity == pytest.approx(1 - 0.06 ** 0.5)
    assert budget.weakened(share, 0.5).config.conv_bits == 6 and budget.weakened(share, 0.0) is None
    assert budget.weakened(structured, 0.5).config.target_macs == pytest.approx(0.5)
    assert type(budget.weakened(structured, 0.5).config) is type(structured.config)
    # a stage built in Python (method left at its default, so "unset") weakens the same way
    from edgeslim import Structured
    from edgeslim.pipeline.recipe import PruneStage

    by_hand = PruneStage(type="prune", config=Structured(target_macs=0.25))
    assert budget.weakened(by_hand, 0.5).config.target_macs == pytest.approx(0.5)
    assert not budget.has_knob(quant) and budget.weakened(quant, 1.0) is quant
    drop, stderr = budget.paired_drop([True] * 90 + [False] * 10, [True] * 85 + [False] * 15)
    assert drop == pytest.approx(5.0) and stderr == pytest.approx(100 * 5 ** 0.5 / 100)
    assert budget.parse_duration("30m") == 1800 and budget.parse_duration("1.5h") == 5400
    # the final result must fit by one standard error, each earlier stage by its share of one
    assert budget.StageSearch(0.5, True).judge(0.4, 0.2) and not budget.StageSearch(0.5, True, margin=1).judge(0.4, 0.2)
    allowed = budget.allowances(["prune", "share_weights", "export"], 0.5)
    assert allowed == pytest.approx([0.4, 0.5, 0.5]) and budget.margins(allowed, 0.5) == pytest.approx([0.8, 1, 1])
    # pruning that spends 0.30 of its 0.40 by the measure alone leaves weight sharing no room for the error
    assert not budget.StageSearch(0.4, True, margin=0.8).judge(0.30, 0.21)
    assert budget.StageSearch(0.4, True, margin=0.8).judge(0.20, 0.21) and budget.StageSearch(0.5, True, margin=1).judge(0.28, 0.21)


def test_bisection_order_and_stopping():
    from edgeslim.pipeline.budget import Attempt, StageSearch

    search = StageSearch(0.5, True)
    tried, fits_up_to = [], 0.6
    while (x := search.next_strength(out_of_time=False)) is not None:
        tried.append(x)
        search.attempts.append(Attempt(x, 1.0 if x > fits_up_to else 0.1, 0.1, x <= fits_up_to, 1.0, "s"))
    assert tried == [1.0, 0.5, 0.75, 0.625]  # at most 4 tries
    assert search.best.strength == 0.5
    timed_out = StageSearch(0.5, True, [Attempt(1.0, 1.0, 0.1, False, 1.0, "s")])
    assert timed_out.next_strength(out_of_time=True) is None and timed_out.best is None
    no_knob = StageSearch(0.5, False, [Attempt(1.0, 1.0, 0.1, False, 1.0, "s")])
    assert no_knob.next_strength(out_of_time=False) is None


def test_a_weakened_try_starts_from_the_unchanged_model(tmp_path, digits_checkpoint, monkeypatch):
    """Weight sharing changes the model it is given in place: a try that is thrown away must not
    leak into what the next stage (here the export) receives."""
    import torch

    def destructive(stage, state, ctx):  # in place, as share_weights does, and far over any budget
        with torch.no_grad():
            for p in state.model.parameters():
                p.zero_()
        return stages_mod.ModelState(state.model)

    monkeypatch.setitem(stages_mod.RUNNERS, "share_weights", destructive)
    ckpt, trained = digits_checkpoint
    recipe = {"name": "share", "max_accuracy_drop": 1.0, "bench": {"rounds": 2, "warmup": 0},
              "stages": [{"type": "share_weights", "conv_bits": 4, "linear_bits": 4, "finetune": {"epochs": 0}},
                         {"type": "export"}]}
    with pytest.raises(AccuracyBudgetExceeded, match="no stage fits"):
        compress(ckpt, recipe, out=tmp_path / "c", progress=False)
    from edgeslim.runtime import load_model
    x = torch.zeros(2, 1, 32, 32)
    got = load_model(tmp_path / "c/stages/02-export/model.onnx").predict(x.numpy())
    np.testing.assert_allclose(got, trained.model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_stages_choose_epochs_on_training_samples_and_leave_validation_to_the_budget():
    import torch

    from edgeslim.data.datasets import DataBundle, Split
    from edgeslim.pipeline.compress import _stage_data

    def split(start, n):  # each sample's value is its own id, so overlaps are visible
        return Split(torch.arange(start, start + n, dtype=torch.float32).view(n, 1), torch.zeros(n, dtype=torch.int64))

    data = DataBundle("toy", split(0, 100), split(1000, 20), ["a"], None, split(500, 8))
    staged = _stage_data(data)
    ids = lambda s: set(s.x.view(-1).tolist())  # noqa: E731
    assert len(staged.val) == 8 and ids(staged.val) <= ids(data.train)  # as many as the budget judges on
    assert not ids(staged.val) & ids(staged.train) and ids(staged.val) | ids(staged.train) == ids(data.train)
    assert staged.test is data.test and ids(data.val) == set(range(500, 508))  # untouched
    assert ids(_stage_data(data).val) == ids(staged.val)  # the same slice every time (resume)
