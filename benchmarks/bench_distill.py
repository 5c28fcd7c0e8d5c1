"""Knowledge distillation, measured.

1. Fashion-MNIST: seed-cnn at width 0.25 trained with KD from the cached dense seed-cnn
   vs the same student on labels only: same epochs, same TrainConfig (augmentation,
   schedule), same initialisation, 3 seeds each; mean and spread of test accuracy.
2. Unlabeled recovery: EfficientNet-Lite0 after 25% structured MAC pruning
   (``edgeslim.prune.prune_structured``), recovered by distillation from the unpruned
   model on 100 of the 200 ImageNet sample photos (teacher outputs only, random crops and
   flips); top-1 and agreement with the teacher on the 100 held-out photos and on all 200.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_distill.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import baseline, print_table, save_results  # noqa: E402


def kd_vs_labels(seeds: list[int], epochs: int, width: float, temperature: float, alpha: float) -> dict:
    from edgeslim.distill import DistillConfig, distill, summarize, width_student
    from edgeslim.evaluate import count_params, evaluate_split
    from edgeslim.train import fit
    from edgeslim.train.api import load_data_for

    teacher_ckpt, _ = baseline("seed-cnn")
    teacher = teacher_ckpt.model
    data = load_data_for("seed-cnn", "fashion-mnist")
    runs = []
    for seed in seeds:
        cfg = DistillConfig(epochs=epochs, temperature=temperature, alpha=alpha, seed=seed)
        for method in ("labels only", "KD"):
            torch.manual_seed(seed)
            student = width_student(teacher, width)  # identical initialisation in both arms
            t0 = time.perf_counter()
            if method == "KD":
                history = distill(student, teacher, data.train, cfg, progress=False)
            else:
                history = fit(student, data.train, cfg.train_config(), progress=False)
            acc = evaluate_split(student, data.test)["accuracy"]
            # last-epoch accuracy on the (augmented) training batches: shows whether the student underfits
            runs.append({"method": method, "seed": seed, "accuracy": acc, "seconds": time.perf_counter() - t0,
                         "train_accuracy_last_epoch": history[-1]["train_accuracy"]})
            print(f"  {method:12s} seed {seed}: {acc:.4f}", flush=True)
    rows = []
    for method in ("labels only", "KD"):
        s = summarize([r["accuracy"] for r in runs if r["method"] == method])
        rows.append({"student": f"seed-cnn width {width}", "method": method, "epochs": epochs,
                     "mean_accuracy": round(s["mean"], 4), "std": round(s["std"], 4), "min": round(s["min"], 4),
                     "max": round(s["max"], 4), "seeds": s["n"]})
    return {"rows": rows, "runs": runs, "teacher_accuracy": teacher_ckpt.meta["metrics"]["accuracy"],
            "teacher_params": count_params(teacher), "student_params": count_params(width_student(teacher, width)),
            "temperature": temperature, "alpha": alpha,
            "kd_gain_points": 100 * (rows[1]["mean_accuracy"] - rows[0]["mean_accuracy"])}


def sweep(configs: list[tuple[float, float]], epochs: int, width: float, seed: int = 0) -> dict:
    """One seed per (temperature, alpha), plus labels only: why KD does or does not help."""
    from edgeslim.distill import DistillConfig, distill, width_student
    from edgeslim.evaluate import evaluate_split
    from edgeslim.train import fit
    from edgeslim.train.api import load_data_for

    teacher = baseline("seed-cnn")[0].model
    data = load_data_for("seed-cnn", "fashion-mnist")
    rows = []
    for temperature, alpha in [(None, None), *configs]:
        cfg = DistillConfig(epochs=epochs, temperature=temperature or 1.0, alpha=alpha or 0.0, seed=seed)
        torch.manual_seed(seed)
        student = width_student(teacher, width)
        if temperature is None:
            fit(student, data.train, cfg.train_config(), progress=False)
        else:
            distill(student, teacher, data.train, cfg, progress=False)
        acc = evaluate_split(student, data.test)["accuracy"]
        rows.append({"method": "labels only" if temperature is None else "KD", "temperature": temperature,
                     "alpha": alpha, "epochs": epochs, "seed": seed, "accuracy": round(acc, 4)})
        print(f"  {rows[-1]}", flush=True)
    return {"rows": rows}


def unlabeled_recovery(epochs: int, lr: float, temperature: float, target_macs: float) -> dict:
    from edgeslim.data.datasets import Split
    from edgeslim.data.imagenet import load_imagenet_samples
    from edgeslim.distill import DistillConfig, distill, recalibrate_batchnorm
    from edgeslim.evaluate import agreement, predict_logits
    from edgeslim.models import create
    from edgeslim.prune import prune_structured

    samples, _ = load_imagenet_samples()
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0))
    train = Split(samples.x[order[:100]], samples.y[order[:100]])
    held = Split(samples.x[order[100:]], samples.y[order[100:]])
    teacher = create("efficientnet-lite0").eval()
    t_logits = {k: predict_logits(teacher, s.x, 25) for k, s in (("train", train), ("held", held))}

    def measure(model, stage: str) -> dict:
        row = {"stage": stage}
        correct, agree = 0, 0
        for key, split in (("train", train), ("held", held)):
            logits = predict_logits(model, split.x, 25)
            acc = float((logits.argmax(1) == split.y).float().mean())
            agr = agreement(logits, t_logits[key])
            row[f"top1_{key}"], row[f"agreement_{key}"] = round(acc, 3), round(agr, 3)
            correct += acc * len(split)
            agree += agr * len(split)
        row["top1_all200"], row["agreement_all200"] = round(correct / 200, 3), round(agree / 200, 3)
        return row

    rows = [measure(teacher, "EfficientNet-Lite0 (unpruned)")]
    t0 = time.perf_counter()
    res = prune_structured(teacher, (3, 224, 224), target_macs=target_macs)
    pruned = res.model
    rows.append(measure(pruned, f"pruned to {res.macs_fraction:.2f} of MACs"))
    recalibrate_batchnorm(pruned, train.x)
    rows.append(measure(pruned, "pruned + batch-norm recalibration on the 100 train photos"))
    cfg = DistillConfig(epochs=epochs, lr=lr, batch_size=20, temperature=temperature, unlabeled=True,
                        augmentation="crop_flip", weight_decay=0.0, recalibrate_bn=True)
    distill(pruned, teacher, train, cfg, progress=False)
    recover_s = time.perf_counter() - t0
    rows.append(measure(pruned, f"recovered ({epochs} epochs KD on 100 unlabeled photos)"))
    return {"rows": rows, "macs_before": res.macs_before, "macs_after": res.macs_after,
            "params_before": res.params_before, "params_after": res.params_after, "channel_ratio": res.ratio,
            "epochs": epochs, "lr": lr, "temperature": temperature, "seconds": recover_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["kd", "sweep", "unlabeled", "all"], default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--enet-epochs", type=int, default=15)
    ap.add_argument("--enet-lr", type=float, default=5e-4)
    ap.add_argument("--enet-temperature", type=float, default=2.0)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite distill.md from distill.json")
    args = ap.parse_args()
    if args.markdown_only:
        write_markdown(_previous_parts())
        return
    payload: dict = {}
    if args.part in ("kd", "all"):
        kd = kd_vs_labels(args.seeds, args.epochs, args.width, args.temperature, args.alpha)
        print_table(kd["rows"], title=f"Fashion-MNIST, teacher seed-cnn {kd['teacher_accuracy']:.4f} "
                                      f"({kd['teacher_params']:,} params), student {kd['student_params']:,} params")
        key = f"kd_vs_labels_e{args.epochs}_T{args.temperature:g}_a{args.alpha:g}"
        payload[key] = {**kd, "command": " ".join(sys.argv)}
    if args.part == "sweep":
        sw = sweep([(1.0, 0.5), (2.0, 0.5), (4.0, 0.5), (2.0, 0.9)], args.epochs, args.width)
        print_table(sw["rows"], title="KD settings, seed 0")
        payload["sweep"] = {**sw, "command": " ".join(sys.argv)}
    if args.part in ("unlabeled", "all"):
        un = unlabeled_recovery(args.enet_epochs, args.enet_lr, args.enet_temperature, 0.75)
        print_table(un["rows"], title=f"EfficientNet-Lite0, 25% structured MAC pruning, unlabeled recovery "
                                      f"({un['seconds']:.0f} s)")
        payload[f"unlabeled_recovery_e{args.enet_epochs}_lr{args.enet_lr:g}"] = {**un, "command": " ".join(sys.argv)}
    merged = {**_previous_parts(), **payload}
    save_results("distill", merged)
    write_markdown(merged)


def write_markdown(results: dict) -> Path:
    """benchmarks/results/distill.md from the measured results (one section per run)."""
    from common import RESULTS

    from edgeslim._io import atomic_write_text
    from edgeslim.report import markdown_table

    lines = ["# Knowledge distillation (measured)", ""]
    for key in sorted(k for k in results if k.startswith("kd_vs_labels")):
        r = results[key]
        lines += [f"## seed-cnn width 0.25 on Fashion-MNIST, {r['rows'][0]['epochs']} epochs: KD "
                  f"(T={r['temperature']:g}, alpha={r['alpha']:g}) vs labels only", "",
                  f"Command: `flock /tmp/edgeslim-cpu.lock .venv/bin/python {r.get('command', '')}`", "",
                  f"Teacher: cached seed-cnn, {r['teacher_accuracy']:.4f} test accuracy, {r['teacher_params']:,} "
                  f"params; student {r['student_params']:,} params. Same TrainConfig, same initialisation and data "
                  f"order per seed in both arms. KD gain: {r['kd_gain_points']:+.2f} points (mean of 3 seeds).", "",
                  markdown_table(r["rows"]), "",
                  markdown_table(r["runs"], ["method", "seed", "accuracy", "train_accuracy_last_epoch", "seconds"]),
                  ""]
    kd_keys = sorted((k for k in results if k.startswith("kd_vs_labels")),
                     key=lambda k: results[k]["rows"][0]["epochs"])
    if kd_keys:
        lines += ["## Findings: why KD does not help this student", ""]
        for k in kd_keys:
            r = results[k]
            runs = [x for x in r["runs"] if "train_accuracy_last_epoch" in x]
            train_acc = sum(x["train_accuracy_last_epoch"] for x in runs) / max(len(runs), 1)
            test_acc = sum(x["accuracy"] for x in runs) / max(len(runs), 1)
            gap = f"; last-epoch training accuracy {train_acc:.4f} vs test {test_acc:.4f}" if runs else ""
            lines.append(f"- {r['rows'][0]['epochs']} epochs, T={r['temperature']:g}, alpha={r['alpha']:g}: KD "
                         f"{r['kd_gain_points']:+.2f} points vs labels only{gap}.")
        lines += ["- The width-0.25 student (17k parameters, 4 and 8 conv channels) does not overfit: its training "
                  "accuracy is no higher than its test accuracy, so it is capacity-bound. Soft targets mainly act "
                  "as a regulariser and carry 'dark knowledge' a student must have room to absorb; here neither "
                  "helps. Lower temperatures hurt least (one-seed sweep below), matching the capacity-gap "
                  "observation of Mirzadeh et al. (2020). (Training accuracy is measured on the augmented "
                  "training batches.) Not measured here: KD vs plain fine-tuning as the pruning-recovery loss "
                  "used in artifact.md.", ""]
    if "sweep" in results:
        r = results["sweep"]
        lines += ["## KD settings (one seed)", "", f"Command: `{r.get('command', '')}`", "",
                  markdown_table(r["rows"]), ""]
    if any(k.startswith("unlabeled_recovery") for k in results):
        lines += ["## Findings: EfficientNet-Lite0 from 100 unlabeled photos", "",
                  "- Uniform 14% channel pruning (25% fewer MACs) collapses top-1 to ~0.5%: the pruned layers' "
                  "batch-norm statistics no longer match, and EfficientNet-Lite's momentum 0.01 would need "
                  "thousands of steps to forget them.",
                  "- Re-estimating the batch-norm statistics on the 100 training photos (`recalibrate_batchnorm`, "
                  "`DistillConfig(recalibrate_bn=True)`) is what recovers the model: ~45% top-1 on the 100 "
                  "held-out photos (teacher: 92%).",
                  "- KD on top of that fits the 100 training photos (15 epochs, lr 5e-4: 88% agreement on them) "
                  "but lowers held-out agreement (46% -> 38%): 100 images are too few. A gentle run (4 epochs, "
                  "lr 1e-4) keeps held-out at the recalibrated level (45%). Honest summary: from 100 unlabeled "
                  "photos we recover about half of the teacher's held-out accuracy, by recalibration, not by "
                  "KD; real recovery needs more unlabeled images.", ""]
    for key in sorted((k for k in results if k.startswith("unlabeled_recovery")), reverse=True):
        r = results[key]
        bn = ", no batch-norm recalibration" if key.endswith("first_try") else \
            ", batch-norm statistics re-estimated before and after"
        lines += [f"## EfficientNet-Lite0: 25% structured MAC pruning, recovery from unlabeled photos"
                  f"{' (first try)' if key.endswith('first_try') else ''}: {r['epochs']} epochs, lr {r['lr']:g}", "",
                  f"Command: `flock /tmp/edgeslim-cpu.lock .venv/bin/python {r.get('command', '')}`", "",
                  f"MACs {r['macs_before']:,} -> {r['macs_after']:,}, params {r['params_before']:,} -> "
                  f"{r['params_after']:,} (channel ratio {r['channel_ratio']:.3f}). Recovery: {r['epochs']} epochs "
                  f"of KD (T={r['temperature']:g}, lr {r['lr']:g}, teacher outputs only, random resized crops and "
                  f"flips{bn}) on 100 of the 200 ImageNet sample photos ('train'); 'held' = the other 100, never "
                  f"trained on. top-1 is against the true ImageNet labels; agreement is with the unpruned "
                  f"teacher. {r['seconds']:.0f} s on 2 CPU cores.", "",
                  markdown_table(r["rows"]), ""]
    return atomic_write_text(RESULTS / "distill.md", "\n".join(lines) + "\n")


def _previous_parts() -> dict:
    """Results of the other part from an earlier run, so the parts can be run one at a time."""
    import json

    from common import RESULTS

    path = RESULTS / "distill.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    return {k: v for k, v in old.items() if k.startswith(("kd_vs_labels", "sweep", "unlabeled_recovery"))}


if __name__ == "__main__":
    main()
