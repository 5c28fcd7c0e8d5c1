"""Shared fixtures: a tiny seed-cnn trained on digits, its checkpoint and its ONNX export."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits():
    from edgeslim.data import load_digits

    return load_digits(pad_to=32)


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory, digits):
    """seed-cnn trained for 3 epochs on digits, saved as a checkpoint folder."""
    from edgeslim.train import TrainConfig, train_model

    out = tmp_path_factory.mktemp("ckpt") / "seed-cnn"
    ckpt = train_model("seed-cnn", digits, TrainConfig(epochs=4, batch_size=64, augment=False, hflip=False), out=out, progress=False)
    return out, ckpt


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory, digits_checkpoint):
    from edgeslim.export import export_checkpoint

    folder, _ = digits_checkpoint
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_checkpoint(folder, out, optimize="never")  # a fixed graph: tests cut it at named tensors
    return out


@pytest.fixture
def wait_for_port():
    """``wait(proc, port)``: block until the server process ``proc`` accepts connections on
    127.0.0.1:``port`` (fails with its output if it exits or 60 s pass)."""
    import socket
    import time

    def wait(proc, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.2)
    return wait
