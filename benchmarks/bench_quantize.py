"""Quantization benchmark: every target of issue 4 in one run.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_quantize.py

1. seed-cnn / Fashion-MNIST: static int8 with each calibrator, QAT, size, speed, and the
   int8 configurations compared for speed (U8S8 vs S8S8, per-channel vs per-tensor).
2. EfficientNet-Lite0 on the 200 ImageNet sample photos: float vs ONNX Runtime's plain
   quantize_static (per-channel QDQ, min-max) vs ours; calibrate on one half, evaluate
   on the other and on all 200; batch 1, 2 threads.
3. lenet-300-100 dynamic int8 (batch 64).
4. Weight sharing 4 bits conv / 5 bits fc on seed-cnn.
Writes benchmarks/results/quantize.json and quantize.md.
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, baseline, print_table, save_results  # noqa: E402

import edgeslim.quantize as Q  # noqa: E402
from edgeslim.quantize.static import accuracy, agreement, onnx_logits  # noqa: E402
from edgeslim.report import markdown_table  # noqa: E402
from edgeslim.runtime import benchmark  # noqa: E402

THREADS = 2
logging.disable(logging.WARNING)


def _row(label, path, x, y, ref_logits, extra=None):
    logits = onnx_logits(path, x, THREADS)
    return {"model": label, "accuracy": accuracy(logits, y), "agreement": agreement(ref_logits, logits),
            "file_kb": Path(path).stat().st_size / 1024, **(extra or {})}


def _speed(rows, paths, batch, rounds=20):
    res = benchmark(paths, batch=batch, threads=THREADS, rounds=rounds)
    for row, r in zip(rows, res):
        row[f"p50_ms_b{batch}"], row[f"speedup_b{batch}"] = r["p50_ms"], r["speedup"]
    return res


def seed_cnn(work: Path) -> dict:
    from edgeslim.train.api import load_data_for

    ckpt, _ = baseline("seed-cnn", "fashion-mnist")
    data = load_data_for("seed-cnn", "fashion-mnist")
    x, y = data.test.x.numpy(), data.test.y.numpy()
    rows, paths, summaries = [], [], {}
    float_onnx = None
    for method in ("minmax", "percentile", "entropy", "mse"):
        t0 = time.perf_counter()
        r = Q(ckpt, {"method": "static", "calibration": method, "samples": 256, "benchmark": False,
                     "sensitivity": method == "mse", "timing": {"threads": THREADS}},
              data=data.train, eval_data=data.test, out=work / f"seed-static-{method}")
        summaries[f"static-{method}"] = r.summary
        if float_onnx is None:
            float_onnx = Path(r.summary["float_onnx"])
            ref = onnx_logits(float_onnx, x, THREADS)
            rows.append(_row("float32", float_onnx, x, y, ref))
            paths.append(float_onnx)
        rows.append(_row(f"static int8 ({method})", r.artifact, x, y, ref,
                         {"seconds": time.perf_counter() - t0}))
        paths.append(r.artifact)
    t0 = time.perf_counter()
    r = Q(ckpt, {"method": "qat", "finetune": {"epochs": 2, "lr": 1e-4}, "samples": 256, "benchmark": False,
                 "timing": {"threads": THREADS}}, data=data, out=work / "seed-qat")
    summaries["qat"] = r.summary
    rows.append(_row("QAT int8 (2 epochs)", r.artifact, x, y, ref, {"seconds": time.perf_counter() - t0}))
    paths.append(r.artifact)
    for row in rows:
        row["drop_points"] = 100 * (rows[0]["accuracy"] - row["accuracy"])
        row["size_ratio"] = row["file_kb"] / rows[0]["file_kb"]
    speed = {b: _speed(rows, paths, b) for b in (1, 64)}
    variants = speed_variants(float_onnx, data.train.subset(256, seed=1).x.numpy(), work, x, y, ref)
    return {"rows": rows, "speed_variants": variants, "summaries": summaries,
            "bench": {str(b): v for b, v in speed.items()}}


def speed_variants(float_onnx: Path, calib: np.ndarray, work: Path, x, y, ref) -> list[dict]:
    """Which int8 configuration is fastest on this CPU (all QDQ, fused by ORT into QLinear ops)."""
    configs = [("U8S8 per-channel (default)", {}), ("U8S8 per-tensor", {"per_channel": False}),
               ("S8S8 per-channel", {"symmetric_activations": True}),
               ("U8S8, first conv float", {"nodes_to_exclude": ["/features/features.0/Conv"]})]
    rows, paths = [{"config": "float32"}], [float_onnx]
    for label, kw in configs:
        p = Q.quantize_onnx_static(float_onnx, work / f"variant-{len(paths)}.onnx", calib, "mse", **kw)
        rows.append({"config": label, "accuracy": accuracy(onnx_logits(p, x, THREADS), y)})
        paths.append(p)
    for b in (1, 64):
        _speed(rows, paths, b)
    return rows


def efficientnet(work: Path) -> dict:
    import torch
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgeslim.data.datasets import Split
    from edgeslim.data.imagenet import load_imagenet_samples
    from edgeslim.export import export_onnx
    from edgeslim.models import create
    from edgeslim.quantize.ort_static import ArrayCalibrationReader

    split, _ = load_imagenet_samples()
    order = np.random.default_rng(0).permutation(len(split))
    half_a, half_b = order[:100], order[100:]
    x, y = split.x.numpy(), split.y.numpy()
    model = create("efficientnet-lite0").eval()
    float_onnx = export_onnx(model, work / "effnet-float.onnx", (3, 224, 224))
    # baseline: ONNX Runtime's plain quantize_static, per-channel QDQ, min-max, calibrated on half A
    base = work / "effnet-ort-baseline.onnx"
    quantize_static(str(float_onnx), str(base), ArrayCalibrationReader("input", x[half_a]),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    calib = Split(torch.from_numpy(x[half_a]), torch.from_numpy(y[half_a]))
    t0 = time.perf_counter()
    ours = Q(model, {"method": "static", "calibration": "mse", "samples": 100, "max_accuracy_drop": 1.0,
                     "sensitivity_samples": 100, "benchmark": False, "timing": {"threads": THREADS}},
             data=calib, eval_data=calib, out=work / "effnet-ours", input_shape=(3, 224, 224))
    seconds = time.perf_counter() - t0
    ref = onnx_logits(float_onnx, x, THREADS)
    rows = []
    for label, path in [("float32", float_onnx), ("ORT quantize_static (baseline)", base),
                        ("ours (mse + bias corr. + mixed precision)", ours.artifact)]:
        logits = onnx_logits(path, x, THREADS)
        rows.append({"model": label, "top1_half_b": accuracy(logits[half_b], y[half_b]),
                     "agreement_half_b": agreement(ref[half_b], logits[half_b]),
                     "top1_all200": accuracy(logits, y), "agreement_all200": agreement(ref, logits),
                     "logit_sqnr_db": Q.sqnr_db(ref, logits), "file_kb": path.stat().st_size / 1024})
    for row in rows:
        row["drop_points_half_b"] = 100 * (rows[0]["top1_half_b"] - row["top1_half_b"])
    _speed(rows, [float_onnx, base, ours.artifact], 1, rounds=30)
    s = ours.summary
    return {"rows": rows, "quantize_seconds": seconds, "float_layers": s["float_layers"],
            "float_ops": s["float_ops"], "mixed_precision": s["mixed_precision"],
            "sensitivity_top5": sorted(s["sensitivity"], key=lambda r: r["sqnr_db"])[:5]}


def lenet_dynamic(work: Path) -> dict:
    from edgeslim.train.api import load_data_for

    ckpt, _ = baseline("lenet-300-100", "fashion-mnist")
    data = load_data_for("lenet-300-100", "fashion-mnist")
    x, y = data.test.x.numpy(), data.test.y.numpy()
    r = Q(ckpt, {"method": "dynamic", "benchmark": False}, data=data.train.subset(256), eval_data=data.test,
          out=work / "lenet-dynamic")
    f = Path(r.summary["float_onnx"])
    ref = onnx_logits(f, x, THREADS)
    rows = [_row("float32", f, x, y, ref), _row("dynamic int8", r.artifact, x, y, ref)]
    rows[1]["drop_points"] = 100 * (rows[0]["accuracy"] - rows[1]["accuracy"])
    for b in (1, 64):
        _speed(rows, [f, r.artifact], b, rounds=30)
    return {"rows": rows, "layers": r.summary["layers"]}


def weight_sharing(work: Path) -> dict:
    from edgeslim.train.api import load_data_for

    ckpt, _ = baseline("seed-cnn", "fashion-mnist")
    data = load_data_for("seed-cnn", "fashion-mnist")
    rows = []
    for epochs in (0, 1):
        t0 = time.perf_counter()
        r = Q(ckpt, {"method": "weight_sharing", "conv_bits": 4, "linear_bits": 5,
                     "finetune": {"epochs": epochs, "lr": 1e-4}, "benchmark": False},
              data=data.train.subset(256), eval_data=data.test, train_data=data.train, out=work / f"seed-ws-{epochs}")
        codebooks = np.load(r.summary["codebooks"])  # LAYER.codebook / LAYER.indices arrays
        indices = [codebooks[f"{layer['layer']}.indices"] for layer in r.summary["layers"]]
        s = r.summary
        rows.append({"model": f"shared 4b conv / 5b fc, {epochs} fine-tune epoch(s)",
                     "float_accuracy": s["float_accuracy"], "accuracy": s["accuracy"],
                     "drop_points": s["accuracy_drop_points"],
                     "max_distinct_per_layer": max(x["distinct_values"] for x in s["layers"]),
                     "index_kb": sum(i.size * b["bits"] / 8 for b, i in zip(s["layers"], indices))
                     / 1024, "seconds": time.perf_counter() - t0})
    return {"rows": rows, "layers": s["layers"]}


def fmt(rows, cols=None):
    return markdown_table(rows, cols)


PARTS = {"seed_cnn": (seed_cnn, "seed-cnn Fashion-MNIST (10,000 test images)"),
         "efficientnet_lite0": (efficientnet, "EfficientNet-Lite0, 200 ImageNet samples"),
         "lenet_dynamic": (lenet_dynamic, "lenet-300-100 dynamic int8"),
         "weight_sharing": (weight_sharing, "weight sharing seed-cnn")}


def main() -> None:
    """Runs every part; results are saved after each one, so a partial run keeps what it measured."""
    t0 = time.perf_counter()
    payload: dict = {"threads": THREADS}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (fn, title) in PARTS.items():
            part = fn(Path(tmp))
            part.pop("bench", None)
            print_table(part["rows"], title=title)
            if "speed_variants" in part:
                print_table(part["speed_variants"], title="seed-cnn int8 configurations (speed)")
            payload[key] = part
            payload["seconds"] = time.perf_counter() - t0
            path = save_results("quantize", payload)
            write_markdown(payload)
    print(f"wrote {path} ({payload['seconds']:.0f} s)")


def write_markdown(p: dict) -> None:
    from edgeslim._io import atomic_write_text

    md = ["# Quantization results (issue 4)", "",
          "Produced by `flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_quantize.py` on a 2-core "
          f"CPU (ONNX Runtime, {p['threads']} threads). Machine shared with other jobs: timings are noisy; every "
          "speed comparison is interleaved side by side.", ""]
    if "seed_cnn" in p:
        seed_rows = [{k: v for k, v in r.items() if k != "seconds"} for r in p["seed_cnn"]["rows"]]
        md += ["## seed-cnn, Fashion-MNIST (10,000 test images)", "", fmt(seed_rows), "",
               "## seed-cnn: int8 configurations compared for speed", "", fmt(p["seed_cnn"]["speed_variants"]), ""]
    if "efficientnet_lite0" in p:
        e = p["efficientnet_lite0"]
        md += ["## EfficientNet-Lite0, 200 ImageNet sample photos (calibrate on half A, evaluate on half B and "
               "all 200; batch 1, 2 threads)", "", fmt(e["rows"]), "",
               f"Layers kept float by mixed precision: {e['float_layers'] or 'none'}", ""]
    if "lenet_dynamic" in p:
        md += ["## lenet-300-100, dynamic int8 (10,000 test images)", "", fmt(p["lenet_dynamic"]["rows"]), ""]
    if "weight_sharing" in p:
        md += ["## Weight sharing, seed-cnn, 4 bits conv / 5 bits fc", "", fmt(p["weight_sharing"]["rows"]), ""]
    md += ["## Targets", "", fmt(target_rows(p)), "", NOTES]
    atomic_write_text(RESULTS / "quantize.md", "\n".join(md))


def target_rows(p: dict) -> list[dict]:
    rows = []

    def add(name, value, ok):
        rows.append({"target": name, "measured": value, "met": "yes" if ok else "NO"})

    if "seed_cnn" in p:
        r = {row["model"]: row for row in p["seed_cnn"]["rows"]}
        st, qat = r["static int8 (mse)"], r["QAT int8 (2 epochs)"]
        add("seed-cnn static int8 within 0.3 points", f"{st['drop_points']:.2f} points", st["drop_points"] <= 0.3)
        add("seed-cnn QAT within 0.1 points", f"{qat['drop_points']:.2f} points", qat["drop_points"] <= 0.1)
        add("int8 ONNX <= 27% of float", f"{st['size_ratio']:.1%}", st["size_ratio"] <= 0.27)
        add("seed-cnn int8 faster than float (batch 64)", f"{st['speedup_b64']:.2f}x", st["speedup_b64"] > 1)
    if "efficientnet_lite0" in p:
        ours = p["efficientnet_lite0"]["rows"][2]
        add("EfficientNet int8 within 1.0 top-1 point (half B)", f"{ours['drop_points_half_b']:.1f} points",
            ours["drop_points_half_b"] <= 1.0)
        add("EfficientNet >= 97% agreement (half B / all 200)",
            f"{ours['agreement_half_b']:.1%} / {ours['agreement_all200']:.1%}", ours["agreement_half_b"] >= 0.97)
        add("EfficientNet >= 1.4x float speed (batch 1, 2 threads)", f"{ours['speedup_b1']:.2f}x",
            ours["speedup_b1"] >= 1.4)
    if "lenet_dynamic" in p:
        d = p["lenet_dynamic"]["rows"][1]
        add("lenet-300-100 dynamic within 0.3 points", f"{d['drop_points']:.2f} points", d["drop_points"] <= 0.3)
        add("lenet-300-100 dynamic >= 1.5x at batch 64", f"{d['speedup_b64']:.2f}x", d["speedup_b64"] >= 1.5)
    if "weight_sharing" in p:
        w = p["weight_sharing"]["rows"][-1]
        add("weight sharing 4/5 bits within 0.5 points", f"{w['drop_points']:.2f} points", w["drop_points"] <= 0.5)
    return rows


NOTES = """## Notes

- All int8 models are QDQ (uint8 activations, int8 per-channel weights, U8S8). ONNX Runtime's session
  optimizer fuses them into QLinearConv / QGemm / NhwcMaxPool (checked on the optimized graph). This is the
  fastest correct configuration measured here: S8S8 (int8 activations) and the QOperator format were
  slower, per-tensor weights were no faster than per-channel, and keeping the first conv float made
  ORT run MaxPool on the plain NCHW float kernel, which was much slower.
- seed-cnn at batch 64 stays slower in int8 than in float. ORT's profiler (batch 64) shows why: the
  first convolution has one input channel (im2col depth 9), where the int8 QLinearConv took about 2.3x the
  time of the float NCHWc conv. The uint8 NHWC max-pool and the NCHW<->NHWC transposes add more. The second
  conv is about 2.2x faster in int8. `edgeslim quantize` prints a warning when the int8 model is not faster.
- EfficientNet-Lite0: on these 200 photos ONNX Runtime's plain per-channel min-max quantize_static loses
  no top-1 points (the issue expected about 5). Ours is closer to float (logit SQNR in the table). With
  100 evaluation images, one image is one point. Timings on this shared 2-core machine are noisy: in
  earlier runs two identical QDQ graphs measured 1.3x to 2.9x float.
- Entropy (KL) calibration clipped the spiky activations of seed-cnn too hard (it lost more than 1 point)
  and is not the default. MSE is the default: best logit SQNR on EfficientNet, tied best on seed-cnn.
- Cross-layer equalization applies only to pairs joined by ReLU / max-pool (not to ReLU6). EfficientNet-Lite0
  uses ReLU6, so there it does nothing. Bias correction applies everywhere.
"""


if __name__ == "__main__":
    main()
