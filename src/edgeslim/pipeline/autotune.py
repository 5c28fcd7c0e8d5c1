"""Accuracy-aware compression search: Optuna, three objectives (deployable size, latency,
accuracy) over stage parameters, trials over the accuracy budget marked infeasible.

Each trial builds a recipe from its sampled parameters and runs :func:`compress` on it
(short fine-tuning). The study lives in an Optuna storage: by default a SQLite file in
the output folder, so re-running the same command resumes it; any SQLAlchemy URL
(``postgresql+psycopg2://user:pw@host/db``) lets workers on several machines share it.

Sharing one study between machines (PostgreSQL through SQLAlchemy)::

    pip install "edgeslim[postgres]"            # psycopg2-binary, the SQLAlchemy driver
    createdb edgeslim_search                      # once, on the database host
    # on every machine (same checkpoint, same settings; trials are counted over the whole study):
    edgeslim search m/ --max-accuracy-drop 0.5 --trials 200 --workers 2 --out S/ \
        --storage postgresql+psycopg2://user:password@dbhost:5432/edgeslim_search --study-name seed-cnn

Each machine writes its trial folders under its own ``S/``; the Pareto report is computed
from the shared study, so any machine can produce it, under any budget, without running a trial::

    edgeslim search --out R/ --report-only --max-accuracy-drop 1.0 \
        --storage postgresql+psycopg2://user:password@dbhost:5432/edgeslim_search --study-name seed-cnn

SQLite (the default) is opened in WAL mode with a 60 s busy timeout, which is enough for a
few local worker processes.
"""
from __future__ import annotations

import math
import os
import sqlite3
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._io import read_yaml_mapping, removes_new_output_on_failure, write_json
from ..config import FineTune, MethodConfig, Result, with_defaults
from ..errors import ConfigError, EdgeslimError, config_error

if TYPE_CHECKING:
    from ..models.checkpoint import Checkpoint

STUDY_DB = "study.db"
OBJECTIVES = ("size_bytes", "p50_ms", "accuracy")
DIRECTIONS = ("minimize", "minimize", "maximize")


class _Strict(BaseModel):
    # as recipes: unknown fields and wrong types (`trials: "3"`, `seed: true`) are refused
    model_config = ConfigDict(extra="forbid", strict=True)




class SearchSpace(_Strict):
    """Ranges of the searched stage parameters. A range ``[lo, hi]`` with ``lo == hi`` fixes it;
    0 switches a stage off (sparsity 0: no magnitude pruning; share_bits 0: no sharing)."""
    # a YAML list fills a range (strict mode alone would demand a Python tuple)
    sparsity: tuple[float, float] = Field((0.0, 0.95), strict=False)
    structured_ratio: tuple[float, float] = Field((0.0, 0.5), strict=False)
    width: list[float] = Field(default_factory=lambda: [1.0, 0.75, 0.5])
    kd_temperature: tuple[float, float] = Field((1.0, 8.0), strict=False)
    share_bits: list[int] = Field(default_factory=lambda: [0, 4, 5, 6])
    bits: list[int] = Field(default_factory=lambda: [32, 8])

    @model_validator(mode="after")
    def _ranges(self) -> "SearchSpace":
        for name in ("sparsity", "structured_ratio", "kd_temperature"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: lower bound {lo} is above upper bound {hi}")
        for name in ("sparsity", "structured_ratio"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi >= 1:
                raise ValueError(f"{name}: must lie in [0, 1)")
        if self.kd_temperature[0] <= 0:
            raise ValueError("kd_temperature: must be > 0")
        if any(not 0 < w <= 1 for w in self.width):
            raise ValueError("width: every value must be in (0, 1]")
        if any(b not in (0, *range(1, 9)) for b in self.share_bits):
            raise ValueError("share_bits: use 0 (off) or 1..8")
        if any(b not in (8, 32) for b in self.bits):
            raise ValueError("bits: use 8 (int8 static) and/or 32 (float)")
        return self


class SearchFineTune(with_defaults(FineTune, "_SearchFineTune", epochs=1)):
    """A trial's pruning recovery: one short distilled epoch (its temperature is searched:
    ``space.kd_temperature``). Strict like the rest of the search settings."""
    model_config = ConfigDict(extra="forbid", strict=True)


class SearchConfig(MethodConfig):
    """How much work one trial does. Trials are short on purpose: they rank settings; the
    chosen one is then run as a recipe with full fine-tuning. ``finetune``: the pruning stages'
    recovery fine-tune (share_weights fine-tunes at most one epoch of it)."""
    model_config = ConfigDict(extra="forbid", strict=True)  # as recipes: `trials: "3"` is refused
    RENAMED = {"finetune_epochs": "finetune.epochs"}

    max_accuracy_drop: float = Field(0.5, ge=0)
    trials: int = Field(40, ge=1)
    finetune: SearchFineTune = Field(default_factory=SearchFineTune)
    max_steps: int | None = Field(None, ge=1)  # per distill / share_weights stage (pruning: finetune)
    distill_epochs: int = Field(2, ge=0)  # for width students, trained from scratch by KD
    train_samples: int | None = Field(None, ge=1)
    eval_samples: int | None = Field(None, ge=1)
    calibration_samples: int = Field(256, ge=8)
    bench_rounds: int = Field(10, ge=1)
    seed: int = 0
    space: SearchSpace = Field(default_factory=SearchSpace)


def load_search_config(path: str | Path | None = None, **overrides: Any) -> SearchConfig:
    """SearchConfig from a YAML file (optional) plus non-None overrides; errors name the field."""
    from pydantic import ValidationError

    data = read_yaml_mapping(path, "search config", "search settings (see SearchConfig)") if path else {}
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as e:
        raise config_error(e, f"search config {path or '(options)'}") from None


def _suggest_float(trial, name: str, bounds: tuple[float, float], step: float) -> float:
    lo, hi = bounds
    return lo if lo == hi else trial.suggest_float(name, lo, hi, step=step)


def _suggest_choice(trial, name: str, choices: list):
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


def suggest_params(trial, space: SearchSpace) -> dict[str, Any]:
    return {"sparsity": _suggest_float(trial, "sparsity", space.sparsity, 0.05),
            "structured_ratio": _suggest_float(trial, "structured_ratio", space.structured_ratio, 0.05),
            "width": _suggest_choice(trial, "width", space.width),
            "kd_temperature": _suggest_float(trial, "kd_temperature", space.kd_temperature, 0.5),
            "share_bits": _suggest_choice(trial, "share_bits", space.share_bits),
            "bits": _suggest_choice(trial, "bits", space.bits)}


def recipe_for(params: dict[str, Any], cfg: SearchConfig, name: str = "trial") -> dict[str, Any]:
    """The recipe a trial's parameters stand for (also what to run once a setting is chosen)."""
    t = params["kd_temperature"]
    ft = {"finetune": {**cfg.finetune.model_dump(exclude_unset=True), "epochs": cfg.finetune.epochs,
                       "temperature": t}}
    stages: list[dict[str, Any]] = []
    if params["width"] < 1:
        stages.append({"type": "distill", "width": params["width"],
                       "finetune": {"temperature": t, "epochs": cfg.distill_epochs, "max_steps": cfg.max_steps}})
    if params["structured_ratio"] > 0:
        stages.append({"type": "prune", "method": "structured", "sparsity": params["structured_ratio"], **ft})
    if params["sparsity"] > 0:
        stages.append({"type": "prune", "method": "unstructured", "sparsity": params["sparsity"], **ft})
    if params["share_bits"]:
        stages.append({"type": "share_weights", "conv_bits": params["share_bits"],
                       "linear_bits": params["share_bits"],
                       "finetune": {"epochs": min(cfg.finetune.epochs, 1), "max_steps": cfg.max_steps}})
    if params["bits"] == 8:
        stages.append({"type": "quantize", "samples": cfg.calibration_samples, "sensitivity": False})
    else:
        stages.append({"type": "export", "format": "onnx"})
    return {"name": name, "description": f"search trial {name}", "max_accuracy_drop": cfg.max_accuracy_drop,
            "train_samples": cfg.train_samples, "eval_samples": cfg.eval_samples, "seed": cfg.seed,
            "bench": {"stages": "final", "rounds": cfg.bench_rounds, "warmup": 3}, "stages": stages}


CONSTRAINT = "accuracy_drop_over_budget"


def feasible(trial) -> bool:
    """Within the accuracy budget. Optuna 5 replaced ``constraints_func`` by per-trial
    ``set_constraint``: a value > 0 marks the trial infeasible, so samplers steer away from
    it and ``study.best_trials`` leaves it out of the Pareto front."""
    return trial.constraints.get(CONSTRAINT, math.inf) <= 0


def _storage(url: str):
    import optuna

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")  # readers and one writer at a time, no 'database is locked'
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    with warnings.catch_warnings():  # Optuna 5 flags heartbeats 'experimental'; nothing the user can act on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # a worker killed mid-trial (machine lost) has its trial marked failed after the grace period
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)


def _sampler(cfg: SearchConfig, worker: int, offset: int):
    import optuna

    # each worker (and each resumed run) draws its own random start points
    return optuna.samplers.TPESampler(seed=cfg.seed + 1000 * worker + offset,
                                      n_startup_trials=max(4, min(10, cfg.trials // 3)), multivariate=True)


def _study(storage_url: str, study_name: str, cfg: SearchConfig, worker: int = 0, create: bool = False):
    import optuna

    storage = _storage(storage_url)
    if create:
        return optuna.create_study(storage=storage, study_name=study_name, directions=list(DIRECTIONS),
                                   load_if_exists=True, sampler=_sampler(cfg, worker, 0))
    offset = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    return optuna.load_study(study_name=study_name, storage=storage, sampler=_sampler(cfg, worker, offset))


def _objective(checkpoint: str, out: Path, cfg: SearchConfig, data, worker: int, log: bool, bars: bool):
    from rich.console import Console

    from .compress import compress
    from .recipe import load_recipe

    def objective(trial) -> tuple[float, float, float]:
        params = suggest_params(trial, cfg.space)
        recipe = recipe_for(params, cfg, name=f"trial-{trial.number:04d}")
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("params_full", params)
        stages = load_recipe(recipe).stages

        def on_stage(i: int, stage_type: str) -> None:
            if log:
                print(f"[worker {worker}] trial {trial.number}: stage {i + 1}/{len(stages)} {stage_type}: "
                      f"{stages[i].summary()}", flush=True)

        try:
            # compress's own stage tables stay quiet (one line per stage above instead); its
            # training bars only when a single worker owns the terminal
            report = compress(checkpoint, recipe, data, out=out / "trials" / f"{trial.number:04d}",
                              check_budget=False, progress=bars, console=Console(quiet=True),
                              on_stage=on_stage).summary
        except EdgeslimError as e:
            raise TrialFailed(str(e)) from e
        final, base = report["final"], report["baseline"]
        # trials are ranked on the validation split held out of training; the test split's figure is
        # kept for the report only
        drop = final["val_drop_points"]
        trial.set_constraint(CONSTRAINT, drop - cfg.max_accuracy_drop)  # > 0: infeasible, kept and shown
        trial.set_user_attr("drop_points", drop)
        trial.set_user_attr("test_accuracy", final["accuracy"])
        trial.set_user_attr("baseline", {"accuracy": base["val_accuracy"], "size_bytes": base["zstd_bytes"],
                                         "p50_ms": base["p50_ms"], "test_accuracy": base["accuracy"]})
        trial.set_user_attr("macs", final["macs"])
        return float(final["zstd_bytes"]), float(final["p50_ms"]), float(final["val_accuracy"])

    return objective


class TrialFailed(RuntimeError):
    """A trial whose recipe could not run (e.g. a width too small to prune further)."""


def run_worker(checkpoint: str, out: str, storage_url: str, study_name: str, cfg_json: dict, worker: int,
               n_trials: int, data_dir: str | None = None, log: bool = True, bars: bool = False,
               trust_code: bool | list[str] = False, dataset: str | None = None) -> int:
    """One search process: load the shared study and run ``n_trials`` trials (module-level so
    that a fresh interpreter can start it). ``log``: a line per stage and per finished trial;
    ``bars``: the training progress bars too (only for a worker alone on a terminal).
    ``trust_code``: the caller's ``trusted_code`` setting, which a fresh process does not inherit.
    ``dataset``: the data set to search on (None: the checkpoint's)."""
    from ..models.checkpoint import trusted_code

    with trusted_code(trust_code):
        return _run_worker(checkpoint, out, storage_url, study_name, cfg_json, worker, n_trials, data_dir, log,
                           bars, dataset)


def _run_worker(checkpoint: str, out: str, storage_url: str, study_name: str, cfg_json: dict, worker: int,
                n_trials: int, data_dir: str | None, log: bool, bars: bool, dataset: str | None) -> int:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from ..models.checkpoint import load_checkpoint
    from .compress import _load_data
    from .recipe import Recipe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = SearchConfig.model_validate(cfg_json)
    meta = load_checkpoint(checkpoint).meta
    data = _load_data(meta, Recipe(dataset=dataset, stages=[{"type": "export"}]), data_dir)
    study = _study(storage_url, study_name, cfg, worker)
    stop = MaxTrialsCallback(cfg.trials, states=(TrialState.COMPLETE, TrialState.FAIL))

    def report(study, trial) -> None:
        if log:
            vals = "failed" if trial.values is None else (
                f"acc {trial.values[2]:.2%} ({-trial.user_attrs['drop_points']:+.2f} points) "
                f"size {trial.values[0] / 1024:,.1f} KB p50 {trial.values[1]:.3f} ms "
                f"{'within budget' if feasible(trial) else 'over budget'}")
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
            print(f"[worker {worker}] trial {trial.number} done in {seconds:.0f} s: {vals}", flush=True)

    study.optimize(_objective(checkpoint, Path(out), cfg, data, worker, log, bars), n_trials=n_trials,
                   callbacks=[stop, report], catch=(TrialFailed,))
    return worker


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


def _trial_finished(out: Path) -> bool:
    return any(out.glob("trials/*/report.json"))  # compress writes it when a trial's run ends


SOURCE_MODEL = "source-model"  # a model given by name or with --weights, saved once for every worker


def _as_folder(source, out: Path) -> Path:
    """A checkpoint folder for ``source``: itself, or the resolved model saved in OUT/source-model
    (worker processes each load a folder)."""
    from ..models.checkpoint import Checkpoint, save_checkpoint
    from ..models.resolve import resolve_model

    if not isinstance(source, Checkpoint) and Path(source).is_dir():
        return Path(source)
    ckpt = resolve_model(source)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("architecture", "weights_sha256", "format_version")}
    return save_checkpoint(ckpt.model, out / SOURCE_MODEL, meta)


@removes_new_output_on_failure(_trial_finished)  # a search that fails before any trial leaves no folder
def search(model: str | Path | Checkpoint, config: SearchConfig | dict | None = None, data: str | None = None, *,
           out: str | Path, storage: str | None = None, study_name: str = "edgeslim-search", workers: int = 1,
           data_dir: str | Path | None = None, progress: bool = True) -> Result:
    """Search stage parameters for the smallest / fastest / most accurate models within
    ``config.max_accuracy_drop`` points of the original; ``config.trials`` in total over all workers
    and runs. ``config``: a SearchConfig or a dict / YAML mapping (a bad field raises ConfigError
    naming it). ``data``: the data set to search on, by name (default: the one the model records;
    worker processes load it themselves).

    ``storage``: an Optuna/SQLAlchemy URL; default ``sqlite:///OUT/study.db``, so calling it
    again continues the study up to ``trials``. ``workers``: local processes sharing it.
    Writes ``OUT/pareto.md``, ``OUT/pareto.json`` and ``OUT/pareto.png``. Returns a Result:
    ``artifact`` ``OUT/pareto.json``, ``summary`` its content (the Pareto front, the verdict, ...).
    To rank the finished trials under another budget without running any, use :func:`rerank`.
    """
    import sys

    from ..models.checkpoint import current_code_trust

    cfg = config if isinstance(config, SearchConfig) else load_search_config(None, **(config or {}))
    if workers < 1:
        raise ConfigError("workers: must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = str(_as_folder(model, out).resolve())
    storage_url = storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
    study = _study(storage_url, study_name, cfg, create=True)
    _check_same_config(study, cfg)
    remaining = max(0, cfg.trials - _finished(study))
    shares = [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]
    bars = progress and sum(n > 0 for n in shares) == 1 and sys.stdout.isatty()
    trust = current_code_trust()
    # only the fields set travel: a worker re-reading a full dump would pass every finetune default on
    args = [(checkpoint, str(out), storage_url, study_name, cfg.model_dump(mode="json", exclude_unset=True), i, n,
             str(data_dir) if data_dir else None, progress, bars, trust, data) for i, n in enumerate(shares) if n > 0]
    if len(args) == 1:
        run_worker(*args[0])
    elif args:
        _run_processes(args)
    summary = summarize_study(study_name, storage_url, out, cfg)
    return Result(artifact=Path(summary["files"]["json"]), summary=summary)


def rerank(out: str | Path, max_accuracy_drop: float | None = None, *, storage: str | None = None,
           study_name: str = "edgeslim-search") -> dict[str, Any]:
    """Rank an existing study's finished trials under ``max_accuracy_drop`` (default: the
    budget it was run with) without running any trial: feasibility is recomputed from each
    trial's stored accuracy drop, and ``OUT/pareto.*`` are rewritten. The study itself is not
    changed, so resuming it still needs its original settings."""
    import optuna

    out = Path(out)
    storage_url = storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
    if storage is None and not (out / STUDY_DB).exists():
        raise ConfigError(f"{out} holds no search study ({STUDY_DB} is missing); pass the --out folder of a search, "
                          "or --storage with the database URL it used")
    try:
        study = optuna.load_study(study_name=study_name, storage=_storage(storage_url))
    except KeyError:
        raise ConfigError(f"no study named {study_name!r} in {_redact(storage_url)}; check --study-name") from None
    saved = study.user_attrs.get("config") or {}
    budget = saved.get("max_accuracy_drop") if max_accuracy_drop is None else max_accuracy_drop
    if budget is None:
        raise ConfigError("this study does not record its accuracy budget; pass --max-accuracy-drop")
    cfg = load_search_config(None, **{**saved, "max_accuracy_drop": budget})
    return summarize_study(study_name, storage_url, out, cfg)


def _check_same_config(study, cfg: SearchConfig) -> None:
    saved = study.user_attrs.get("config")
    current = cfg.model_dump(mode="json", exclude={"trials"})
    if saved is None:
        study.set_user_attr("config", current)
    elif saved != current:
        changed = sorted(k for k in {*saved, *current} if saved.get(k) != current.get(k))
        hint = (" To rank the finished trials under another accuracy budget without running more, use "
                "--report-only (edgeslim.pipeline.autotune.rerank)." if "max_accuracy_drop" in changed else "")
        raise ConfigError(f"this study was started with other search settings ({', '.join(changed)} differ); use the "
                          "same settings to resume it, or a new --out folder / --study-name." + hint)


def _run_processes(args: list[tuple]) -> None:
    """One fresh interpreter per worker (no forked torch/ORT thread pools, and no re-import of
    the caller's script as multiprocessing's spawn does); fails if any worker fails."""
    import json
    import subprocess
    import sys

    procs = []
    for a in args:
        code = "import json, sys; from edgeslim.pipeline.autotune import run_worker; run_worker(*json.loads(sys.argv[1]))"
        procs.append(subprocess.Popen([sys.executable, "-c", code, json.dumps(list(a))]))
    failed = [i for i, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise EdgeslimError(f"search worker(s) {failed} failed (see their output above); the study keeps every "
                            "finished trial: run the same command again to resume")


CLOSEST = 5  # trials shown when none is within the budget
NONE_WITHIN = "none within budget; closest:"


def trial_rows(study, max_accuracy_drop: float | None = None) -> list[dict[str, Any]]:
    """One row per complete trial; ``feasible`` is recomputed from its accuracy drop when a
    budget is given (so a finished study can be re-ranked), else read from its constraint."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        p = t.user_attrs.get("params_full", t.params)
        drop = t.user_attrs.get("drop_points")
        ok = drop <= max_accuracy_drop + 1e-9 if max_accuracy_drop is not None and drop is not None else feasible(t)
        rows.append({"trial": t.number, "accuracy": t.values[2], "drop_points": drop,
                     "size_bytes": t.values[0], "p50_ms": t.values[1], "feasible": "yes" if ok else "no",
                     "worker": t.user_attrs.get("worker"), "macs": t.user_attrs.get("macs"), **p})
    return rows


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    at_least = a["size_bytes"] <= b["size_bytes"] and a["p50_ms"] <= b["p50_ms"] and a["accuracy"] >= b["accuracy"]
    return at_least and (a["size_bytes"], a["p50_ms"], a["accuracy"]) != (b["size_bytes"], b["p50_ms"], b["accuracy"])


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feasible rows no other feasible row beats on all three objectives (what Optuna's
    ``best_trials`` gives for the budget the study ran with), smallest first."""
    ok = [r for r in rows if r["feasible"] == "yes"]
    return sorted((r for r in ok if not any(_dominates(o, r) for o in ok)), key=lambda r: r["size_bytes"])


def _short(r: dict[str, Any]) -> str:
    return (f"trial {r['trial']} ({r['accuracy']:.2%}, {-r['drop_points']:+.2f} points, "
            f"{r['size_bytes'] / 1024:,.1f} KB, p50 {r['p50_ms']:.3f} ms)")


def _verdict(rows: list[dict[str, Any]], pareto: list[dict[str, Any]], best: dict | None, budget: str) -> str:
    if not rows:
        return "no complete trial yet: run the search (again) to add trials"
    if not pareto:
        return (f"{NONE_WITHIN} {_short(min(rows, key=lambda r: r['drop_points']))} (budget {budget} points); raise "
                "--max-accuracy-drop (--report-only re-ranks these trials) or search milder settings")
    by_trial: dict[int, list[str]] = {}  # "smallest and fastest trial 3", not the same trial twice
    for what, r in best.items():
        by_trial.setdefault(r["trial"], []).append(what.replace("_", " "))
    rows_by_id = {r["trial"]: r for r in best.values()}
    parts = [f"{' and '.join(filter(None, [', '.join(whats[:-1]), whats[-1]]))} {_short(rows_by_id[t])}"
             for t, whats in by_trial.items()]
    return f"best within the {budget} point budget: " + "; ".join(parts)


def summarize_study(study_name: str, storage_url: str, out: str | Path, cfg: SearchConfig | None = None
                    ) -> dict[str, Any]:
    """Pareto front of the trials within ``cfg.max_accuracy_drop`` (the budget stored in each
    trial's constraint without ``cfg``) as Markdown + JSON + PNG in ``out``; when no trial is
    within it, the closest ones (lowest accuracy drop first) instead - never an empty report."""
    import optuna

    from .._io import atomic_write_text
    from ..report.pipeline import pareto_markdown, plot_pareto

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.load_study(study_name=study_name, storage=_storage(storage_url))
    sampled_with = (study.user_attrs.get("config") or {}).get("max_accuracy_drop")
    budget = cfg.max_accuracy_drop if cfg else sampled_with
    budget_text = "the study's" if budget is None else f"{budget:g}"
    rows = trial_rows(study, budget)
    pareto = pareto_front(rows)
    ok = [r for r in rows if r["feasible"] == "yes"]
    best = ({"smallest": min(ok, key=lambda r: r["size_bytes"]), "fastest": min(ok, key=lambda r: r["p50_ms"]),
             "most_accurate": max(ok, key=lambda r: r["accuracy"])} if ok else None)
    closest = [] if ok else sorted(rows, key=lambda r: r["drop_points"])[:CLOSEST]
    baseline = next((t.user_attrs["baseline"] for t in study.trials if "baseline" in t.user_attrs), None)
    summary = {"study": study_name, "storage": _redact(storage_url), "trials": len(study.trials),
               "complete": len(rows), "feasible": len(ok), "max_accuracy_drop": budget,
               "sampled_with_max_accuracy_drop": sampled_with, "baseline": baseline,
               "verdict": _verdict(rows, pareto, best, budget_text), "best": best, "pareto": pareto, "closest": closest,
               "all_trials": rows, "workers": sorted({r["worker"] for r in rows if r["worker"] is not None})}
    write_json(out / "pareto.json", summary)
    base_line = (f"original: accuracy {baseline['accuracy']:.2%}, {baseline['size_bytes'] / 1024:,.1f} KB (zstd), "
                 f"p50 {baseline['p50_ms']:.3f} ms" if baseline else "")
    resampled = (f" Ranked under a {budget:g} point budget; the trials were sampled for {sampled_with:g}."
                 if sampled_with is not None and budget is not None and sampled_with != budget else "")
    table = (pareto_markdown(pareto) if pareto else
             pareto_markdown(closest, title=NONE_WITHIN) if closest else "")
    md = "\n".join([f"# Compression search `{study_name}`", "",
                    f"{summary['complete']} complete trials ({summary['feasible']} within the "
                    f"{budget_text} point budget); objectives: deployable size (bytes after zstd), latency p50 "
                    "(batch 1, ONNX Runtime), accuracy on the validation split held out of training (never the test split). Infeasible trials are excluded from the front." + resampled,
                    "", f"**{summary['verdict']}**", "", base_line, "", table,
                    "![Pareto front](pareto.png)" if rows else "", ""])
    atomic_write_text(out / "pareto.md", md)
    if rows:
        plot_pareto(rows, {r["trial"] for r in pareto}, out / "pareto.png", baseline, title=f"search {study_name}")
    summary["files"] = {k: str(out / f"pareto.{k}") for k in ("md", "json", "png")}
    return summary


def _redact(url: str) -> str:
    """Never write a database password into a report."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
