"""Does a stronger teacher make KD help? seed-cnn width 0.25 students, KD from a seed-cnn width 2.0
teacher (trained here: 10 epochs, no augmentation) vs labels only; same DistillConfig (T=4, alpha=0.9,
10 epochs), same initialisation per seed in both arms.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_kd_teacher.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, RESULTS, print_table, save_results  # noqa: E402


def main() -> None:
    from edgeslim.distill import DistillConfig, distill, summarize
    from edgeslim.evaluate import evaluate_split
    from edgeslim.models import create, load_checkpoint
    from edgeslim.report import markdown_table
    from edgeslim.train import TrainConfig, fit, train_model
    from edgeslim.train.api import load_data_for

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--teacher-width", type=float, default=2.0)
    args = ap.parse_args()
    data = load_data_for("seed-cnn", "fashion-mnist")
    folder = CACHE / f"seed-cnn-w{args.teacher_width}-fashion-mnist-e10-s0-noaug"
    if not (folder / "model.json").exists():
        train_model("seed-cnn", data, TrainConfig(epochs=10, augment=False, hflip=False), out=folder,
                    progress=False, model_kwargs={"width": args.teacher_width})
    teacher = load_checkpoint(folder).model
    teacher_acc = evaluate_split(teacher, data.test)["accuracy"]
    runs = []
    for seed in args.seeds:
        cfg = DistillConfig(epochs=10, temperature=4, alpha=0.9, seed=seed)
        for method in ("labels only", "KD"):
            torch.manual_seed(seed)
            student = create("seed-cnn", width=0.25)
            t0 = time.perf_counter()
            if method == "KD":
                distill(student, teacher, data.train, cfg, progress=False)
            else:
                fit(student, data.train, cfg.train_config(), progress=False)
            runs.append({"method": method, "seed": seed, "accuracy": evaluate_split(student, data.test)["accuracy"],
                         "seconds": time.perf_counter() - t0})
            print(runs[-1], flush=True)
    rows = [{"method": m, **{k: round(v, 4) for k, v in summarize([r["accuracy"] for r in runs
                                                                  if r["method"] == m]).items()}}
            for m in ("labels only", "KD")]
    print_table(rows, title=f"teacher width {args.teacher_width}: {teacher_acc:.4f}")
    save_results("distill_teacher", {"teacher_width": args.teacher_width, "teacher_accuracy": teacher_acc,
                                     "rows": rows, "runs": runs})
    md = (f"# KD with a stronger teacher\n\nCommand: `flock /tmp/edgeslim-cpu.lock .venv/bin/python "
          f"benchmarks/bench_kd_teacher.py --seeds {' '.join(map(str, args.seeds))}`\n\nTeacher: seed-cnn width "
          f"{args.teacher_width}, {teacher_acc:.4f} test accuracy. Student: seed-cnn width 0.25, 10 epochs, "
          f"T=4, alpha=0.9.\n\n" + markdown_table(rows) + "\n")
    (RESULTS / "distill_teacher.md").write_text(md)


if __name__ == "__main__":
    main()
