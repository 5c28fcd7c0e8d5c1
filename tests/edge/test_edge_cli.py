"""The edge/split/serve commands, end to end on a tiny exported CNN."""
import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeslim.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    import torch

    from edgeslim.export import export_onnx
    from edgeslim.models import create

    torch.manual_seed(0)
    return export_onnx(create("seed-cnn"), tmp_path_factory.mktemp("cli") / "m.onnx", (1, 32, 32), {})


def test_plan_prints_table_writes_plot_and_json(cnn, tmp_path):
    plot = tmp_path / "plan.png"
    r = runner.invoke(app, ["plan", str(cnn), "--device", "raspberry-pi-4", "--network", "4g", "--server",
                            "cloud-server", "--plot", str(plot), "--keep-raw-data-on-device", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    # offload (the input) + one option per layer of the 10-node chain, the last one being on-device
    assert len(out["options"]) == 11 and out["options"][-1]["placement"] == "on-device"
    assert out["best"] != "offload"
    assert plot.read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(app, ["plan", str(cnn), "--device", "toaster", "--plot", str(plot)])
    assert r.exit_code != 0 and "unknown device profile" in str(r.exception)


def test_layers_and_split_commands(cnn, tmp_path):
    r = runner.invoke(app, ["layers", str(cnn), "--runs", "3", "--json"])
    assert r.exit_code == 0, r.output
    cuts = [c["cut"] for c in json.loads(r.output)["cut_points"]]
    r = runner.invoke(app, ["split", str(cnn), "--at", cuts[3], "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s" / "head.onnx").exists() and (tmp_path / "s" / "tail.onnx").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_tail_process_answers_then_stops_by_itself(cnn, tmp_path, wait_for_port):
    """`edgeslim serve-tail` on 127.0.0.1 with --max-requests: the whole model as an edge server,
    a full-offload client, and the server process exits on its own."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeslim.cli", "serve-tail", str(cnn), "--port", str(port),
                             "--max-requests", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        from edgeslim.serve.client import SplitClient

        url = f"http://127.0.0.1:{port}"
        wait_for_port(proc, port)
        with SplitClient(url) as client:  # head=None: full offload of the raw input
            r = client.infer(np.zeros((1, 1, 32, 32), np.float32))
            r2 = client.infer(np.ones((1, 1, 32, 32), np.float32))
        assert r.output.shape == (1, 10) and not np.array_equal(r.output, r2.output)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_profiles_lists_devices_and_networks():
    r = runner.invoke(app, ["profiles", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert "raspberry-pi-4" in {d["name"] for d in out["devices"]} and "4g" in {n["name"] for n in out["networks"]}
    r = runner.invoke(app, ["profiles"])
    assert r.exit_code == 0 and "jetson-nano" in r.output and "ethernet" in r.output


def test_calibrate_measures_this_host():
    r = runner.invoke(app, ["calibrate", "--json"])
    assert r.exit_code == 0, r.output
    cal = json.loads(r.output)
    assert cal["gflops_fp32"] > 0 and cal["int8_speedup"] > 0
    r = runner.invoke(app, ["calibrate", "--threads", "1"])
    assert r.exit_code == 0 and "GFLOP/s fp32" in r.output
