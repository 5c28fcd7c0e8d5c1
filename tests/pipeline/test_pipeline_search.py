"""search(): two worker processes share one SQLite study; re-running resumes it."""
import json

import optuna
import pytest

import edgeslim
from edgeslim.errors import ConfigError
from edgeslim.pipeline import rerank, search
from edgeslim.pipeline.autotune import NONE_WITHIN, SearchConfig, load_search_config, pareto_front, recipe_for
from edgeslim.pipeline.recipe import parse_recipe

FAST = {"max_steps": 2, "finetune": {"epochs": 1}, "distill_epochs": 1, "calibration_samples": 16, "bench_rounds": 2,
        "train_samples": 300, "eval_samples": 200, "space": {"width": [1.0, 0.5], "share_bits": [0, 4]}}


def test_two_workers_share_one_study_and_rerun_resumes(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    out = tmp_path / "s"
    r = search(ckpt, {**FAST, "max_accuracy_drop": 3.0, "trials": 4}, out=out, workers=2, progress=False).summary
    study = optuna.load_study(study_name="edgeslim-search", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    assert {t.user_attrs["worker"] for t in done} == {0, 1}
    assert len({t.user_attrs["pid"] for t in done}) == 2  # two processes
    for t in done:  # every trial carries its feasibility, none is dropped
        assert "accuracy_drop_over_budget" in t.constraints
    assert r["complete"] == 4 and r["workers"] == [0, 1]
    summary = json.loads((out / "pareto.json").read_text())
    assert len(summary["all_trials"]) == 4
    assert all(p["feasible"] == "yes" for p in summary["pareto"])
    assert {p["trial"] for p in summary["pareto"]} == {t.number for t in study.best_trials}  # same front as Optuna
    assert (out / "pareto.png").stat().st_size > 1000 and "Pareto front" in (out / "pareto.md").read_text()

    r2 = search(ckpt, {**FAST, "max_accuracy_drop": 3.0, "trials": 5}, out=out, workers=1, progress=False).summary
    assert r2["complete"] == 5  # one more trial, the first four kept


def test_infeasible_trials_are_kept_and_marked(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    cfg = {**FAST, "space": {"sparsity": [0.99, 0.99], "structured_ratio": [0, 0], "width": [1.0],
                             "share_bits": [0], "bits": [32]}, "finetune": {"epochs": 0}}
    res = edgeslim.search(ckpt, {**cfg, "max_accuracy_drop": 0.0, "trials": 1}, out=tmp_path / "s", progress=False)
    r = res.summary
    assert res.artifact == tmp_path / "s" / "pareto.json" and json.loads(res.artifact.read_text())["complete"] == 1
    assert r["complete"] == 1 and r["feasible"] == 0 and r["pareto"] == []
    assert r["all_trials"][0]["feasible"] == "no"
    # the report is never empty: it names the closest trial
    assert [c["trial"] for c in r["closest"]] == [0] and r["verdict"].startswith(f"{NONE_WITHIN} trial 0")
    assert NONE_WITHIN in (tmp_path / "s" / "pareto.md").read_text()

    drop = r["closest"][0]["drop_points"]
    r2 = rerank(tmp_path / "s", drop + 0.01)  # the same trial, a budget it meets: no trial is run
    assert r2["complete"] == 1 and [p["trial"] for p in r2["pareto"]] == [0] and r2["closest"] == []
    assert rerank(tmp_path / "s")["feasible"] == 0  # default: the budget the study was run with


def test_pareto_front_keeps_feasible_non_dominated_rows():
    def row(trial, size, ms, acc, ok="yes"):
        return {"trial": trial, "size_bytes": size, "p50_ms": ms, "accuracy": acc, "feasible": ok}

    rows = [row(0, 10, 1.0, 0.90), row(1, 20, 1.0, 0.90),  # 1: dominated by 0
            row(2, 30, 0.5, 0.80), row(3, 5, 0.1, 0.99, ok="no"),  # 3 beats all but is over budget
            row(4, 40, 2.0, 0.95)]
    assert [r["trial"] for r in pareto_front(rows)] == [0, 2, 4]


def test_trial_recipes_are_valid_and_config_errors_name_fields(tmp_path):
    cfg = SearchConfig()
    params = {"sparsity": 0.8, "structured_ratio": 0.2, "width": 0.5, "kd_temperature": 3.0, "share_bits": 4,
              "bits": 8}
    r = parse_recipe(recipe_for(params, cfg))
    assert [s.type for s in r.stages] == ["distill", "prune", "prune", "share_weights", "quantize"]
    p = tmp_path / "cfg.yaml"
    p.write_text("space: {sparsity: [0.2, 1.5]}\n")
    with pytest.raises(ConfigError, match="space: sparsity"):
        load_search_config(p)
    p.write_text("trails: 3\n")
    with pytest.raises(ConfigError, match="trails: unknown field"):
        load_search_config(p)


def test_search_config_shares_the_finetune_block_and_names_renamed_keys():
    assert SearchConfig().finetune.epochs == 1 and SearchConfig(finetune={"epochs": 3}).finetune.epochs == 3
    with pytest.raises(ConfigError) as e:
        load_search_config(None, finetune_epochs=2)
    assert str(e.value) == "invalid search config (options): 'finetune_epochs' was renamed: use 'finetune.epochs'"
    with pytest.raises(ConfigError, match="^invalid SearchConfig config: finetune.epochs: must be >= 0"):
        edgeslim.SearchConfig(finetune={"epochs": -1})
    # only the pruning stages take the block's settings the caller set; the temperature is searched
    params = {"width": 1.0, "structured_ratio": 0.2, "sparsity": 0.0, "share_bits": 0, "bits": 32,
              "kd_temperature": 2.0}
    stages = recipe_for(params, SearchConfig(finetune={"epochs": 2, "lr": 5e-4}))["stages"]
    assert stages[0]["finetune"] == {"epochs": 2, "lr": 5e-4, "temperature": 2.0}
