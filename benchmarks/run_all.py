"""Run every benchmark script in turn, then rebuild BENCHMARKS.md from benchmarks/results/*.md.

Usage: python benchmarks/run_all.py [--only prune,quantize,...] [--collect-only]
Each script prints its tables and writes benchmarks/results/<area>.json and .md. The whole set
takes a few hours on 2 cores (the 5-seed KD comparison alone about an hour); `--only` runs a subset, `--collect-only` just rebuilds the file.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# (area, script, results file): order follows the data flow of the toolkit
SCRIPTS = [("budget", "bench_budget.py", "budget.md"), ("prune", "bench_prune.py", "prune.md"), ("quantize", "bench_quantize.py", "quantize.md"),
           ("distill", "bench_distill.py", "distill.md"),
           ("artifact", "bench_artifact.py", "artifact.md"), ("runtimes", "bench_runtimes.py", "runtimes.md"),
           ("pipeline", "bench_search.py", "pipeline.md"), ("edge", "bench_split.py", "edge.md"),
           ("serve", "bench_serve.py", "serve.md")]


def collect() -> Path:
    """BENCHMARKS.md = a short preface + every results file, in toolkit order."""
    parts = ["# Benchmarks\n",
             "Every table below was produced on the project's 2-core, no-GPU machine by the script named in "
             "its section (`make bench` runs them all; `python benchmarks/run_all.py --only AREA` one). The "
             "raw numbers, with the machine description, are in `benchmarks/results/*.json`. The first section "
             "(budget-first compression) runs the CLI commands exactly as a user types them, on baselines "
             "trained with `edgeslim train --model M --epochs 10` (defaults), and so does the runtimes section. "
             "The other sections are the earlier, tuned measurements: their dense baselines were trained "
             "with `edgeslim train ... --hflip --shift` (10 epochs, seed 0, no validation hold-out) and "
             "several rows use settings only those scripts pass; read them as what the methods can reach, "
             "not as what the documented commands give. Latencies were measured on a "
             "shared 2-core machine: compare models within one table (they were timed side by side), not "
             "across tables. The machine changed: each results JSON records its date and CPU flags; rows "
             "dated before 2026-12-03 ran on an AVX-512 VNNI CPU, where ONNX Runtime's int8 kernels are "
             "much faster than on the AVX2 CPU (no VNNI) the budget-first section was regenerated on, so "
             "int8 speed-ups from the older sections do not carry over.\n"]
    for _, _, md in SCRIPTS:
        f = HERE / "results" / md
        if f.exists():
            # figures sit beside the results files; BENCHMARKS.md is two folders up
            text = re.sub(r"\]\((?!http)([^)/]+\.png)\)", r"](benchmarks/results/\1)", f.read_text().strip())
            # demote headings one level so each results file is a section of this document
            parts.append("\n".join("#" + line if line.startswith("#") else line for line in text.splitlines()))
    out = ROOT / "BENCHMARKS.md"
    out.write_text("\n\n".join(parts) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated areas: " + ",".join(a for a, _, _ in SCRIPTS))
    ap.add_argument("--collect-only", action="store_true")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    failed = []
    if not args.collect_only:
        for area, script, _ in SCRIPTS:
            if only and area not in only:
                continue
            print(f"== {area}: {script}", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call([sys.executable, str(HERE / script)], cwd=ROOT)
            print(f"== {area}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
            if rc:
                failed.append(area)
    print(f"wrote {collect()}")
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
