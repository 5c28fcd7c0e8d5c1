"""The .eslim artifact: lossless round trip, tamper detection, signatures, torch-free loading."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest

from edgeslim.errors import ArtifactError
from edgeslim.export import export_onnx, onnx_metadata
from edgeslim.export.artifact import PackOptions, pack_checkpoint, write_artifact
from edgeslim.runtime import load_model
from edgeslim.runtime.artifact import MAGIC, read_artifact, verify_artifact
from edgeslim.runtime.signing import generate_keypair


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, digits_checkpoint):
    """The digits seed-cnn pruned to 90% and weight-shared (4 bits), as ONNX and as .eslim."""
    from edgeslim.models import load_checkpoint
    from edgeslim.prune import apply_magnitude_masks, make_permanent
    from edgeslim.quantize import share_weights

    folder, _ = digits_checkpoint
    ckpt = load_checkpoint(folder)
    apply_magnitude_masks(ckpt.model, 0.9)
    make_permanent(ckpt.model)
    share_weights(ckpt.model, 4)
    out = tmp_path_factory.mktemp("eslim")
    onnx_path = export_onnx(ckpt.model, out / "model.onnx", ckpt.input_shape, onnx_metadata(ckpt))
    report = write_artifact(onnx_path, out / "model.eslim", onnx_metadata(ckpt), "seed-cnn")
    return onnx_path, out / "model.eslim", report, ckpt


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return generate_keypair(d / "key"), generate_keypair(d / "other")


def test_round_trip_gives_identical_outputs(compressed, digits):
    onnx_path, eslim, report, _ = compressed
    x = digits.test.x[:64].numpy()
    ref = load_model(onnx_path).predict(x)
    runner = load_model(eslim)
    assert np.array_equal(runner.predict(x), ref)  # lossless float32 storage
    assert runner.class_names == [str(i) for i in range(10)] and runner.input_shape == (1, 32, 32)
    encodings = {t["name"]: t["encoding"] for t in report["tensors"]}
    assert encodings["classifier.1.weight"] == "sparse_codebook"
    assert report["bytes"] * 20 < os.path.getsize(onnx_path)
    assert verify_artifact(eslim)["encodings"] == encodings


def test_dense_and_float16_packing(digits_checkpoint, tmp_path, digits):
    folder, ckpt = digits_checkpoint
    r = pack_checkpoint(folder, tmp_path / "dense.eslim")
    assert {t["encoding"] for t in r["tensors"]} == {"raw"}
    x = digits.test.x[:32]
    ref = ckpt.model(x).detach().numpy()
    assert np.allclose(load_model(tmp_path / "dense.eslim").predict(x.numpy()), ref, atol=1e-4)
    r16 = pack_checkpoint(folder, tmp_path / "half.eslim", options=PackOptions(float16=True, entropy="none"))
    assert r16["bytes"] < 0.6 * r["bytes"]
    assert np.allclose(load_model(tmp_path / "half.eslim").predict(x.numpy()), ref, atol=0.05)
    with pytest.raises(ArtifactError, match=".eslim"):
        pack_checkpoint(folder, tmp_path / "model.onnx")


def test_entropy_policies_all_decode_to_the_same_model(compressed, tmp_path, digits):
    onnx_path, _, _, ckpt = compressed
    x = digits.test.x[:16].numpy()
    ref = load_model(onnx_path).predict(x)
    sizes = {}
    for policy in ("none", "huffman", "zstd", "best"):
        r = write_artifact(onnx_path, tmp_path / f"{policy}.eslim", onnx_metadata(ckpt),
                           options=PackOptions(entropy=policy))
        sizes[policy] = r["bytes"]
        assert np.array_equal(load_model(tmp_path / f"{policy}.eslim").predict(x), ref)
    assert sizes["best"] <= min(sizes["huffman"], sizes["zstd"]) < sizes["none"]


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x40]) + data[pos + 1:]


def _layout(path):
    """(name, start, length) of the manifest and of every part in the file."""
    data = path.read_bytes()
    m_len, _ = struct.unpack_from("<IB", data, 8)
    (sig_len,) = struct.unpack_from("<H", data, 13 + m_len + 32)
    payload = 13 + m_len + 32 + 2 + sig_len
    manifest = read_artifact(path).manifest
    return data, [("manifest.json", 13, m_len)] + [(p["name"], payload + p["offset"], p["length"])
                                                   for p in manifest["parts"]]


def test_a_flipped_byte_in_any_part_is_refused_naming_the_part(compressed, tmp_path):
    _, eslim, _, _ = compressed
    data, layout = _layout(eslim)
    assert len(layout) == 1 + 1 + 8  # manifest, graph, 8 tensors
    bad = tmp_path / "bad.eslim"
    for name, start, length in layout:
        for pos in {start, start + length // 2, start + length - 1}:
            bad.write_bytes(_flip(data, pos))
            with pytest.raises(ArtifactError, match=f"part '{name}' is corrupt"):
                load_model(bad)


def test_a_flipped_byte_anywhere_is_refused(compressed, tmp_path):
    _, eslim, _, _ = compressed
    data = eslim.read_bytes()
    bad = tmp_path / "bad.eslim"
    for pos in list(range(0, 64)) + list(range(64, len(data), 97)) + list(range(len(data) - 40, len(data))):
        bad.write_bytes(_flip(data, pos))
        with pytest.raises(ArtifactError):
            read_artifact(bad)
    bad.write_bytes(data[:-100])
    with pytest.raises(ArtifactError):
        read_artifact(bad)
    bad.write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(ArtifactError, match="not an .eslim"):
        load_model(bad)


def test_signatures(compressed, keys, tmp_path, digits_checkpoint):
    (priv, pub), (_, other_pub) = keys
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600 and b"PRIVATE KEY" in priv.read_bytes()
    assert b"PUBLIC KEY" in pub.read_bytes()
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        generate_keypair(priv)
    onnx_path, unsigned, _, ckpt = compressed
    signed = tmp_path / "signed.eslim"
    write_artifact(onnx_path, signed, onnx_metadata(ckpt), sign_key=priv)
    runner = load_model(signed, public_key=pub)
    assert runner.metadata["artifact"]["signature_verified"] is True
    assert load_model(signed).metadata["artifact"]["signed"] is True  # hashes only without a key
    with pytest.raises(ArtifactError, match="does not verify"):
        load_model(signed, public_key=other_pub)
    with pytest.raises(ArtifactError, match="not signed"):
        load_model(unsigned, public_key=pub)
    with pytest.raises(ArtifactError, match="not an ed25519|not a PEM"):
        load_model(signed, public_key=priv)


def test_a_signature_moved_to_another_model_is_refused(compressed, keys, tmp_path, digits_checkpoint):
    """An attacker can recompute every sha256 but cannot re-sign: re-hashed forgeries fail."""
    (priv, pub), _ = keys
    onnx_path, _, _, ckpt = compressed
    genuine = write_artifact(onnx_path, tmp_path / "a.eslim", onnx_metadata(ckpt), sign_key=priv)
    other = {**onnx_metadata(ckpt), "class_names": ["x"] * 10}
    write_artifact(onnx_path, tmp_path / "b.eslim", other)
    sig = _signature(tmp_path / "a.eslim")
    data = (tmp_path / "b.eslim").read_bytes()[:-32]
    m_len, _ = struct.unpack_from("<IB", data, 8)
    at = 13 + m_len + 32
    forged = data[:at] + struct.pack("<H", len(sig)) + sig + data[at + 2:]
    forged += hashlib.sha256(forged).digest()
    (tmp_path / "forged.eslim").write_bytes(forged)
    assert read_artifact(tmp_path / "forged.eslim").signed  # every digest is consistent...
    with pytest.raises(ArtifactError, match="does not verify"):
        load_model(tmp_path / "forged.eslim", public_key=pub)  # ...but the signature is not
    assert genuine["signed"]


def _signature(path) -> bytes:
    data = path.read_bytes()
    m_len, _ = struct.unpack_from("<IB", data, 8)
    at = 13 + m_len + 32
    (n,) = struct.unpack_from("<H", data, at)
    return data[at + 2:at + 2 + n]


def test_manifest_lists_model_spec_and_every_part(compressed):
    _, eslim, _, ckpt = compressed
    m = read_artifact(eslim).manifest
    assert m["model_name"] == "seed-cnn" and m["input"]["shape"][1:] == [1, 32, 32]
    assert m["preprocess"] == ckpt.meta["preprocess"] and m["class_names"] == ckpt.class_names
    assert "accuracy" in m["metrics"]
    assert {p["name"] for p in m["parts"]} == {"graph.onnx"} | {t["part"] for t in m["tensors"]}
    assert all(len(p["sha256"]) == 64 for p in m["parts"])
    assert eslim.read_bytes().startswith(MAGIC)
    json.dumps(m)


def test_loading_an_eslim_never_imports_torch(compressed, keys):
    _, eslim, _, ckpt = compressed
    (_, pub), _ = keys
    code = (
        "import sys, numpy as np\n"
        "from edgeslim.runtime import load_model\n"
        "from edgeslim.runtime.artifact import verify_artifact\n"
        f"r = load_model({str(eslim)!r})\n"
        "print(r.predict(np.zeros((2, 1, 32, 32), np.float32)).shape)\n"
        f"verify_artifact({str(eslim)!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(2, 10)" in out.stdout
