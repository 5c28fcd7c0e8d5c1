"""Runtimes side by side: ONNX Runtime, OpenVINO, LiteRT and ExecuTorch, float and int8.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_runtimes.py
    .venv/bin/python benchmarks/bench_runtimes.py --quick --out /tmp/runtimes.json   # a smoke run

For seed-cnn (Fashion-MNIST), its structured-pruned version (`edgeslim prune
BASELINE --method structured --target-macs 0.35 --finetune-epochs 8`) and
EfficientNet-Lite0 (the 200 ImageNet sample photos): every runtime whose extra is installed x
(float, int8) x batch 1 / 8, all files of one model timed in one interleaved run
(``edgeslim.runtime.benchmark``, the same inputs, 2 threads): p50 ms, ratio to ONNX Runtime
float, file size, accuracy, and agreement (float: max |diff| vs PyTorch; int8: top-1
agreement with the ONNX Runtime int8 model). int8: our static QDQ ONNX (ONNX Runtime, and
converted to OpenVINO IR), ai-edge-quantizer on LiteRT's float file, XNNPACK's PT2E quantizer
for ExecuTorch; all calibrate on the same images. Writes benchmarks/results/runtimes.json (or --out). ``--quick``: seed-cnn trained
for one epoch on digits, a few rounds: checks the script, measures nothing worth keeping.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, baseline, machine, print_table  # noqa: E402

from edgeslim._io import write_json  # noqa: E402

from edgeslim.errors import EdgeslimError  # noqa: E402
from edgeslim.export import export_onnx, onnx_metadata  # noqa: E402
from edgeslim.runtime.formats import model_bytes  # noqa: E402
from edgeslim.models.checkpoint import Checkpoint, architecture_of  # noqa: E402
from edgeslim.runtime import benchmark, load_model  # noqa: E402

THREADS = 2
BATCHES = (1, 8)
RUNTIMES = ("onnxruntime", "openvino", "litert", "executorch")
logging.disable(logging.WARNING)


def seed_cnn(quick: bool):
    from edgeslim.train.api import load_data_for

    if quick:
        from edgeslim.data import load_digits
        from edgeslim.models import load_checkpoint
        from edgeslim.train import TrainConfig, train

        data = load_digits(pad_to=32)
        res = train("seed-cnn", TrainConfig(epochs=1, batch_size=64, augment=False, hflip=False), data,
                    out=Path(tempfile.mkdtemp(prefix="bench-rt-")) / "seed-cnn", progress=False)
        ckpt = load_checkpoint(res.artifact, model=res.model)
        return ckpt, data.train.subset(256).x.numpy(), data.test.x.numpy(), data.test.y.numpy()
    ckpt, _ = baseline("seed-cnn", "fashion-mnist")
    data = load_data_for("seed-cnn", "fashion-mnist")
    return ckpt, data.train.subset(256).x.numpy(), data.test.x.numpy(), data.test.y.numpy()


def seed_cnn_pruned(quick: bool):
    import edgeslim
    from edgeslim.data.datasets import Split
    import torch

    ckpt, calib, x, y = seed_cnn(quick)
    train = Split(torch.from_numpy(calib), torch.zeros(len(calib)).long())
    if quick:
        from edgeslim.prune import prune_structured

        model = prune_structured(ckpt.model, (1, 32, 32), target_macs=0.35).model
    else:
        from edgeslim.train.api import load_data_for

        train = load_data_for("seed-cnn", "fashion-mnist")
        # what `edgeslim prune BASELINE --method structured --target-macs 0.35 --finetune-epochs 8` does
        config = edgeslim.Structured(target_macs=0.35, finetune={"epochs": 8})
        model = edgeslim.prune(ckpt, config, data=train).model
    return Checkpoint(model.eval(), {**ckpt.meta, "architecture": architecture_of(model)}), calib, x, y


def efficientnet_lite0(quick: bool):
    from edgeslim.data.imagenet import IMAGENET_PREPROCESS, load_imagenet_samples
    from edgeslim.models import create

    split, _ = load_imagenet_samples()
    order = np.random.default_rng(0).permutation(len(split))
    x, y = split.x.numpy(), split.y.numpy()
    model = create("efficientnet-lite0").eval()
    meta = {"input_shape": [3, 224, 224], "preprocess": IMAGENET_PREPROCESS.to_dict(),
            "architecture": architecture_of(model)}
    return Checkpoint(model, meta), x[order[:100]], x, y  # calibrate on 100, measure on all 200


MODELS = {"seed-cnn": seed_cnn, "seed-cnn-pruned": seed_cnn_pruned, "efficientnet-lite0": efficientnet_lite0}


def export_all(ckpt: Checkpoint, calib: np.ndarray, work: Path) -> dict[tuple[str, str], Path | str]:
    """(runtime, precision) -> file, or the reason it could not be made."""
    from edgeslim.quantize import StaticInt8, quantize

    shape, meta = tuple(ckpt.meta["input_shape"]), onnx_metadata(ckpt)
    files: dict[tuple[str, str], Path | str] = {}
    files[("onnxruntime", "float")] = export_onnx(ckpt.model, work / "float.onnx", shape, meta)
    files[("onnxruntime", "int8")] = quantize(ckpt.model, StaticInt8(sensitivity=False, benchmark=False,
                                                                    samples=len(calib)),
                                              calib, out=work / "q", input_shape=shape, metadata=meta).artifact
    for precision in ("float", "int8"):
        q = calib if precision == "int8" else None
        steps = {"openvino": lambda out: _openvino(files[("onnxruntime", precision)], out, meta),
                 "litert": lambda out: _tflite(ckpt.model, out, shape, meta, q),
                 "executorch": lambda out: _executorch(ckpt.model, out, shape, meta, q)}
        for runtime, make in steps.items():
            suffix = {"openvino": ".xml", "litert": ".tflite", "executorch": ".pte"}[runtime]
            try:
                t0 = time.perf_counter()
                files[(runtime, precision)] = make(work / f"{precision}{suffix}")
                print(f"  {runtime} {precision}: exported in {time.perf_counter() - t0:.0f} s", flush=True)
            except (EdgeslimError, RuntimeError) as e:
                files[(runtime, precision)] = f"{type(e).__name__}: {e}"
                print(f"  {runtime} {precision}: skipped ({e})", flush=True)
    return files


def _openvino(onnx_path, out, meta):
    from edgeslim.export.openvino_export import export_openvino

    return export_openvino(onnx_path, out, meta)


def _tflite(model, out, shape, meta, calib):
    from edgeslim.export.tflite_export import export_tflite

    return export_tflite(model, out, shape, meta, calib)


def _executorch(model, out, shape, meta, calib):
    from edgeslim.export.executorch_export import export_executorch

    return export_executorch(model, out, shape, meta, calib)


def measure(name: str, quick: bool, rounds: int, work: Path) -> dict:
    import torch

    print(f"{name}:", flush=True)
    ckpt, calib, x, y = MODELS[name](quick)
    files = export_all(ckpt, calib, work / name)
    with torch.no_grad():
        torch_logits = np.concatenate([ckpt.model(torch.from_numpy(c)).numpy() for c in np.array_split(x, 20)])
    made = {k: v for k, v in files.items() if isinstance(v, Path)}
    logits = {k: load_model(p, threads=THREADS, require_signature=False).predict(x) for k, p in made.items()}
    ort_int8 = logits[("onnxruntime", "int8")]
    rows = []
    for (runtime, precision), path in files.items():
        row = {"model": name, "runtime": runtime, "precision": precision}
        if not isinstance(path, Path):
            rows.append({**row, "skipped": path})
            continue
        got = logits[(runtime, precision)]
        row.update(file_kb=round(model_bytes(path) / 1024, 1), accuracy=float((got.argmax(1) == y).mean()),
                   max_abs_diff_vs_torch=float(np.abs(got - torch_logits).max()),
                   top1_agreement_vs_ort_int8=float((got.argmax(1) == ort_int8.argmax(1)).mean()))
        rows.append(row)
    order = [k for k in files if k in made]
    for batch in BATCHES:
        res = benchmark([made[k] for k in order], batch=batch, threads=THREADS, rounds=rounds,
                        require_signature=False)
        by_key = dict(zip(order, res))
        base = by_key[("onnxruntime", "float")]["p50_ms"]
        for row in rows:
            r = by_key.get((row["runtime"], row["precision"]))
            if r:
                row[f"p50_ms_b{batch}"] = round(r["p50_ms"], 3)
                row[f"vs_ort_float_b{batch}"] = round(base / r["p50_ms"], 2)
                row[f"init_ms_b{batch}"] = round(r["session_init_ms"], 1)
    return {"rows": rows, "fastest": fastest(rows)}


def fastest(rows: list[dict]) -> dict:
    """Per batch, the fastest (runtime, precision) among those that agree (float: max |diff| vs
    torch < 1e-4; int8: top-1 agreement with ONNX Runtime int8 >= 99%)."""
    out = {}
    for batch in BATCHES:
        ok = [r for r in rows if f"p50_ms_b{batch}" in r and (
            r["max_abs_diff_vs_torch"] < 1e-4 if r["precision"] == "float" else r["top1_agreement_vs_ort_int8"] >= 0.99)]
        if ok:
            best = min(ok, key=lambda r: r[f"p50_ms_b{batch}"])
            out[f"b{batch}"] = {"runtime": best["runtime"], "precision": best["precision"],
                                "p50_ms": best[f"p50_ms_b{batch}"], "vs_ort_float": best[f"vs_ort_float_b{batch}"]}
    return out


COMMAND = "flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_runtimes.py"


def markdown(results: dict) -> str:
    """The results as BENCHMARKS.md shows them: one table per model, then which runtime wins."""
    lines = ["# Runtimes: ONNX Runtime, OpenVINO, LiteRT and ExecuTorch side by side", "",
             f"`{COMMAND}` ({results['threads']} threads; every file of one model timed in one interleaved "
             f"`edgeslim.runtime.benchmark` run per batch size, {results['rounds']} rounds; load average "
             f"{results['load_average'][0]:.2f} before, {results['load_average_after'][0]:.2f} after). "
             "seed-cnn is `edgeslim train --model seed-cnn --epochs 10` (defaults), evaluated on the "
             "Fashion-MNIST test set; seed-cnn-pruned is `edgeslim prune BASELINE --method structured "
             "--target-macs 0.35 --finetune-epochs 8`; EfficientNet-Lite0 (pretrained) on the 200 ImageNet "
             "sample photos (calibrated on 100 of them). Float agreement: max |logit diff| against PyTorch; "
             "int8 agreement: top-1 against our ONNX Runtime int8 (static QDQ) model. The same export "
             "commands: `edgeslim export M --format onnx|openvino|tflite|executorch [--int8]`.", ""]
    for name, res in results["models"].items():
        lines += [f"## {name}", "", "| runtime | precision | file kB | accuracy | max abs diff vs torch | "
                  "top-1 vs ORT int8 | p50 ms b1 | x ORT float b1 | p50 ms b8 | x ORT float b8 |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['runtime']} | {r['precision']} | skipped: {r['skipped']} |||||||||")
                continue
            lines.append(f"| {r['runtime']} | {r['precision']} | {r['file_kb']:,.1f} | {r['accuracy']:.4f} | "
                         f"{r['max_abs_diff_vs_torch']:.2e} | {r['top1_agreement_vs_ort_int8']:.4f} | "
                         f"{r['p50_ms_b1']:.3f} | {r['vs_ort_float_b1']:.2f}x | {r['p50_ms_b8']:.3f} | "
                         f"{r['vs_ort_float_b8']:.2f}x |")
        wins = "; ".join(f"batch {b[1:]}: {w['runtime']} {w['precision']}, {w['p50_ms']:.3f} ms, "
                         f"{w['vs_ort_float']:.2f}x ONNX Runtime float" for b, w in res["fastest"].items())
        lines += ["", f"Fastest that agrees (float within 1e-4 of PyTorch, int8 >= 99% top-1 with ORT int8): {wins}.",
                  ""]
    return "\n".join(lines)


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--quick", action="store_true", help="a tiny digits model, few rounds: a smoke run")
    ap.add_argument("--rounds", type=int, default=None, help="benchmark rounds (default 30, --quick 3)")
    ap.add_argument("--out", type=Path, default=RESULTS / "runtimes.json")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite runtimes.md from --out, measure nothing")
    args = ap.parse_args()
    md_path = args.out.with_suffix(".md")
    if args.markdown_only:
        md_path.write_text(markdown(json.loads(args.out.read_text())))
        return print(f"wrote {md_path}")
    rounds = args.rounds or (3 if args.quick else 30)
    results = {"threads": THREADS, "batches": list(BATCHES), "rounds": rounds, "quick": args.quick,
               "load_average": list(os.getloadavg()), "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        for name in args.models.split(","):
            results["models"][name] = measure(name, args.quick, rounds, Path(tmp))
            cols = ["runtime", "precision", "file_kb", "accuracy", "max_abs_diff_vs_torch",
                    "top1_agreement_vs_ort_int8", *[f"{k}_b{b}" for b in BATCHES for k in ("p50_ms", "vs_ort_float")],
                    "skipped"]
            print_table(results["models"][name]["rows"], cols, title=f"{name} ({THREADS} threads)")
            print(f"fastest that agrees: {results['models'][name]['fastest']}", flush=True)
    results["load_average_after"] = list(os.getloadavg())
    print(f"wrote {write_json(args.out, {'machine': machine(), **results})}")
    if not args.quick:
        md_path.write_text(markdown(results))
        print(f"wrote {md_path}")


if __name__ == "__main__":
    main()
