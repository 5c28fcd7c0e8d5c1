"""An 80-column terminal: tables and --help show every header, option name and key value whole."""
import pytest
from rich.console import Console
from typer.testing import CliRunner

import edgeslim.cli as cli
from edgeslim.cli import app

runner = CliRunner()


@pytest.fixture
def narrow(monkeypatch):
    """The CLI's console as an 80-column terminal (rich reads $COLUMNS when the console is made)."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(cli, "console", Console())
    monkeypatch.setattr(cli, "err", Console(stderr=True))  # warnings wrap at the terminal's width too
    assert cli.console.width == 80 and cli.err.width == 80


def invoke(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "…" not in r.output, r.output
    assert max(map(len, r.output.splitlines())) <= 80, r.output
    return r.output


def test_layers_and_plan_show_whole_cut_names(narrow, digits_onnx, tmp_path):
    text = invoke(["layers", str(digits_onnx), "--runs", "2"])
    assert "/classifier/classifier.0/Flatten_output_0" in text and "head_ms" in text
    text = invoke(["plan", str(digits_onnx), "--plot", str(tmp_path / "p.png")])
    assert "split@/classifier/classifier.0/Flatten_output_0" in text  # was split@/classifier/classifier.0/Flatt…
    assert "latency_ms" in text and "energy_mj" in text


def test_bench_eval_and_profiles_fit(narrow, digits_onnx, digits_checkpoint):
    text = invoke(["bench", str(digits_onnx), str(digits_onnx), "--rounds", "2", "--warmup", "0"])
    assert "throughput_per_s" in text and "p50_ms" in text and f"model: {digits_onnx}" in text  # a long path: blocks
    text = invoke(["eval", str(digits_checkpoint[0]), "--dataset", "digits", "--limit", "50"])
    assert "nonzero_params" in text and "accuracy" in text
    text = invoke(["profiles"])
    assert "raspberry-pi-4" in text and "gflops_fp32" in text and "downlink_mbps" in text


@pytest.mark.parametrize("command", ["prune", "quantize", "compress", "search", "distill", "plan", "serve"])
def test_help_keeps_option_names_whole(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    r = runner.invoke(app, [command, "--help"], terminal_width=80)
    assert r.exit_code == 0 and "…" not in r.output, r.output
    names = {"prune": ["--finetune-epochs", "--finetune-augment / --no-finetune-augment", "--layer-sparsity"],
             "quantize": ["--bias-correction / --no-bias-correction", "--max-accuracy-drop"],
             "compress": ["--max-accuracy-drop"], "search": ["--max-accuracy-drop", "--report-only"],
             "distill": ["--augmentation"], "serve": ["--max-body-bytes", "--insecure-no-auth"],
             "plan": ["--keep-raw-data-on-device / --no-keep-raw-data-on-device", "--max-uplink-bytes"]}[command]
    for name in names:
        assert name in r.output
