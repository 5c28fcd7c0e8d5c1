"""Cut points, split equivalence, per-layer profiling, memory refusal and planner choices."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeslim.edge import (DeviceProfile, HostCalibration, LayerProfile, MemoryRefusal, NetworkProfile, analyze,
                           calibrate_host, check_memory, plan, plan_config, plot_plans, profile_layers, split_model)
from edgeslim.errors import ConfigError

RNG = np.random.default_rng(0)


def _w(name, *shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32) * 0.3, name)


def _model(nodes, inits, out_dim):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_dim])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def chain_model():
    """x -> MatMul -> Relu -> MatMul -> Sigmoid -> y: every tensor is a cut point."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="mm2"),
             helper.make_node("Sigmoid", ["h2"], ["y"], name="sig")]
    return _model(nodes, [_w("w1", 8, 16), _w("w2", 16, 4)], 4)


def residual_model():
    """x -> Relu(a) -> [MatMul -> Relu](b) -> Add(a, b) -> MatMul -> y: b is inside the block."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="stem"),
             helper.make_node("MatMul", ["a", "w1"], ["m"], name="mm1"),
             helper.make_node("Relu", ["m"], ["b"], name="relu"),
             helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("MatMul", ["s", "w2"], ["y"], name="head")]
    return _model(nodes, [_w("w1", 8, 8), _w("w2", 8, 3)], 3)


def run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_cut_points_on_a_chain_are_every_layer():
    info = analyze(chain_model())
    assert [c.tensor for c in info.cut_points] == ["x", "h1", "r1", "h2", "y"]
    assert [c.position for c in info.cut_points] == [-1, 0, 1, 2, 3]
    assert info.cut("h1").bytes == 16 * 4 and info.cut("h1").shape == (1, 16)  # batch fixed to 1
    assert [n.macs for n in info.nodes] == [8 * 16, 0, 16 * 4, 0]


def test_cut_points_on_a_residual_graph_are_block_boundaries():
    info = analyze(residual_model())
    cuts = [c.tensor for c in info.cut_points]
    assert cuts == ["x", "a", "s", "y"]  # m and b are not cuts: 'a' is still needed by the Add
    with pytest.raises(ConfigError, match="not a valid cut point"):
        info.cut("b")


@pytest.mark.parametrize("make, at", [(chain_model, "r1"), (residual_model, "a"), (residual_model, "s")])
def test_split_head_then_tail_equals_whole_model(tmp_path, make, at):
    model = make()
    head, tail = split_model(model, at, tmp_path)
    assert (tmp_path / "head.onnx").exists() and (tmp_path / "tail.onnx").exists()
    assert [o.name for o in head.graph.output] == [at] and [i.name for i in tail.graph.input] == [at]
    x = RNG.standard_normal((1, 8)).astype(np.float32)
    np.testing.assert_allclose(run(tail, run(head, x)), run(model, x), rtol=1e-6, atol=1e-6)


def test_split_refuses_invalid_or_trivial_cuts(tmp_path):
    with pytest.raises(ConfigError, match="valid cut"):
        split_model(residual_model(), "m", tmp_path)
    with pytest.raises(ConfigError, match="input or output"):
        split_model(chain_model(), "x", tmp_path)


def test_split_of_an_exported_cnn_keeps_outputs_and_metadata(tmp_path):
    import torch

    from edgeslim.export import export_onnx
    from edgeslim.models import create

    torch.manual_seed(0)
    path = export_onnx(create("seed-cnn"), tmp_path / "m.onnx", (1, 32, 32), {"class_names": list("abcdefghij")})
    info = analyze(path)
    assert len(info.cut_points) == len(info.nodes) + 1  # a chain: input + every layer
    at = "/features/features.5/MaxPool_output_0"
    head, tail = split_model(path, at, tmp_path / "split")
    x = np.random.default_rng(1).standard_normal((1, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(run(tail, run(head, x)), run(onnx.load(str(path)), x), rtol=1e-5, atol=1e-5)
    assert any(p.key == "edgeslim" for p in head.metadata_props)


def test_profile_layers_and_calibration():
    prof = profile_layers(chain_model(), threads=1, runs=5, warmup=2)
    assert len(prof.node_ms) == 4 and all(t >= 0 for t in prof.node_ms)
    assert prof.run_ms > 0 and abs(sum(prof.node_ms) + prof.overhead_ms - prof.run_ms) < 1e-6
    rows = prof.cut_rows()
    assert rows[0]["head_ms"] == 0 and rows[-1]["tail_ms"] == 0
    cal = calibrate_host(threads=1, repeats=3)
    assert cal.gflops_fp32 > 0.1 and cal.int8_speedup >= 1.0


def _device(gflops, memory_mb=1024, active=5.0, idle=1.0, name="dev"):
    return DeviceProfile(name=name, gflops_fp32=gflops, memory_mb=memory_mb, power_active_w=active,
                         power_idle_w=idle)


def _net(mbps, rtt, name="net"):
    return NetworkProfile(name=name, uplink_mbps=mbps, downlink_mbps=mbps, rtt_ms=rtt)


HOST = HostCalibration(gflops_fp32=100.0, int8_speedup=2.0, threads=1, cpus=None, conv_fp32_ms=1, conv_int8_ms=0.5)


def hand_profile():
    """The chain model with hand-set layer times (ms on a 100 GFLOP/s host)."""
    return LayerProfile(analyze(chain_model()), [10.0, 1.0, 10.0, 1.0], 22.0, 0.0, 1, None)


def test_memory_check_refuses_clearly():
    with pytest.raises(MemoryRefusal, match=r"needs 2\.0 MiB .* allows 1 MiB"):
        check_memory(2 * 2**20, _device(10, memory_mb=1, name="tiny"), "the model")
    check_memory(2**20, _device(10, memory_mb=1))


def test_planner_slow_network_keeps_inference_on_device():
    p = plan(hand_profile(), _device(50), _device(5000), _net(0.01, 500), HOST)
    assert p.best.placement == "on-device"
    assert p.best.uplink_bytes == 0 and p.best.latency_ms == pytest.approx(22.0 * 100 / 50)


def test_planner_slow_device_fast_network_offloads():
    p = plan(hand_profile(), _device(0.1), _device(5000), _net(1000, 1), HOST)
    assert p.best.placement == "offload"
    # predicted latency = upload + RTT + server + download, nothing on the device
    assert p.best.device_ms == 0 and p.best.latency_ms < 5


def test_planner_keep_raw_data_forbids_offload_and_limits_bytes():
    cfg = plan_config(keep_raw_data_on_device=True)
    p = plan(hand_profile(), _device(0.1), _device(5000), _net(1000, 1), HOST, cfg)
    assert p.best.placement == "split" and p.best.cut == "h1"  # first layer on the device, rest offloaded
    offload = next(o for o in p.options if o.placement == "offload")
    assert not offload.feasible and "raw input" in offload.reason
    tight = plan(hand_profile(), _device(0.1), _device(5000), _net(1000, 1), HOST,
                 plan_config(max_uplink_bytes=0))
    assert tight.best.placement == "on-device"


def test_planner_quantized_cut_sends_fewer_bytes_and_energy_objective():
    base = plan(hand_profile(), _device(1), _device(5000), _net(1, 10), HOST)
    q = plan(hand_profile(), _device(1), _device(5000), _net(1, 10), HOST, plan_config(quantize_cut=True))
    b = {o.cut: o.uplink_bytes for o in base.options}
    assert all(o.uplink_bytes < b[o.cut] for o in q.options if o.placement == "split")
    # a power-hungry radio makes the energy objective avoid sending anything
    e = plan(hand_profile(), _device(1, active=0.1, idle=0.1), _device(5000),
             NetworkProfile(name="x", uplink_mbps=1, downlink_mbps=1, rtt_ms=10, radio_power_w=50), HOST,
             plan_config(objective="energy"))
    assert e.best.placement == "on-device"


def test_planner_memory_refusal_and_no_feasible_placement():
    p = plan(hand_profile(), _device(1, memory_mb=1e-4), _device(5000), _net(10, 10), HOST)
    on_device = next(o for o in p.options if o.placement == "on-device")
    assert not on_device.feasible and "needs" in on_device.reason
    assert p.best.placement == "offload"
    with pytest.raises(ConfigError, match="no placement"):
        plan(hand_profile(), _device(1, memory_mb=1e-4), _device(5000), _net(10, 10), HOST,
             plan_config(keep_raw_data_on_device=True))
    with pytest.raises(ConfigError, match="objective"):
        plan_config(objective="speed")


def test_plot_is_written(tmp_path):
    plans = [plan(hand_profile(), _device(1), _device(5000), _net(m, r, name=n), HOST)
             for n, m, r in (("slow", 1, 100), ("fast", 100, 5))]
    out = plot_plans(plans, tmp_path / "plan.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profiler_event_names_map_back_to_graph_nodes():
    from edgeslim.edge.layer_profile import parse_profile

    model = chain_model()  # nodes mm1, relu1, mm2, sig; tensors h1, r1, h2, y

    def kernel(ts, name, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
              kernel(1, "ReorderInput", 5),  # before any known node: charged to the next one
              kernel(2, "fused mm1", 10),  # ORT fusion renames the node
              kernel(3, "r1_nchwc", 20),  # NCHWc variant named after its output tensor
              kernel(4, "ReorderOutput", 3),  # layout reorder: charged to the node before it
              kernel(5, "mm2_token_4", 30),  # layout-transformer copy of a node
              kernel(6, "sig", 7)]
    (times,) = parse_profile(events, model)
    assert times == pytest.approx([0.015, 0.023, 0.030, 0.007])


def test_int8_model_profile_cut_points_and_split(tmp_path):
    import torch

    from edgeslim.export import export_onnx
    from edgeslim.models import create
    from edgeslim.quantize import quantize_onnx_static

    torch.manual_seed(0)
    fp32 = export_onnx(create("seed-cnn"), tmp_path / "m.onnx", (1, 32, 32), {})
    calib = np.random.default_rng(0).standard_normal((16, 1, 32, 32)).astype(np.float32)
    int8 = quantize_onnx_static(fp32, tmp_path / "m_int8.onnx", calib)
    prof = profile_layers(int8, threads=1, runs=5, warmup=2)
    assert prof.info.is_int8
    conv_ms = [ms for n, ms in zip(prof.info.nodes, prof.node_ms) if n.op_type == "Conv"]
    assert len(conv_ms) == 2 and all(ms > 0 for ms in conv_ms)  # QLinearConv kernels found their Conv
    uint8_cuts = [c for c in prof.info.cut_points if c.dtype == "uint8"]
    assert uint8_cuts  # QuantizeLinear outputs: naturally quantized cut tensors
    at = uint8_cuts[len(uint8_cuts) // 2].tensor
    head, tail = split_model(int8, at)
    x = calib[:1]
    np.testing.assert_array_equal(run(tail, run(head, x)), run(prof.info.model, x))


def test_compute_scale_uses_gflops_and_int8_speedup():
    from edgeslim.edge import compute_scale

    dev = DeviceProfile(name="d", gflops_fp32=10, int8_speedup=1.5, memory_mb=1, power_active_w=1, power_idle_w=1)
    assert compute_scale(HOST, dev, int8=False) == pytest.approx(10.0)  # 100 / 10 GFLOP/s
    assert compute_scale(HOST, dev, int8=True) == pytest.approx(100 * 2.0 / (10 * 1.5))

