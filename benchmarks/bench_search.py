"""Pipeline benchmark: every built-in recipe on seed-cnn / Fashion-MNIST (the cached dense
baseline), then a small accuracy-aware search. Writes benchmarks/results/pipeline.json + .md.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_search.py            # both parts
    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_search.py --part search
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from common import RESULTS, ROOT, baseline, print_table, save_results

RECIPES = ("fastest", "balanced", "smallest")
RUNS = ROOT / "runs" / "bench-pipeline"
SUMMARY_COLUMNS = ["recipe", "accuracy", "drop_points", "budget", "within_budget", "file_bytes", "size_reduction",
                   "zstd_size_reduction", "macs", "macs_reduction", "p50_ms", "speedup", "seconds"]
STAGE_COLUMNS = ["stage", "what", "accuracy", "drop_points", "evaluated_with", "file_bytes", "zstd_bytes",
                 "nonzero_params", "macs", "p50_ms", "speedup"]
SEARCH = {"finetune": {"epochs": 1}, "distill_epochs": 2, "train_samples": 12000, "eval_samples": 2000,
          "calibration_samples": 256, "bench_rounds": 10,
          "space": {"sparsity": [0.0, 0.95], "structured_ratio": [0.0, 0.5], "width": [1.0, 0.75, 0.5],
                    "kd_temperature": [1.0, 8.0], "share_bits": [0, 4, 6], "bits": [32, 8]}}


def run_recipes(folder: Path, names: list[str], previous: dict | None = None) -> dict:
    """Run ``names``; results of other recipes from an earlier run (``previous``) are kept."""
    from edgeslim.pipeline import compress

    previous = previous or {"summary": [], "recipes": {}}
    rows = [r for r in previous["summary"] if r["recipe"] not in names]
    reports = {k: v for k, v in previous["recipes"].items() if k not in names}
    for name in names:
        out = RUNS / name
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        rep = compress(folder, name, out=out, check_budget=False, progress=False).summary
        base, final = rep["baseline"], rep["final"]
        rows.append({"recipe": name, "accuracy": final["accuracy"], "drop_points": final["drop_points"],
                     "budget": rep["budget"]["max_accuracy_drop"], "within_budget": "no" if rep["budget"]["exceeded"] else "yes",
                     "file_bytes": final["file_bytes"], "size_reduction": rep["size_reduction"],
                     "zstd_size_reduction": rep["zstd_size_reduction"], "macs": final["macs"],
                     "macs_reduction": base["macs"] / final["macs"], "p50_ms": final["p50_ms"],
                     "speedup": final["speedup"], "seconds": time.perf_counter() - t0})
        reports[name] = {"rows": rep["rows"], "warnings": rep["warnings"], "budget": rep["budget"]}
        print_table(rep["rows"], STAGE_COLUMNS, title=f"recipe {name}")
    for r in rows:  # rows kept from a run before the yes/no column
        if isinstance(r["within_budget"], bool):
            r["within_budget"] = "yes" if r["within_budget"] else "no"
    rows.sort(key=lambda r: RECIPES.index(r["recipe"]))
    reports = {k: reports[k] for k in RECIPES if k in reports}
    base = next(iter(reports.values()))["rows"][0]
    return {"baseline": {k: base[k] for k in ("accuracy", "file_bytes", "zstd_bytes", "macs", "p50_ms")},
            "summary": rows, "recipes": reports}


def run_search(folder: Path, trials: int, workers: int) -> dict:
    from edgeslim.pipeline import search

    out = RUNS / "search"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = search(folder, {**SEARCH, "max_accuracy_drop": 1.0, "trials": trials}, out=out, workers=workers,
               progress=True).summary
    png = RESULTS / "pipeline_pareto.png"
    shutil.copyfile(r["files"]["png"], png)
    return {"settings": {**SEARCH, "trials": trials, "workers": workers, "max_accuracy_drop": 1.0},
            "seconds": time.perf_counter() - t0, "complete": r["complete"], "feasible": r["feasible"],
            "baseline": r["baseline"], "pareto": r["pareto"], "all_trials": r["all_trials"], "plot": png.name}


def markdown(payload: dict) -> str:
    from edgeslim.report import markdown_table
    from edgeslim.report.pipeline import PARETO_COLUMNS

    lines = ["# Compression pipeline results", "",
             "seed-cnn trained 10 epochs on Fashion-MNIST (cached baseline `.cache/baselines/seed-cnn-fashion-mnist-"
             "e10-s0`); accuracy on the 10,000 test images (torch for PyTorch stages, ONNX Runtime for files); "
             "latency: ONNX Runtime p50 at batch 1, 1 thread, interleaved rounds against the original on the same "
             "2-core machine; size: the deployable file (safetensors / .onnx / .eslim) vs the float32 safetensors.",
             "", "Command: `flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_search.py` "
             "(each recipe is `edgeslim compress .cache/baselines/seed-cnn-fashion-mnist-e10-s0 --recipe NAME "
             "--out C/`).", ""]
    if "recipes" in payload:
        rec = payload["recipes"]
        lines += ["## Built-in recipes", "", markdown_table(rec["summary"], SUMMARY_COLUMNS), ""]
        for name, r in rec["recipes"].items():
            lines += [f"### `{name}`", "", markdown_table(r["rows"], STAGE_COLUMNS), ""]
            lines += [f"- {'within' if not r['budget']['exceeded'] else 'OVER'} the {r['budget']['max_accuracy_drop']:g}"
                      f"-point budget ({r['budget']['final_drop_points']:.2f} points lost)"]
            lines += [f"- warning: {w}" for w in r["warnings"]] + [""]
    if "search" in payload:
        s = payload["search"]
        st = s["settings"]
        lines += ["## Accuracy-aware search", "",
                  f"`search(..., max_accuracy_drop=1.0, trials={st['trials']}, workers={st['workers']})` on a "
                  f"{st['train_samples']:,}-image training subset (fine-tuning {st['finetune']['epochs']} epoch per "
                  f"pruning stage, {st['distill_epochs']} for width students) and a {st['eval_samples']:,}-image "
                  f"test subset; {s['complete']} complete trials, {s['feasible']} within budget, "
                  f"{s['seconds'] / 60:.1f} min. Size = deployable file after zstd. Space: "
                  f"`{json.dumps(st['space'])}`.", "",
                  f"Original on the same subset: accuracy {s['baseline']['accuracy']:.4f}, "
                  f"{s['baseline']['size_bytes']:,.0f} bytes (zstd), p50 {s['baseline']['p50_ms']:.4f} ms." if
                  s["baseline"] else "", "",
                  "### Pareto front (feasible trials)", "", markdown_table(s["pareto"], PARETO_COLUMNS), "",
                  f"![Pareto front]({s['plot']})", "",
                  "### All trials", "", markdown_table(s["all_trials"], PARETO_COLUMNS), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["all", "recipes", "search"], default="all")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated subset to (re)run")
    args = ap.parse_args()
    _, folder = baseline("seed-cnn", "fashion-mnist", epochs=10, seed=0)
    previous = RESULTS / "pipeline.json"
    payload = {k: v for k, v in (json.loads(previous.read_text()).items() if previous.exists() else [])
               if k in ("recipes", "search")}
    if args.part in ("all", "recipes"):
        payload["recipes"] = run_recipes(folder, args.recipes.split(","), payload.get("recipes"))
        print_table(payload["recipes"]["summary"], SUMMARY_COLUMNS, title="built-in recipes on seed-cnn")
        write(payload)  # keep the recipe results even if the search is interrupted
    if args.part in ("all", "search"):
        payload["search"] = run_search(folder, args.trials, args.workers)
        write(payload)


def write(payload: dict) -> None:
    from edgeslim._io import atomic_write_text

    save_results("pipeline", payload)
    atomic_write_text(RESULTS / "pipeline.md", markdown(payload))
    print(f"wrote {RESULTS / 'pipeline.md'}")


if __name__ == "__main__":
    main()
