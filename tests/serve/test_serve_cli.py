"""`edgeslim serve`, `serve-tail` and `split-infer` on loopback: settings refused with an edgeslim
error, the class printed as `edgeslim run` prints it, and a token-protected `serve` process."""
from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgeslim.cli import app
from edgeslim.edge import split_model
from edgeslim.errors import ConfigError
from edgeslim.runtime import load_model
from edgeslim.serve.app import create_app
from edgeslim.serve.client import ServerError
from edgeslim.serve.server import serve_in_thread

from .conftest import TOKEN

runner = CliRunner()
CUT = "/features/features.5/MaxPool_output_0"


@pytest.mark.parametrize("args, match", [
    (["--port", "99999"], "port=99999"),
    (["--port", "0"], "port=0"),
    (["--host", "no such host"], "not an IP address"),
    (["--host", "0.0.0.0"], "refusing to serve on 0.0.0.0"),
    (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    (["--max-concurrency", "0"], "max_concurrency=0"),
])
def test_serve_settings_are_refused_with_one_message(whole_cnn, args, match):
    for command in ("serve", "serve-tail"):
        r = runner.invoke(app, [command, str(whole_cnn), *args])
        assert isinstance(r.exception, ConfigError) and match in str(r.exception), (command, r.output)


def test_split_infer_prints_the_class_like_run(whole_cnn, tmp_path):
    split_model(whole_cnn, CUT, tmp_path)
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(image)
    expected = load_model(whole_cnn).classify_image(image)
    (tmp_path / "token").write_text(TOKEN)
    with serve_in_thread(create_app(tmp_path / "tail.onnx", token=TOKEN), max_requests=10) as url:
        r = runner.invoke(app, ["split-infer", url, "--head", str(tmp_path / "head.onnx"), "--image", str(image),
                                "--token-file", str(tmp_path / "token")])
        assert r.exit_code == 0, r.output
        assert r.output.splitlines()[0] == f"{expected.class_name} ({expected.probability:.1%})"
        r = runner.invoke(app, ["split-infer", url, "--head", str(tmp_path / "head.onnx"), "--image", str(image)])
        assert isinstance(r.exception, ServerError) and "401" in str(r.exception)  # no token
        r = runner.invoke(app, ["split-infer", url, "--image", str(image)])
        assert isinstance(r.exception, ConfigError) and "--head" in str(r.exception)
    r = runner.invoke(app, ["split-infer", "localhost:8000"])
    assert isinstance(r.exception, ConfigError) and "invalid server URL" in str(r.exception)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_process_classifies_images_behind_a_token(whole_cnn, tmp_path, wait_for_port):
    port = _free_port()
    (tmp_path / "token").write_text(TOKEN + "\n")
    image = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(image)
    proc = subprocess.Popen([sys.executable, "-m", "edgeslim.cli", "serve", str(whole_cnn), "--port", str(port),
                             "--token-file", str(tmp_path / "token"), "--max-requests", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_port(proc, port)
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.post(url + "/v1/classify", content=image.read_bytes()).status_code == 401
        r = httpx.post(url + "/v1/classify", content=image.read_bytes(), headers=auth)
        assert r.status_code == 200 and r.json()["class_name"] == load_model(whole_cnn).classify_image(image).class_name
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        assert proc.wait(timeout=30) == 0
        log = proc.stdout.read().decode()
        assert f"serving cnn.onnx at http://127.0.0.1:{port} (batch up to 8, token required)" in log
        assert "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_starting_a_server_leaves_the_process_logging_alone(whole_cnn):
    # uvicorn's default setup (dictConfig) closes every handler of the process; absl's handler then
    # closes its stream, which under pytest was the capture file (a whole test run died of it)
    import logging

    class Recording(logging.Handler):
        closed = False

        def close(self):
            Recording.closed = True
            super().close()

    handler = Recording()
    logging.getLogger().addHandler(handler)
    try:
        with serve_in_thread(create_app(whole_cnn), max_requests=1) as url:
            assert httpx.get(f"{url}/health").status_code == 200
        assert not Recording.closed
    finally:
        logging.getLogger().removeHandler(handler)
