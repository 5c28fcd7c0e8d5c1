"""CNNs users recognise, end to end from the command line (issue 16): resnet18 and
mobilenet_v3_small (torchvision's layer names; small-input stem for 32x32 images) trained,
structurally pruned to <= 50% of their MACs, int8-quantized, exported and timed.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_cnns.py
    .venv/bin/python benchmarks/bench_cnns.py --quick --out-json /tmp/cnns.json   # smoke test

Every step is an `edgeslim` command (run in a subprocess, as a user types it):
  train --model M --dataset D            -> base/
  prune base --method structured --target-macs 0.5 --layout uniform --finetune-epochs F -> pruned/
  export base / pruned                    -> parity max |diff| against PyTorch
  quantize pruned --method static         -> int8/model.onnx
  bench base.onnx pruned.onnx int8.onnx --batch 64 --threads 2 (side by side)
Writes a table and benchmarks/results/cnns.json: MACs kept, ONNX Runtime throughput ratio to
the unpruned float model at batch 64, export parity, accuracy of each stage.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_table, save_results  # noqa: E402

THREADS = 2
MAX_MACS = 0.5
TARGET_SPEEDUP = 1.6
PARITY = 1e-4


def edgeslim(*args: str) -> dict | None:
    """Run one CLI command; its --json output parsed (None for commands without --json)."""
    cmd = [sys.executable, "-c", "from edgeslim.cli import main; main()", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print("$ edgeslim " + " ".join(map(str, args)), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"edgeslim {' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout) if "--json" in args else None


def run_model(name: str, work: Path, args) -> dict:
    spec = name + (f",width={args.width}" if args.width != 1.0 else "")
    base, pruned, q = work / "base", work / "pruned", work / "int8"
    edgeslim("train", "--model", spec, "--dataset", args.dataset, "--epochs", args.epochs, "--out", base)
    p = edgeslim("prune", base, "--method", "structured", "--target-macs", MAX_MACS, "--layout", "uniform",
                 "--finetune-epochs", args.finetune_epochs, "--out", pruned, "--json")
    ex_base = edgeslim("export", base, "--out", work / "base.onnx", "--json")
    ex_pruned = edgeslim("export", pruned, "--out", work / "pruned.onnx", "--json")
    edgeslim("quantize", pruned, "--method", "static", "--threads", THREADS, "--out", q)
    summary = json.loads((q / "summary.json").read_text())
    paths = [work / "base.onnx", work / "pruned.onnx", q / "model.onnx"]
    bench = edgeslim("bench", *paths, "--batch", 64, "--threads", THREADS, "--rounds", args.rounds,
                     "--warmup", max(2, args.rounds // 4), "--json")
    macs_kept = p["after"]["macs"] / p["before"]["macs"]
    rows = []
    for label, b, acc in (("float", bench[0], p["before"]["accuracy"]), ("pruned", bench[1], p["after"]["accuracy"]),
                          ("pruned + int8", bench[2], summary.get("accuracy"))):
        rows.append({"model": name, "stage": label, "accuracy": acc, "macs_kept": 1.0 if label == "float" else macs_kept,
                     "throughput_per_s_b64": b["throughput_per_s"], "throughput_ratio_b64": b["speedup"],
                     "file_kb": b["file_bytes"] / 1024})
    rows[0]["parity_max_abs_diff"] = ex_base["max_abs_diff"]
    rows[1]["parity_max_abs_diff"] = ex_pruned["max_abs_diff"]
    return {"rows": rows, "macs_kept": macs_kept, "parity": max(ex_base["max_abs_diff"], ex_pruned["max_abs_diff"]),
            "pruned_speedup_b64": bench[1]["speedup"], "int8_speedup_b64": bench[2]["speedup"],
            "int8_accuracy_drop_points": summary.get("accuracy_drop_points")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,mobilenet_v3_small")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0: torchvision's model)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="smoke test: digits, 1 epoch, width 0.125, 3 rounds")
    ap.add_argument("--out-json", type=Path, default=None, help="default benchmarks/results/cnns.json")
    args = ap.parse_args()
    if args.quick:
        args.dataset, args.epochs, args.finetune_epochs, args.width, args.rounds = "digits", 1, 0, 0.125, 3
    t0 = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgeslim-cnns-") as tmp:
        for name in args.models.split(","):
            results[name] = run_model(name, Path(tmp) / name, args)
    rows = [r for res in results.values() for r in res["rows"]]
    print_table(rows, title=f"CNNs on {args.dataset} (32x32, small-input stem), ONNX Runtime batch 64, "
                            f"{THREADS} threads, side by side")
    checks = {name: {"macs_kept<=0.5": r["macs_kept"] <= MAX_MACS + 0.01,
                     f"pruned throughput >= {TARGET_SPEEDUP}x": r["pruned_speedup_b64"] >= TARGET_SPEEDUP,
                     "parity < 1e-4": r["parity"] < PARITY} for name, r in results.items()}
    print(json.dumps(checks, indent=2))
    payload = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "threads": THREADS, "load_before": os.getloadavg()[0], "seconds": time.perf_counter() - t0,
               "results": results, "checks": checks}
    if args.out_json:
        from edgeslim._io import write_json

        from common import machine

        write_json(args.out_json, {"machine": machine(), **payload})
        print(f"wrote {args.out_json}")
    else:
        print(f"wrote {save_results('cnns', payload)}")


if __name__ == "__main__":
    main()
