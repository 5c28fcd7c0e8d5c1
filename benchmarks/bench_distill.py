"""Knowledge distillation, measured.

1. Fashion-MNIST: a small student (default LeNet-5, 62k params, no augmentation, 30 epochs)
   trained with KD from a stronger teacher (seed-cnn at width 2, 93.3%) vs the same student
   on labels only and with label smoothing 0.1: same epochs, TrainConfig, initialisation and
   data order, 5 seeds each; mean, spread and per-seed gain of test accuracy. ``--student``,
   ``--teacher``, ``--augmentation``, ``--epochs`` reproduce the other recorded runs.
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


TEACHERS = {
    "seed-cnn": "the cached seed-cnn baseline (10 epochs, flips + shifts)",
    "seed-cnn-w2": "seed-cnn at width 2 (10 epochs, no augmentation)",
}
ARMS = ("labels only", "KD", "label smoothing 0.1")
# the --augmentation names as Distill's finetune.augment
AUGMENT = {"none": False, "shift_flip": True, "crop_flip": "crop_flip"}


def load_teacher(name: str):
    """A teacher of TEACHERS, trained once and cached like the baselines."""
    from common import CACHE

    from edgeslim.models import load_checkpoint
    from edgeslim.train import TrainConfig, train

    if name == "seed-cnn":
        return baseline("seed-cnn")[0]
    folder = CACHE / "seed-cnn-w2.0-fashion-mnist-e10-s0-noaug"
    if not (folder / "model.json").exists():
        train("seed-cnn", TrainConfig(epochs=10, augment=False, hflip=False), "fashion-mnist", out=folder,
              progress=False, model_kwargs={"width": 2.0})
    return load_checkpoint(folder)


def make_student(spec: str):
    """``name`` or ``name:width`` of a registered model, e.g. ``seed-cnn:0.25``."""
    from edgeslim.models import create

    name, _, width = spec.partition(":")
    return create(name, **({"width": float(width)} if width else {}))


def kd_vs_labels(student: str, teacher: str, seeds: list[int], epochs: int, temperature: float, alpha: float,
                 augmentation: str, arms: tuple[str, ...] = ARMS[:2]) -> dict:
    """Each arm trains the same student (same initialisation and data order per seed) for the
    same epochs with the same TrainConfig; only the loss differs."""
    from edgeslim.distill import Distill, distill
    from edgeslim.evaluate import count_params, evaluate_split
    from edgeslim.train import fit
    from edgeslim.train.api import load_data_for

    teacher_ckpt = load_teacher(teacher)
    data = load_data_for("seed-cnn", "fashion-mnist")
    teacher_train_acc = evaluate_split(teacher_ckpt.model, data.train.subset(10000))["accuracy"]
    runs = []
    for seed in seeds:
        cfg = Distill(finetune={"epochs": epochs, "temperature": temperature, "alpha": alpha,
                                "augment": AUGMENT[augmentation]}, seed=seed)
        for method in arms:
            torch.manual_seed(seed)
            model = make_student(student)
            t0 = time.perf_counter()
            if method == "KD":
                res = distill(model, cfg, data.train, teacher=teacher_ckpt.model, progress=False)
                model, history = res.model, res.summary["history"]
            else:
                smoothing = 0.1 if method == "label smoothing 0.1" else 0.0
                history = fit(model, data.train, cfg.train_config().model_copy(update={"label_smoothing": smoothing}),
                              progress=False)
            acc = evaluate_split(model, data.test)["accuracy"]
            # last-epoch accuracy on the training batches: over- or underfitting
            runs.append({"method": method, "seed": seed, "accuracy": round(acc, 4),
                         "train_accuracy_last_epoch": round(history[-1]["train_accuracy"], 4),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(f"  {method:20s} seed {seed}: {acc:.4f}", flush=True)
    rows = summarize_arms(runs, student, epochs)
    kd = next(r for r in rows if r["method"] == "KD")
    return {"student": student, "teacher": teacher, "teacher_description": TEACHERS[teacher],
            "augmentation": augmentation, "rows": rows, "runs": runs,
            "teacher_accuracy": teacher_ckpt.meta["metrics"]["accuracy"], "teacher_train_accuracy": teacher_train_acc,
            "teacher_params": count_params(teacher_ckpt.model), "student_params": count_params(make_student(student)),
            "temperature": temperature, "alpha": alpha, "kd_gain_points": kd["gain_pts"]}


def sweep(configs: list[tuple[float, float]], epochs: int, student: str, teacher: str, augmentation: str,
          seed: int = 0) -> dict:
    """One seed per (temperature, alpha), plus labels only: which KD settings matter."""
    from edgeslim.distill import Distill, distill
    from edgeslim.evaluate import evaluate_split
    from edgeslim.train import fit
    from edgeslim.train.api import load_data_for

    teacher_model = load_teacher(teacher).model
    data = load_data_for("seed-cnn", "fashion-mnist")
    rows = []
    for temperature, alpha in [(None, None), *configs]:
        cfg = Distill(finetune={"epochs": epochs, "temperature": temperature or 1.0, "alpha": alpha or 0.0,
                                "augment": AUGMENT[augmentation]}, seed=seed)
        torch.manual_seed(seed)
        model = make_student(student)
        if temperature is None:
            fit(model, data.train, cfg.train_config(), progress=False)
        else:
            model = distill(model, cfg, data.train, teacher=teacher_model, progress=False).model
        acc = evaluate_split(model, data.test)["accuracy"]
        rows.append({"student": student, "teacher": teacher, "method": "labels only" if temperature is None else "KD",
                     "temperature": temperature, "alpha": alpha, "epochs": epochs, "seed": seed,
                     "accuracy": round(acc, 4)})
        print(f"  {rows[-1]}", flush=True)
    return {"rows": rows}


def unlabeled_recovery(epochs: int, lr: float, temperature: float, target_macs: float) -> dict:
    from edgeslim.data.datasets import Split
    from edgeslim.data.imagenet import load_imagenet_samples
    from edgeslim.distill import Distill, distill, recalibrate_batchnorm
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
    cfg = Distill(finetune={"epochs": epochs, "lr": lr, "batch_size": 20, "temperature": temperature,
                            "augment": "crop_flip"}, unlabeled=True, weight_decay=0.0, recalibrate_bn=True)
    pruned = distill(pruned, cfg, train, teacher=teacher, progress=False).model
    recover_s = time.perf_counter() - t0
    rows.append(measure(pruned, f"recovered ({epochs} epochs KD on 100 unlabeled photos)"))
    return {"rows": rows, "macs_before": res.macs_before, "macs_after": res.macs_after,
            "params_before": res.params_before, "params_after": res.params_after, "channel_ratio": res.ratio,
            "epochs": epochs, "lr": lr, "temperature": temperature, "seconds": recover_s}


def summarize_arms(runs: list[dict], student: str, epochs: int) -> list[dict]:
    """One row per method: accuracy statistics and the gain over labels only, paired by seed."""
    from edgeslim.distill import summarize

    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        s = summarize([r["accuracy"] for r in mine])
        gains = [100 * (r["accuracy"] - base["accuracy"]) for r in mine
                 for base in runs if base["method"] == "labels only" and base["seed"] == r["seed"]]
        row = {"student": student, "method": method, "epochs": epochs, "mean_accuracy": round(s["mean"], 4),
               "std": round(s["std"], 4), "min": round(s["min"], 4), "max": round(s["max"], 4),
               "gain_pts": round(sum(gains) / len(gains), 2),
               "seeds_better": f"{sum(g > 0 for g in gains)}/{len(gains)}", "seeds": s["n"]}
        if all("train_accuracy_last_epoch" in r for r in mine):
            row["mean_train_accuracy"] = round(sum(r["train_accuracy_last_epoch"] for r in mine) / len(mine), 4)
        rows.append(row)
    return rows


def kd_key(r: dict) -> str:
    return (f"kd_vs_labels_{r['student']}_{r['teacher']}_{r['augmentation']}_e{r['rows'][0]['epochs']}"
            f"_T{r['temperature']:g}_a{r['alpha']:g}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["kd", "sweep", "unlabeled", "all"], default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--student", default="lenet-5", help="registered model, optionally :width (seed-cnn:0.25)")
    ap.add_argument("--teacher", choices=list(TEACHERS), default="seed-cnn-w2")
    ap.add_argument("--augmentation", choices=["none", "shift_flip"], default="none")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--label-smoothing-arm", action=argparse.BooleanOptionalAction, default=True,
                    help="also train a label-smoothing (0.1) arm: is KD more than a regulariser?")
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
        arms = ARMS if args.label_smoothing_arm else ARMS[:2]
        kd = kd_vs_labels(args.student, args.teacher, args.seeds, args.epochs, args.temperature, args.alpha,
                          args.augmentation, arms)
        print_table(kd["rows"], title=f"Fashion-MNIST, teacher {args.teacher} {kd['teacher_accuracy']:.4f} "
                                      f"({kd['teacher_params']:,} params), student {kd['student_params']:,} params")
        payload[kd_key(kd)] = {**kd, "command": " ".join(sys.argv)}
    if args.part == "sweep":
        sw = sweep([(1.0, 0.5), (2.0, 0.5), (4.0, 0.5), (2.0, 0.9)], args.epochs, args.student, args.teacher,
                   args.augmentation)
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


def _summary_row(r: dict) -> dict:
    labels = next(x for x in r["rows"] if x["method"] == "labels only")
    kd = next(x for x in r["rows"] if x["method"] == "KD")
    smooth = next((x for x in r["rows"] if x["method"] == "label smoothing 0.1"), None)
    return {"student": r["student"], "teacher": r["teacher"], "teacher_test": round(r["teacher_accuracy"], 4),
            "teacher_train": round(r["teacher_train_accuracy"], 4) if "teacher_train_accuracy" in r else "",
            "augmentation": r["augmentation"], "epochs": labels["epochs"], "T": r["temperature"], "alpha": r["alpha"],
            "labels_only": f"{labels['mean_accuracy']:.4f} ± {labels['std']:.4f}",
            "KD": f"{kd['mean_accuracy']:.4f} ± {kd['std']:.4f}", "gain_pts": round(r["kd_gain_points"], 2),
            "seeds_better": kd.get("seeds_better"), "seeds": kd["seeds"],
            "label_smoothing_gain_pts": smooth["gain_pts"] if smooth else "",
            "train_acc_labels_vs_KD": (f"{labels['mean_train_accuracy']:.3f} / {kd['mean_train_accuracy']:.3f}"
                                       if "mean_train_accuracy" in labels else "")}


def findings(runs: list[dict]) -> list[str]:
    """What the measured runs say about when KD helps: gains, and whether the labels-only
    student overfits (training accuracy well above test accuracy) or is capacity-bound."""
    lines = ["## Findings: when KD helps", ""]
    for r in runs:
        arms = {x["method"]: x for x in r["rows"]}
        labels, kd, smooth = arms["labels only"], arms["KD"], arms.get("label smoothing 0.1")
        line = (f"- {r['student']} from {r['teacher']} ({r['augmentation']}, {labels['epochs']} epochs, "
                f"T={r['temperature']:g}, alpha={r['alpha']:g}): KD {kd['gain_pts']:+.2f} points, better on "
                f"{kd['seeds_better']} seeds")
        if smooth:
            line += f"; label smoothing {smooth['gain_pts']:+.2f}"
        if "mean_train_accuracy" in labels:
            fit = "overfits" if labels["mean_train_accuracy"] - labels["mean_accuracy"] > 0.02 else "does not overfit"
            line += (f". Labels only, the student {fit}: {labels['mean_train_accuracy']:.1%} on its training "
                     f"batches vs {labels['mean_accuracy']:.1%} test")
        lines.append(line + ".")
    return lines + KD_EXPLANATION + [""]


# why, in words; the numbers it rests on are in the lines findings() writes above it
KD_EXPLANATION = [
    "- KD helps the student that can fit its training set: LeNet-5 without augmentation memorises the "
    "labels (about 99% on its training batches, 91% test); the teacher's soft targets keep it from doing so "
    "(its training accuracy stays about 3 points lower) and it generalises better on every seed.",
    "- It is more than a regulariser: label smoothing, which also softens the targets but spreads the mass "
    "uniformly, recovers about half of KD's gain on the same seeds. The other half is, most plausibly, what the "
    "teacher knows about which wrong classes are close (shirt / T-shirt / pullover / coat), which uniform "
    "smoothing cannot carry; these runs do not isolate it further.",
    "- KD does not help the width-0.25 seed-cnn (17k parameters, 4 and 8 conv channels) trained with flips and "
    "shifts: it does not overfit (training accuracy is no higher than test accuracy), so it is capacity-bound "
    "and soft targets have nothing to correct; a stronger teacher (93.3%) did not change that. For such a "
    "student, widen it (or train longer) rather than expect distillation to help.",
]


def write_markdown(results: dict) -> Path:
    """benchmarks/results/distill.md from the measured results (one section per run)."""
    from common import RESULTS

    from edgeslim._io import atomic_write_text
    from edgeslim.report import markdown_table

    lines = ["# Knowledge distillation (measured)", ""]
    kd_keys = sorted((k for k in results if k.startswith("kd_vs_labels")),
                     key=lambda k: (results[k]["student"], results[k]["teacher"], results[k]["augmentation"],
                                    results[k]["rows"][0]["epochs"]))
    if kd_keys:
        lines += ["## KD vs labels only, Fashion-MNIST: summary", "",
                  "Each run trains the same student twice (or three times) per seed: same initialisation, data "
                  "order, epochs and TrainConfig (AdamW, one-cycle lr 2e-3, batch 128); only the loss differs. "
                  "`gain_pts`: mean over seeds of (KD - labels only) test accuracy, paired by seed; "
                  "`teacher_train`: teacher accuracy on 10,000 training images (how close to one-hot its soft "
                  "targets are on the data the student sees).", "",
                  markdown_table([_summary_row(results[k]) for k in kd_keys]), ""]
        lines += findings([results[k] for k in kd_keys])
    for key in kd_keys:
        r = results[key]
        lines += [f"## {r['student']} student, {r['teacher']} teacher, {r['rows'][0]['epochs']} epochs, "
                  f"augmentation {r['augmentation']}: KD (T={r['temperature']:g}, alpha={r['alpha']:g}) vs "
                  "labels only", "",
                  f"Command: `flock /tmp/edgeslim-cpu.lock .venv/bin/python {r.get('command', '')}`", "",
                  f"Teacher: {r.get('teacher_description', r['teacher'])}, {r['teacher_accuracy']:.4f} test accuracy, "
                  f"{r['teacher_params']:,} params; student {r['student_params']:,} params.", "",
                  markdown_table(r["rows"]), "",
                  markdown_table(r["runs"], ["method", "seed", "accuracy", "train_accuracy_last_epoch", "seconds"]),
                  ""]
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
                  "`Distill(recalibrate_bn=True)`) is what recovers the model: ~45% top-1 on the 100 "
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
