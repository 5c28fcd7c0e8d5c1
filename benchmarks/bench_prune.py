"""Pruning benchmark: reproduces the targets table of issue 3 in one run.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_prune.py [--quick]

1. Unstructured: seed-cnn and lenet-300-100 on Fashion-MNIST, magnitude vs Taylor at
   90/95/98% (one-shot without fine-tuning, and gradual cubic schedule + fine-tuning),
   against the dense model `edgeslim train` produces (benchmarks.common.baseline).
2. Structured: seed-cnn and lenet-5 to <= 35% of their MACs, fine-tuned; ONNX files and
   ONNX Runtime throughput at batch 64, dense and pruned measured side by side.
3. EfficientNet-Lite0 pruned structurally by 25% of its MACs: ONNX export, top-1 on the
   200 ImageNet sample photos before/after (no fine-tuning: no ImageNet training set).
4. Sensitivity analysis of seed-cnn (figure) and a sensitivity-allocated 95% run.
Writes benchmarks/results/prune.json, prune.md and prune.sensitivity.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, baseline, print_table, save_results  # noqa: E402

import edgeslim.prune  # noqa: E402
from edgeslim._io import atomic_write_text  # noqa: E402
from edgeslim.evaluate import evaluate_split  # noqa: E402
from edgeslim.evaluate.onnx_stats import onnx_weight_stats  # noqa: E402
from edgeslim.export import export_onnx, onnx_metadata  # noqa: E402
from edgeslim.report import markdown_table  # noqa: E402
from edgeslim.runtime import benchmark, load_model  # noqa: E402
from edgeslim.train.api import load_data_for  # noqa: E402

UNSTRUCTURED_MODELS = ("seed-cnn", "lenet-300-100")
STRUCTURED_MODELS = ("seed-cnn", "lenet-5")
# fine-tuning epochs for the >= 95% target runs (an MLP epoch costs a tenth of a CNN epoch)
TARGET_EPOCHS = {"seed-cnn": 8, "lenet-300-100": 20}
STRUCTURED_EPOCHS = {"seed-cnn": 8, "lenet-5": 30}
# Channel ratios for ONNX Runtime's CPU kernels: the full-resolution first conv costs more
# time than its MACs say, and conv channel counts off ORT's blocking (8/16) save little.
# (lenet-5 cannot reach 2x at all on this runtime: see speed_bound_rows; it gets a
# gradual-schedule variant instead.)
ORT_FRIENDLY_RATIOS = {"seed-cnn": {"features.0": 0.75, "features.3": 0.5}}


def pts(a: float, b: float) -> float:
    return round(100 * (a - b), 2)


def criterion_rows(levels: list[float], epochs: int) -> list[dict]:
    """Magnitude vs Taylor at each level: one shot without fine-tuning, then with a short one."""
    rows = []
    for name in UNSTRUCTURED_MODELS:
        ckpt, _ = baseline(name)
        data = load_data_for(name, "fashion-mnist")
        dense = evaluate_split(ckpt.model, data.test)["accuracy"]
        for level in levels:
            for criterion in ("magnitude", "taylor"):
                _, raw = edgeslim.prune(ckpt.model, data=data, criterion=criterion, sparsity=level)
                _, ft = edgeslim.prune(ckpt.model, data=data, criterion=criterion, sparsity=level,
                                       finetune_epochs=epochs)
                raw_acc, ft_acc = raw["after"]["accuracy"], ft["after"]["accuracy"]
                rows.append({"model": name, "criterion": criterion, "sparsity": level, "dense_acc": dense,
                             "oneshot_acc": raw_acc, "oneshot_drop_pts": pts(dense, raw_acc),
                             f"ft{epochs}_acc": ft_acc, f"ft{epochs}_drop_pts": pts(dense, ft_acc)})
                print(rows[-1], flush=True)
    return rows


def target_rows(level: float, epochs: dict[str, int]) -> list[dict]:
    """>= 95% zeros: gradual cubic schedule with fine-tuning, both criteria (and, for
    seed-cnn, magnitude with per-layer sparsity allocated by sensitivity analysis)."""
    rows = []
    for name in UNSTRUCTURED_MODELS:
        ckpt, _ = baseline(name)
        data = load_data_for(name, "fashion-mnist")
        variants = [("magnitude", "global"), ("taylor", "global")]
        if name == "seed-cnn":
            variants.append(("magnitude", "sensitivity"))
        for criterion, scope in variants:
            pruned, s = edgeslim.prune(ckpt.model, data=data, criterion=criterion, scope=scope, sparsity=level,
                                       schedule="gradual", finetune_epochs=epochs[name], finetune_lr=2e-3,
                                       pruning_fraction=0.5)
            dense, acc = s["before"]["accuracy"], s["after"]["accuracy"]
            rows.append({"model": name, "criterion": criterion, "scope": scope, "finetune_epochs": epochs[name],
                         "weight_zeros": round(s["after"]["weight_sparsity"], 4),
                         "nonzero_params": s["after"]["nonzero_params"], "params": s["after"]["params"],
                         "dense_acc": dense, "pruned_acc": acc, "drop_pts": pts(dense, acc),
                         "target_met": bool(s["after"]["weight_sparsity"] >= level - 1e-4 and pts(dense, acc) <= 0.5),
                         "seconds": round(s["seconds"])})
            print(rows[-1], flush=True)
    return rows


def kd_from(model):
    """Fine-tuning loss: distillation from the dense model (a frozen copy of it)."""
    import copy

    from edgeslim.distill import kd_loss_fn

    return kd_loss_fn(copy.deepcopy(model), temperature=4.0, alpha=0.9)


def structured_rows(target: float, epochs: dict[str, int], work: Path,
                    models: list[str] | tuple[str, ...] = STRUCTURED_MODELS) -> list[dict]:
    """Uniform channel ratio vs first-conv-heavy ratios, both to <= target MACs; dense and
    both pruned models timed side by side in one ONNX Runtime benchmark at batch 64."""
    rows = []
    for name in models:
        ckpt, _ = baseline(name)
        data = load_data_for(name, "fashion-mnist")
        meta = onnx_metadata(ckpt)
        dense_onnx = export_onnx(ckpt.model, work / f"{name}-dense.onnx", data.input_shape, meta)
        variants = {"uniform": {}, "uniform-gradual": {"schedule": "gradual", "pruning_steps": 4}}
        if name in ORT_FRIENDLY_RATIOS:
            variants = {"uniform": {}, "ort-friendly": {"layer_sparsity": ORT_FRIENDLY_RATIOS[name]}}
        paths, summaries = [dense_onnx], {}
        for label, extra in variants.items():
            pruned, s = edgeslim.prune(ckpt.model, data=data, method="structured", criterion="l1",
                                       target_macs=target, finetune_epochs=epochs[name],
                                       finetune_loss_fn=kd_from(ckpt.model), **extra)
            path = export_onnx(pruned, work / f"{name}-{label}.onnx", data.input_shape, meta)
            s["ort_accuracy"] = evaluate_split(load_model(path), data.test)["accuracy"]
            paths.append(path)
            summaries[label] = s
        bench = benchmark(paths, batch=64, rounds=30)
        dense_acc = next(iter(summaries.values()))["before"]["accuracy"]
        for label, b in zip(["dense", *variants], bench):
            s = summaries.get(label)
            stats = s["after"] if s else next(iter(summaries.values()))["before"]
            rows.append({"model": name, "variant": label, "accuracy": stats["accuracy"],
                         "drop_pts": pts(dense_acc, stats["accuracy"]), "macs": stats["macs"],
                         "macs_frac": round(stats["macs"] / next(iter(summaries.values()))["before"]["macs"], 3),
                         "params": stats["params"],
                         "channels": "/".join(str(c[1]) for c in s["channels"].values()) if s else "dense",
                         "onnx_kb": round(b["file_bytes"] / 1024, 1), "ort_p50_ms_b64": round(b["p50_ms"], 3),
                         "ort_img_per_s_b64": round(b["throughput_per_s"]), "speedup_b64": round(b["speedup"], 2),
                         "ort_accuracy": s["ort_accuracy"] if s else None})
            print(rows[-1], flush=True)
    return rows


# LeNet-5 output channels per layer (conv1, conv2, fc1, fc2) timed by speed_bound_rows: the
# channel splits of the structured variants, the fastest splits a sweep found at <= 35% MACs,
# and one channel per layer (the fastest LeNet-5 any channel pruning can produce).
LENET5_SPEED_BOUND = ((3, 9, 69, 48), (2, 10, 90, 62), (2, 8, 64, 32), (1, 16, 120, 84), (1, 16, 64, 32),
                      (1, 8, 64, 48), (1, 4, 16, 16), (1, 1, 1, 1))


def speed_bound_rows(work: Path, batch: int = 64) -> list[dict]:
    """Time LeNet-5 pruned to fixed channel counts (untrained: time does not depend on the
    weights) beside the dense model, to find the best speed-up any channel split can give."""
    from edgeslim.evaluate.size import count_macs
    from edgeslim.models import create
    from edgeslim.prune import prune_structured

    dense = create("lenet-5").eval()
    names = ["features.0", "features.3", "classifier.1", "classifier.3"]
    widths = [dense.get_submodule(n).weight.shape[0] for n in names]
    macs = count_macs(dense, (1, 32, 32))
    paths, rows = [export_onnx(dense, work / "bound-dense.onnx", (1, 32, 32))], [{"channels": "dense"}]
    for channels in LENET5_SPEED_BOUND:
        ratios = {n: max(0.0, (w - c - 0.25) / w) for n, c, w in zip(names, channels, widths)}  # keeps int(c + 0.25)
        model = prune_structured(dense, (1, 32, 32), ratio=0.0, layer_ratios=ratios, max_ratio=0.999).model
        got = tuple(model.get_submodule(n).weight.shape[0] for n in names)
        assert got == channels, (got, channels)
        paths.append(export_onnx(model, work / f"bound-{'-'.join(map(str, channels))}.onnx", (1, 32, 32)))
        rows.append({"channels": "/".join(map(str, channels)),
                     "macs_frac": round(count_macs(model, (1, 32, 32)) / macs, 3)})
    rows[0]["macs_frac"] = 1.0
    for threads in (1, 2):
        for row, b in zip(rows, benchmark(paths, batch=batch, threads=threads, rounds=30, iters_per_round=10)):
            row[f"p50_ms_b{batch}_t{threads}"] = round(b["p50_ms"], 3)
            row[f"speedup_t{threads}"] = round(b["speedup"], 2)
    for row in rows:
        print(row, flush=True)
    return rows


EFFNET_VARIANTS = (("l1", None), ("l1", 8), ("bn_scale", 8))


def efficientnet_row(work: Path, target: float = 0.75) -> list[dict]:
    """Dense and pruned variants (importance, round_to) timed side by side at batch 8."""
    from edgeslim.data.imagenet import load_imagenet_samples
    from edgeslim.models import create
    from edgeslim.prune import prune_structured

    model = create("efficientnet-lite0").eval()
    split, _ = load_imagenet_samples()[:2]
    shape = (3, 224, 224)
    paths = [export_onnx(model, work / "effnet-dense.onnx", shape)]
    rows = [{"variant": "dense", "importance": "", "round_to": "", "macs_M": None, "macs_frac": 1.0,
             "params": sum(p.numel() for p in model.parameters())}]
    for importance, round_to in EFFNET_VARIANTS:
        t0 = time.perf_counter()
        res = prune_structured(model, shape, target_macs=target, importance=importance, round_to=round_to)
        rows[0]["macs_M"] = round(res.macs_before / 1e6, 1)
        rows.append({"variant": "pruned", "importance": importance, "round_to": round_to or "",
                     "macs_M": round(res.macs_after / 1e6, 1), "macs_frac": round(res.macs_fraction, 3),
                     "params": res.params_after, "prune_s": round(time.perf_counter() - t0, 1)})
        paths.append(export_onnx(res.model.eval(), work / f"effnet-{importance}-{round_to}.onnx", shape))
    bench = benchmark(paths, batch=8, rounds=6, warmup=2, iters_per_round=2)
    for row, path, b in zip(rows, paths, bench):
        m = evaluate_split(load_model(path), split)
        row.update({"onnx_mb": round(path.stat().st_size / 2**20, 2), "top1_ort": m["accuracy"], "top5_ort": m["top5"],
                    "ort_p50_ms_b8": round(b["p50_ms"], 1), "speedup_b8": round(b["speedup"], 2)})
        print(row, flush=True)
    return rows


def sensitivity_rows() -> list[dict]:
    from edgeslim.prune import allocate_sparsity, plot_sensitivity, sensitivity_analysis

    ckpt, _ = baseline("seed-cnn")
    data = load_data_for("seed-cnn", "fashion-mnist")
    sens = sensitivity_analysis(ckpt.model, data.test.subset(2000, seed=0))
    plot_sensitivity(sens, RESULTS / "prune.sensitivity.png", "seed-cnn on Fashion-MNIST: one layer pruned at a time")
    plan = allocate_sparsity(sens, 0.95)
    return [{"layer": n, "params": v["params"], **{f"acc@{lv:g}": a for lv, a in zip(sens["levels"], v["accuracy"])},
             "planned@95%": round(plan[n], 3)} for n, v in sens["layers"].items()]


PARTS = ("structured", "targets", "criteria", "sensitivity", "efficientnet", "speed_bound")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="short fine-tuning, 95%% only, no criterion sweep fine-tuning, no EfficientNet")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated parts to run, in this order (other parts are kept from prune.json)")
    ap.add_argument("--structured-models", default=",".join(STRUCTURED_MODELS))
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p and not (args.quick and p == "efficientnet")]
    work = Path(tempfile.mkdtemp(prefix="bench-prune-"))
    epochs = {k: max(2, v // 4) for k, v in TARGET_EPOCHS.items()} if args.quick else TARGET_EPOCHS
    s_models = args.structured_models.split(",")
    s_epochs = {k: 2 for k in STRUCTURED_EPOCHS} if args.quick else STRUCTURED_EPOCHS
    runners = {
        "structured": lambda: structured_rows(0.35, s_epochs, work, s_models),
        "targets": lambda: target_rows(0.95, epochs),
        "criteria": lambda: criterion_rows([0.95] if args.quick else [0.9, 0.95, 0.98], 1),
        "sensitivity": sensitivity_rows,
        "efficientnet": lambda: efficientnet_row(work),
        "speed_bound": lambda: speed_bound_rows(work),
    }
    for part in parts:
        t0 = time.perf_counter()
        result = runners[part]()
        save_part(part, result, round(time.perf_counter() - t0), args.quick)


def save_part(part: str, result, seconds: int, quick: bool) -> None:
    """Merge one part into prune.json right away (read now: other runs may have written it)."""
    previous = RESULTS / "prune.json"
    old = json.loads(previous.read_text()) if previous.exists() and not quick else {}
    payload = {k: v for k, v in old.items() if k in PARTS}
    if part == "structured" and isinstance(old.get("structured"), list):  # rerun models replace their rows
        rerun = {r["model"] for r in result}
        result = [r for r in old["structured"] if r["model"] not in rerun] + result
        result.sort(key=lambda r: STRUCTURED_MODELS.index(r["model"]))
    payload[part] = result
    payload["seconds"] = {**(old.get("seconds") if isinstance(old.get("seconds"), dict) else {}), part: seconds}
    payload["command"] = "python benchmarks/bench_prune.py" + (" --quick" if quick else "")
    save_results("prune", payload)
    write_markdown(payload)


TARGET_COLS = ["model", "criterion", "scope", "finetune_epochs", "weight_zeros", "nonzero_params", "dense_acc",
               "pruned_acc", "drop_pts", "target_met"]
STRUCTURED_COLS = ["model", "variant", "channels", "accuracy", "drop_pts", "macs_frac", "params", "onnx_kb",
                   "ort_p50_ms_b64", "ort_img_per_s_b64", "speedup_b64"]


def write_markdown(p: dict) -> None:
    quick = "quick" in p["command"]
    lines = ["# Pruning benchmark (issue 3)", "",
             f"Command: `flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_prune.py"
             f"{' --quick' if quick else ''}` (seconds per part: {p['seconds']}; 2 CPU cores shared with other "
             "jobs, so timings are noisy, but compared models are always timed side by side). Fashion-MNIST test "
             "set (10,000 images); dense baselines are the cached `edgeslim train` models (10 epochs, seed 0).", ""]
    if "targets" in p:
        print_table(p["targets"], TARGET_COLS, ">= 95% zeros, gradual + fine-tuning")
        lines += ["## Unstructured, >= 95% of weights zero (target: drop <= 0.5 points)", "",
                  "Gradual cubic schedule (Zhu & Gupta: 10 steps over the first half of fine-tuning, AdamW, "
                  "one-cycle lr 2e-3), masks folded at the end; `weight_zeros` counts all conv/linear weights "
                  "(biases kept).", "", markdown_table(p["targets"], TARGET_COLS), ""]
    if "criteria" in p:
        cols = list(p["criteria"][0].keys())
        print_table(p["criteria"], cols, "magnitude vs taylor")
        lines += ["## Magnitude vs Taylor (|w * dL/dw| over 8 batches of 64)", "",
                  "One-shot global pruning; `oneshot_*` without fine-tuning, `ft1_*` after 1 epoch of fine-tuning "
                  "with the masks held.", "", markdown_table(p["criteria"], cols), ""]
    if "structured" in p:
        print_table(p["structured"], STRUCTURED_COLS, "structured, ORT batch 64 side by side")
        lines += ["## Structured (channels removed via torch-pruning's dependency graph, L1 importance)", "",
                  "Target: <= 35% of the MACs (counted with FlopCounterMode), drop <= 1 point, ORT throughput at "
                  "batch 64 >= 2x dense. `uniform`: the same channel ratio in every layer, found by bisection on "
                  "MACs. `ort-friendly` (seed-cnn): 75% / 50% of the two convs' filters removed, chosen for "
                  "ONNX Runtime's CPU kernels (the full-resolution first conv costs more time than its MACs say; "
                  "conv widths off the 8/16 channel blocking save little), the rest by bisection. "
                  "`uniform-gradual` (lenet-5): MACs removed in 4 cubic steps with fine-tuning between them. "
                  "All are fine-tuned (8 epochs seed-cnn, 30 lenet-5) with distillation from the dense "
                  "model (`edgeslim.distill.kd_loss_fn`, T=4, alpha=0.9) as `finetune_loss_fn`. "
                  "Dense and both pruned models are timed in "
                  "one interleaved `edgeslim.runtime.benchmark` run; `channels` lists output channels per "
                  "conv/linear layer.", "", markdown_table(p["structured"], STRUCTURED_COLS), ""]
    if "speed_bound" in p:
        cols = list(dict.fromkeys(k for r in p["speed_bound"] for k in r))
        print_table(p["speed_bound"], cols, "lenet-5 speed bound")
        lines += ["## How fast can a channel-pruned LeNet-5 be? (ORT, batch 64)", "",
                  "LeNet-5 with fixed output channels per layer (conv1/conv2/fc1/fc2; untrained, since time "
                  "does not depend on the weights) timed beside the dense model in one interleaved run, with "
                  "1 and 2 ONNX Runtime threads. Even one channel per layer is not 2x faster: ORT's NCHWc "
                  "convolution computes output channels in blocks of 8, so the full-resolution first conv "
                  "costs the same (about 0.12 ms of the dense 0.53 ms at batch 64, per ORT's profiler) for "
                  "1 to 8 filters, and reorders, pooling and per-call work are fixed costs on top. The 2x "
                  "target for LeNet-5 cannot be met by structured pruning on this runtime; seed-cnn, whose "
                  "later layers dominate its time, reaches it (table above).", "",
                  markdown_table(p["speed_bound"], cols), ""]
    if "efficientnet" in p:
        e = p["efficientnet"]
        rows = e if isinstance(e, list) else [e]
        lines += ["## EfficientNet-Lite0, structurally pruned to 75% of its MACs (no fine-tuning)", "",
                  "Top-1/top-5 on the 200 ImageNet sample photos through ONNX Runtime; there is no ImageNet "
                  "training set here, so accuracy is to be recovered by distillation. All models timed side by "
                  "side at batch 8 (few rounds: EfficientNet is slow on 2 shared cores).", "",
                  markdown_table(rows, list(dict.fromkeys(k for r in rows for k in r))), ""]
    if "sensitivity" in p:
        cols = list(p["sensitivity"][0].keys())
        lines += ["## Sensitivity analysis (seed-cnn)", "",
                  "Accuracy on 2,000 test images with one layer pruned by magnitude (the others dense); "
                  "`planned@95%`: per-layer sparsity allocated for a 95% global target (used by "
                  "`scope=\"sensitivity\"`).", "", "![sensitivity](prune.sensitivity.png)", "",
                  markdown_table(p["sensitivity"], cols), ""]
    atomic_write_text(RESULTS / "prune.md", "\n".join(lines))


if __name__ == "__main__":
    main()
