"""Budget-first compression the way a user runs it: every row is a CLI command typed as shown,
on baselines trained with `edgeslim train --model M --epochs 10` (defaults), with its wall time.

Usage: python benchmarks/bench_budget.py [--only NAME,...] [--work DIR]
Writes benchmarks/results/budget.json and budget.md. Speed-ups come from `edgeslim bench` runs
that time the dense and the compressed file side by side (both as `edgeslim export` writes them).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_table, save_results  # noqa: E402

EDGESLIM = [sys.executable, "-c", "from edgeslim.cli import main; main()"]
MODELS = ("seed-cnn", "lenet-300-100", "lenet-5")

# (name, model, command after `edgeslim` with {m} = baseline folder and {o} = output, target)
RUNS = [
    ("unstructured-95", "lenet-300-100",
     "prune {m} --method unstructured --sparsity 0.95 --finetune-epochs 8 --out {o}", ">= 95% zeros, drop <= 0.5"),
    ("unstructured-95", "seed-cnn",
     "prune {m} --method unstructured --sparsity 0.95 --finetune-epochs 8 --out {o}", ">= 95% zeros, drop <= 0.5"),
    ("structured-macs-35", "seed-cnn",
     "prune {m} --method structured --target-macs 0.35 --finetune-epochs 8 --out {o}", "drop <= 1, >= 2x at batch 64"),
    ("structured-macs-35", "lenet-5",
     "prune {m} --method structured --target-macs 0.35 --finetune-epochs 8 --out {o}", "drop <= 1, >= 2x at batch 64"),
    ("smallest-0.5", "seed-cnn", "compress {m} --recipe smallest --max-accuracy-drop 0.5 --out {o}",
     ">= 50x smaller than weights.safetensors (goal 100x)"),
    ("fastest-0.5", "seed-cnn", "compress {m} --recipe fastest --max-accuracy-drop 0.5 --out {o}",
     ">= 2x at batch 64, >= 1.5x at batch 1"),
    ("smallest-0.5", "lenet-300-100", "compress {m} --recipe smallest --max-accuracy-drop 0.5 --out {o}", ">= 40x"),
]


def edgeslim(args: str, log: Path) -> tuple[float, str]:
    """Run `edgeslim ARGS` as a user would; (seconds, stdout). Output also goes to ``log``."""
    t0 = time.perf_counter()
    proc = subprocess.run(EDGESLIM + shlex.split(args), cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log.write_text(f"$ edgeslim {args}\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        raise RuntimeError(f"`edgeslim {args}` failed ({proc.returncode}); see {log}")
    return seconds, proc.stdout


def eval_json(target: Path, log: Path) -> dict:
    return json.loads(edgeslim(f"eval {target} --json", log)[1])


def bench_ratio(dense: Path, compressed: Path, batch: int, log: Path) -> float:
    out = json.loads(edgeslim(f"bench {dense} {compressed} --batch {batch} --threads 1 --rounds 40 --json", log)[1])
    return out[1]["speedup"]


def exported(folder: Path, log: Path) -> Path:
    onnx = folder / "model.onnx"
    if not onnx.exists():
        edgeslim(f"export {folder}", log)
    return onnx


SECONDS_FILE = ".bench_seconds"  # how long the command took, kept beside its output for --reuse


def run_one(name: str, model: str, template: str, target: str, work: Path, reuse: bool = False) -> dict:
    base = work / "baselines" / model
    out = work / "runs" / f"{name}-{model}"
    logs = work / "logs"
    if reuse and (out / SECONDS_FILE).exists():  # the command finished before: measure its output again
        seconds = float((out / SECONDS_FILE).read_text())
    else:
        subprocess.run(["rm", "-rf", str(out)], check=True)
        t0 = time.perf_counter()
        try:
            edgeslim(template.format(m=base, o=out), logs / f"{name}-{model}.log")
        except RuntimeError:
            if not (out / "report.json").exists():
                raise
        seconds = time.perf_counter() - t0
        (out / SECONDS_FILE).write_text(f"{seconds:.1f}\n")
    dense_eval = eval_json(base, logs / f"{name}-{model}.eval-base.log")
    row = {"run": name, "model": model, "command": "edgeslim " + template.format(m=f"{model}/", o="out/"),
           "target": target, "minutes": round(seconds / 60, 1), "dense_accuracy": dense_eval["accuracy"]}
    dense_onnx = exported(base, logs / "export-base.log")
    if template.startswith("prune"):
        result = eval_json(out, logs / f"{name}-{model}.eval.log")
        deployable = exported(out, logs / f"{name}-{model}.export.log")
        pruned = json.loads((out / "prune_summary.json").read_text())["after"]  # zeros among conv/linear weights
        row.update(accuracy=result["accuracy"], zeros=pruned["weight_sparsity"],
                   macs_fraction=result["macs"] / dense_eval["macs"])
    else:
        report = json.loads((out / "report.json").read_text())
        if report["budget"]["exceeded"]:  # compress exited 2, after writing its report
            row["failed"] = "exit 2: " + report["budget"]["message"]
        deployable = Path(report["deployable"])
        result = eval_json(deployable, logs / f"{name}-{model}.eval.log")
        row.update(accuracy=result["accuracy"],
                   size_reduction=(base / "weights.safetensors").stat().st_size / deployable.stat().st_size,
                   file=deployable.name, stages=", ".join(f"{e['dir']} {e['summary']}" for e in report["stages"]))
    row["drop_points"] = 100 * (row["dense_accuracy"] - row["accuracy"])
    if deployable.suffix == ".onnx":
        for b in (1, 64):
            row[f"speedup_b{b}"] = bench_ratio(dense_onnx, deployable, b, logs / f"{name}-{model}.bench{b}.log")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated run names or models")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench_budget")
    ap.add_argument("--reuse", action="store_true", help="measure outputs a finished earlier run left, without "
                                                         "running their commands again")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    train_minutes = {}
    for model in MODELS:
        folder = args.work / "baselines" / model
        if not (folder / "model.json").exists():
            s, _ = edgeslim(f"train --model {model} --epochs 10 --out {folder}", args.work / "logs" / f"train-{model}.log")
            train_minutes[model] = round(s / 60, 1)
    rows = []
    for name, model, template, target in RUNS:
        if only and name not in only and model not in only:
            continue
        print(f"== {name} on {model}", flush=True)
        try:
            rows.append(run_one(name, model, template, target, args.work, args.reuse))
        except RuntimeError as e:  # a command that fails (e.g. over its budget) is a result too
            rows.append({"run": name, "model": model, "target": target, "failed": str(e),
                         "command": "edgeslim " + template.format(m=f"{model}/", o="out/")})
        print_table(rows[-1:], title=name)
    columns = ["run", "model", "accuracy", "drop_points", "zeros", "macs_fraction", "size_reduction", "speedup_b1",
               "speedup_b64", "minutes", "target"]
    print_table(rows, columns, title="budget-first compression, commands as typed")
    previous = {}
    results = ROOT / "benchmarks" / "results" / "budget.json"
    if only and results.exists():  # a partial run keeps the other rows
        previous = {(r["run"], r["model"]): r for r in json.loads(results.read_text())["rows"]}
    merged = {**previous, **{(r["run"], r["model"]): r for r in rows}}
    all_rows = [merged[(n, m)] for n, m, _, _ in RUNS if (n, m) in merged]
    save_results("budget", {"rows": all_rows, "train_minutes": train_minutes})
    write_markdown(all_rows)


def write_markdown(rows: list[dict]) -> None:
    from edgeslim.report import markdown_table

    lines = ["# Budget-first compression (commands as typed)", "",
             "Baselines: `edgeslim train --model M --epochs 10` (defaults: no augmentation, 5,000 training images "
             "held out for validation). Each row is the command shown, run by `benchmarks/bench_budget.py` on "
             "this 2-core machine; accuracy is on the 10,000 test images (`edgeslim eval`), speed-ups are "
             "`edgeslim bench dense.onnx compressed.onnx --batch B --threads 1` (side by side, both exported as "
             "`edgeslim export` writes them), size is against the dense `weights.safetensors`.", ""]
    for r in rows:
        took = f"failed: {r['failed']}" if "failed" in r else f"{r['minutes']} min"
        lines.append(f"- `{r['command']}` ({r['model']}, {took}): target {r['target']}")
    lines += ["", markdown_table(rows, ["run", "model", "dense_accuracy", "accuracy", "drop_points", "zeros",
                                        "macs_fraction", "size_reduction", "speedup_b1", "speedup_b64", "minutes"]), ""]
    (ROOT / "benchmarks" / "results" / "budget.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
