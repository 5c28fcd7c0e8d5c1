"""`edgeslim search`: --config values win over unset options, --report-only re-ranks a
finished study, and the terminal says what is (not) within the budget."""
import json

import optuna
import yaml
from typer.testing import CliRunner

from edgeslim.cli import app
from edgeslim.errors import ConfigError
from edgeslim.pipeline.autotune import NONE_WITHIN

runner = CliRunner()
# one unstructured prune (no fine-tuning) + export per trial: about a second each
QUICK = {"finetune": {"epochs": 0}, "bench_rounds": 2, "eval_samples": 200,
         "space": {"sparsity": [0.5, 0.6], "structured_ratio": [0, 0], "width": [1.0], "share_bits": [0],
                   "bits": [32]}}


def _study(out):
    return optuna.load_study(study_name="edgeslim-search", storage=f"sqlite:///{out / 'study.db'}")


def test_yaml_values_win_unless_the_option_is_given(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    cfg, out = tmp_path / "s.yaml", tmp_path / "s"
    cfg.write_text(yaml.safe_dump({**QUICK, "trials": 1, "max_accuracy_drop": 2.5}))
    r = runner.invoke(app, ["search", str(ckpt), "--out", str(out), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "pareto.json").read_text())
    assert summary["complete"] == 1  # was 40: the CLI default replaced the file's trials
    assert summary["max_accuracy_drop"] == 2.5  # was 0.5
    assert _study(out).user_attrs["config"]["max_accuracy_drop"] == 2.5
    # a live line per stage of each trial, then the trial's result
    assert "[worker 0] trial 0: stage 1/2 prune" in r.output and "[worker 0] trial 0 done in" in r.output

    r = runner.invoke(app, ["search", str(ckpt), "--out", str(out), "--config", str(cfg), "--trials", "2"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "pareto.json").read_text())["complete"] == 2  # the option wins over the file

    # running more trials under another budget is refused, and the message points to --report-only
    r = runner.invoke(app, ["search", str(ckpt), "--out", str(out), "--config", str(cfg), "--trials", "3",
                            "--max-accuracy-drop", "1.0"])
    assert isinstance(r.exception, ConfigError)
    assert "max_accuracy_drop differ" in str(r.exception) and "--report-only" in str(r.exception)
    assert len(_study(out).trials) == 2


def test_report_only_reranks_without_running_trials(tmp_path, digits_checkpoint):
    ckpt, _ = digits_checkpoint
    out = tmp_path / "s"
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**QUICK, "trials": 2, "max_accuracy_drop": 0.0,
                                   "space": {**QUICK["space"], "sparsity": [0.99, 0.99]}}))
    r = runner.invoke(app, ["search", str(ckpt), "--out", str(out), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert NONE_WITHIN in r.output  # the terminal shows the closest trials, not an empty front
    summary = json.loads((out / "pareto.json").read_text())
    assert summary["pareto"] == [] and summary["verdict"].startswith(NONE_WITHIN)
    drops = [t["drop_points"] for t in summary["closest"]]
    assert len(drops) == 2 and drops == sorted(drops) and drops[0] > 0
    assert f"## {NONE_WITHIN}" in (out / "pareto.md").read_text()

    # no checkpoint, no trial: the same study ranked under a budget every trial meets
    budget = drops[-1] + 1
    r = runner.invoke(app, ["search", "--out", str(out), "--report-only", "--max-accuracy-drop", str(budget)])
    assert r.exit_code == 0, r.output
    assert NONE_WITHIN not in r.output and "best within the" in r.output
    summary = json.loads((out / "pareto.json").read_text())
    assert summary["complete"] == 2 and summary["feasible"] == 2 and summary["closest"] == []
    assert summary["max_accuracy_drop"] == budget and summary["sampled_with_max_accuracy_drop"] == 0.0
    assert summary["pareto"] and summary["best"]["smallest"]["trial"] in {0, 1}
    assert len(_study(out).trials) == 2
    md = (out / "pareto.md").read_text()
    assert "## Pareto front" in md and "the trials were sampled for 0" in md

    r = runner.invoke(app, ["search", "--out", str(tmp_path / "empty"), "--report-only"])
    assert isinstance(r.exception, ConfigError) and "study.db is missing" in str(r.exception)
    r = runner.invoke(app, ["search", "--out", str(out)])
    assert isinstance(r.exception, ConfigError) and "CHECKPOINT" in str(r.exception)
