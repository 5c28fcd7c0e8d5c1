"""Planner validation: predicted vs measured end-to-end latency of real split inference.

Device and server are both this host, made explicit as two measured profiles:
  device = ONNX Runtime at 1 thread pinned to CPU 0 ("host-cpu0-1thread")
  server = ONNX Runtime at 1 thread pinned to CPU 1 ("host-cpu1-1thread")
The network is emulated in the client's HTTP transport on 127.0.0.1 (token bucket + RTT sleep)
with the 3g / 4g / wifi profiles of the catalog. For each model, network and split point the
head runs on the "device", the cut tensor goes over HTTP to a uvicorn tail server, and the
measured end-to-end latency is compared with the planner's prediction, which uses only the
per-layer profile, the two calibrations and the HTTP stack overhead measured with an Identity
model. Also writes the planner's view for catalog profiles (Raspberry Pi 4 -> cloud) as a plot.

    flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_split.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, baseline, print_table, save_results  # noqa: E402

from edgeslim._io import atomic_write_text  # noqa: E402
from edgeslim.edge import (DeviceProfile, HostCalibration, calibrate_host, load_profiles, plan,  # noqa: E402
                           plan_config, plot_plans, profile_layers, split_model)
from edgeslim.report import markdown_table  # noqa: E402
from edgeslim.serve.app import create_app  # noqa: E402
from edgeslim.serve.client import SplitClient  # noqa: E402
from edgeslim.serve.netem import Link  # noqa: E402
from edgeslim.serve.server import serve_in_thread  # noqa: E402


# benchmark-only helpers: the planner's validation, not part of the library
def host_device_profile(cal: HostCalibration, name: str = "this-host") -> DeviceProfile:
    """This host as a device profile (measured speed; power is not measured here, so 0 W).
    Used to validate the planner: an emulated device whose speed is known exactly."""
    import psutil

    cpus = f"pinned to CPU {cal.cpus}" if cal.cpus else "unpinned"
    return DeviceProfile(name=name, description=f"this host, {cal.threads} ONNX Runtime thread(s), {cpus} "
                         f"(measured by `edgeslim calibrate`)", gflops_fp32=cal.gflops_fp32,
                         int8_speedup=cal.int8_speedup, memory_mb=psutil.virtual_memory().available / 2**20,
                         power_active_w=0.0, power_idle_w=0.0)


def calibrate_request_overhead(repeats: int = 30) -> float:
    """Median milliseconds of one loopback request to the inference server with a 4-byte tensor
    and an Identity model: the fixed cost of the HTTP stack (client + server), no network delay
    and no compute. This benchmark adds it to every placement that talks to a server."""
    import tempfile

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "identity.onnx"
        onnx.save(model, str(path))
        with serve_in_thread(create_app(path), max_requests=repeats + 10) as url, SplitClient(url) as client:
            x = np.ones(1, np.float32)
            for _ in range(5):
                client.infer(x)
            times = [client.infer(x).request_ms for _ in range(repeats)]
    return float(np.median(times))


DEVICE_CPUS, SERVER_CPUS = [0], [1]
NETWORKS = ["3g", "4g", "wifi"]
SPLITS = {
    "seed-cnn": ["/features/features.2/MaxPool_output_0", "/features/features.5/MaxPool_output_0",
                 "/classifier/classifier.2/Relu_output_0"],
    "efficientnet-lite0": ["/_blocks.4/Add_output_0", "/_blocks.10/Add_output_0",
                           "/_avg_pooling/GlobalAveragePool_output_0"],
}
REPEATS, WARMUP = 7, 2
WORK = CACHE.parent / "edge"


def export_models() -> dict[str, Path]:
    from edgeslim.export import export_onnx, onnx_metadata
    from edgeslim.models import create

    WORK.mkdir(parents=True, exist_ok=True)
    paths = {"seed-cnn": WORK / "seed-cnn.onnx", "efficientnet-lite0": WORK / "efficientnet-lite0.onnx"}
    ckpt, _ = baseline("seed-cnn")
    export_onnx(ckpt.model, paths["seed-cnn"], ckpt.input_shape, onnx_metadata(ckpt))
    from edgeslim.data.imagenet import IMAGENET_PREPROCESS

    export_onnx(create("efficientnet-lite0"), paths["efficientnet-lite0"], (3, 224, 224),
                {"input_shape": [3, 224, 224], "dataset": "imagenet", "preprocess": IMAGENET_PREPROCESS.to_dict()})
    return paths


def measure(folder: Path, link: Link, x: np.ndarray) -> dict:
    app = create_app(folder / "tail.onnx", threads=1, cpus=SERVER_CPUS)
    with serve_in_thread(app, max_requests=REPEATS + WARMUP + 2) as url, \
            SplitClient(url, folder / "head.onnx", threads=1, cpus=DEVICE_CPUS, link=link) as client:
        results = [client.infer(x) for _ in range(WARMUP + REPEATS)][WARMUP:]
    return {"measured_ms": float(np.median([r.total_ms for r in results])),
            "measured_head_ms": float(np.median([r.head_ms for r in results])),
            "measured_server_ms": float(np.median([r.server_ms for r in results])),
            "measured_uplink_bytes": results[-1].uplink_bytes, "output": results[-1].output}


def validate(name: str, path: Path, networks, dev, srv, cal_dev, overhead_ms: float) -> tuple[list, object]:
    profile = profile_layers(path, threads=1, cpus=DEVICE_CPUS, runs=40)
    cfg = plan_config(request_overhead_ms=overhead_ms)
    info = profile.info
    x = np.random.default_rng(0).standard_normal(info.cut_points[0].shape).astype(np.float32)
    rows = []
    for at in SPLITS[name]:
        folder = WORK / f"{name}-split" / at.strip("/").replace("/", "_")
        split_model(path, at, folder)
        for net_name in networks:
            net = networks[net_name]
            option = next(o for o in plan(profile, dev, srv, net, cal_dev, cfg).options if o.cut == at)
            m = measure(folder, Link.of(net), x)
            err = (m["measured_ms"] - option.latency_ms) / option.latency_ms
            rows.append({"model": name, "network": net_name, "cut": at, "cut_bytes": info.cut(at).bytes,
                         "pred_device_ms": option.device_ms, "meas_device_ms": m["measured_head_ms"],
                         "pred_server_ms": option.server_ms, "meas_server_ms": m["measured_server_ms"],
                         "pred_uplink_bytes": option.uplink_bytes, "meas_uplink_bytes": m["measured_uplink_bytes"],
                         "predicted_ms": option.latency_ms, "measured_ms": m["measured_ms"],
                         "error_pct": 100 * err, "within_25pct": abs(err) <= 0.25})
            print(f"{name} {net_name} {at}: predicted {option.latency_ms:.1f} ms, measured "
                  f"{m['measured_ms']:.1f} ms ({100 * err:+.1f} %)", flush=True)
    return rows, profile


def quantized_cut_rows(name: str, path: Path, profile, net, dev, srv, cal_dev, overhead_ms: float) -> list[dict]:
    """uint8 cut tensors (scale + zero point): bytes, predicted vs measured latency on one network,
    and top-1 agreement with the float model on the 200 ImageNet check photos."""
    import onnxruntime as ort

    from edgeslim.data.imagenet import load_imagenet_samples
    from edgeslim.serve import tensor_format as tf

    photos = load_imagenet_samples()[0].x.numpy()
    whole = ort.InferenceSession(profile.info.model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.stack([whole.run(None, {profile.info.input_name: p[None]})[0][0] for p in photos])
    cfg = plan_config(request_overhead_ms=overhead_ms, quantize_cut=True)
    rows = []
    for at in SPLITS[name]:
        folder = WORK / f"{name}-split" / at.strip("/").replace("/", "_")
        head = ort.InferenceSession(str(folder / "head.onnx"), providers=["CPUExecutionProvider"])
        tail = ort.InferenceSession(str(folder / "tail.onnx"), providers=["CPUExecutionProvider"])
        got = np.stack([tail.run(None, {at: tf.decode(tf.encode_quantized(head.run(None, {"input": p[None]})[0]))})[0][0]
                        for p in photos])
        option = next(o for o in plan(profile, dev, srv, net, cal_dev, cfg).options if o.cut == at)
        app = create_app(folder / "tail.onnx", threads=1, cpus=SERVER_CPUS)
        with serve_in_thread(app, max_requests=REPEATS + WARMUP + 2) as url, \
                SplitClient(url, folder / "head.onnx", threads=1, cpus=DEVICE_CPUS, link=Link.of(net),
                            quantize=True) as client:
            results = [client.infer(photos[:1]) for _ in range(WARMUP + REPEATS)][WARMUP:]
        measured = float(np.median([r.total_ms for r in results]))
        rows.append({"model": name, "network": net.name, "cut": at, "float_bytes": info_bytes(profile, at),
                     "uint8_uplink_bytes": results[-1].uplink_bytes, "predicted_ms": option.latency_ms,
                     "measured_ms": measured, "error_pct": 100 * (measured - option.latency_ms) / option.latency_ms,
                     "top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()), "photos": len(photos)})
        print(f"{name} uint8 cut {at}: {rows[-1]}", flush=True)
    return rows


def info_bytes(profile, at: str) -> int:
    return profile.info.cut(at).bytes


def catalog_view(profile, cal_dev, catalog, model_name: str) -> list[dict]:
    """The planner on catalog profiles (predictions only): Raspberry Pi 4 -> cloud server."""
    dev, srv = catalog.device("raspberry-pi-4"), catalog.device("cloud-server")
    plans = [plan(profile, dev, srv, n, cal_dev) for n in catalog.networks.values()]
    plot_plans(plans, RESULTS / "edge.png", title=f"{model_name}: raspberry-pi-4 -> cloud-server (predicted)")
    rows = []
    for p in plans:
        for keep_raw in (False, True):
            best = plan(profile, dev, srv, p.network, cal_dev, plan_config(keep_raw_data_on_device=keep_raw)).best
            rows.append({"network": p.network.name, "keep_raw_data_on_device": keep_raw, "best": best.label,
                         "latency_ms": best.latency_ms, "energy_mj": best.energy_mj,
                         "uplink_bytes": best.uplink_bytes})
    return rows


def main() -> None:
    t0 = time.time()
    catalog = load_profiles()
    networks = {n: catalog.network(n) for n in NETWORKS}
    paths = export_models()
    cal_dev = calibrate_host(1, DEVICE_CPUS)
    cal_srv = calibrate_host(1, SERVER_CPUS)
    dev = host_device_profile(cal_dev, "host-cpu0-1thread")
    srv = host_device_profile(cal_srv, "host-cpu1-1thread")
    overhead_ms = calibrate_request_overhead()
    print(f"device {cal_dev.gflops_fp32:.1f} GFLOP/s, server {cal_srv.gflops_fp32:.1f} GFLOP/s, "
          f"HTTP overhead {overhead_ms:.2f} ms", flush=True)
    rows, catalog_rows, quant_rows, profiles = [], [], [], {}
    for name, path in paths.items():
        r, profile = validate(name, path, networks, dev, srv, cal_dev, overhead_ms)
        rows += r
        profiles[name] = {"run_ms": profile.run_ms, "overhead_ms": profile.overhead_ms,
                          "nodes": len(profile.node_ms), "cut_points": len(profile.info.cut_points)}
        if name == "efficientnet-lite0":
            catalog_rows = catalog_view(profile, cal_dev, catalog, name)
            quant_rows = quantized_cut_rows(name, path, profile, networks["4g"], dev, srv, cal_dev, overhead_ms)
    cols = ["model", "network", "cut", "cut_bytes", "pred_device_ms", "meas_device_ms", "pred_server_ms",
            "meas_server_ms", "predicted_ms", "measured_ms", "error_pct", "within_25pct"]
    print_table(rows, cols, title="planner: predicted vs measured end-to-end latency")
    print_table(quant_rows, title="uint8 cut tensor over emulated 4g")
    print_table(catalog_rows, title="efficientnet-lite0 on raspberry-pi-4 -> cloud-server (predicted)")
    within = sum(r["within_25pct"] for r in rows)
    payload = {"device_profile": dev.model_dump(), "server_profile": srv.model_dump(),
               "device_calibration": cal_dev.to_dict(), "server_calibration": cal_srv.to_dict(),
               "http_overhead_ms": overhead_ms, "repeats": REPEATS, "profiles": profiles, "rows": rows,
               "catalog_plan": catalog_rows, "quantized_cut": quant_rows, "within_25pct": f"{within}/{len(rows)}",
               "seconds": time.time() - t0}
    save_results("edge", payload)
    write_markdown(payload, cols)
    print(f"{within}/{len(rows)} within +-25 %; {time.time() - t0:.0f} s")


def write_markdown(p: dict, cols: list[str]) -> None:
    dev, srv = p["device_calibration"], p["server_calibration"]
    text = f"""# Edge execution: planner validation (issue 6)

Command: `flock /tmp/edgeslim-cpu.lock .venv/bin/python benchmarks/bench_split.py` (JSON: `edge.json`,
plot: `edge.png`).

**Setup.** Device and server are both this 2-core host, made explicit as measured profiles:
device `host-cpu0-1thread` (ONNX Runtime, 1 thread, pinned to CPU 0: {dev['gflops_fp32']:.1f} GFLOP/s on the
calibration conv, int8 speed-up {dev['int8_speedup']:.2f}x) and server `host-cpu1-1thread` (1 thread, CPU 1:
{srv['gflops_fp32']:.1f} GFLOP/s). The head runs in the client process, the tail in a uvicorn server on
127.0.0.1; the network is emulated in the client's HTTP transport (token bucket at the profile's
uplink/downlink rate + RTT sleep) with the catalog's 3g / 4g / wifi profiles. The prediction uses only
the per-layer ONNX Runtime profile of the whole model (measured on CPU 0), the two calibrations and the
HTTP stack overhead measured with an Identity model ({p['http_overhead_ms']:.2f} ms per request). Measured
= median of {p['repeats']} end-to-end runs (head + encode + HTTP + tail + decode), batch 1, float32 cut
tensors. Caveat: the network delay is emulated from the same profile the planner reads, so this checks
the compute model, the byte accounting and the stack overhead, not a real radio link.

**Result: {p['within_25pct']} configurations within +-25 %.**

{markdown_table(p['rows'], cols)}

## uint8 cut tensor (per-tensor scale + zero point) over emulated 4g

EfficientNet-Lite0, same splits, cut tensor sent as uint8 (4x fewer payload bytes). Top-1 agreement:
split model with the quantized cut vs the float model on the 200 ImageNet check photos.

{markdown_table(p['quantized_cut'])}

## What the planner recommends on catalog profiles (predictions, not measurements)

EfficientNet-Lite0 on `raspberry-pi-4` with a `cloud-server` (figures and their sources in
`src/edgeslim/edge/profiles/*.yaml`; host times scaled by GFLOP/s ratio). See `edge.png` for latency
and bytes per split point, one line per network.

{markdown_table(p['catalog_plan'])}
"""
    atomic_write_text(RESULTS / "edge.md", text)


if __name__ == "__main__":
    main()
