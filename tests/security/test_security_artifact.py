""".eslim artifacts built to attack the reader: zstd bombs in the manifest and in tensor streams
(peak memory of a fresh process measured against a baseline), crafted manifests with valid
digests, stripped signatures and re-hashed weights, and the signature requirement."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zstandard
from PIL import Image

from edgeslim.errors import ArtifactError
from edgeslim.export.artifact import PackOptions, pack_checkpoint
from edgeslim.runtime import codecs, load_model
from edgeslim.runtime.artifact import MAGIC, MAX_MANIFEST_BYTES, read_artifact, verify_artifact
from edgeslim.runtime.signing import generate_keypair

SRC = str(Path(__file__).resolve().parents[2] / "src")
BOMB_BYTES = 2**30  # what each bomb expands to; the old reader allocated all of it
RSS_MARGIN_MB = 150  # allowed above a process that reads a genuine artifact (manifest cap: 16 MiB)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, digits_checkpoint):
    """The digits checkpoint packed twice: signed and unsigned; plus the key pair."""
    folder, _ = digits_checkpoint
    d = tmp_path_factory.mktemp("sec-eslim")
    priv, pub = generate_keypair(d / "key")
    pack_checkpoint(folder, d / "signed.eslim", priv, PackOptions(entropy="zstd"))
    pack_checkpoint(folder, d / "plain.eslim", None, PackOptions(entropy="zstd"))
    img = d / "digit.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(img)
    return {"signed": d / "signed.eslim", "plain": d / "plain.eslim", "priv": priv, "pub": pub, "img": img}


def _split(path: Path) -> tuple[dict, dict[str, bytes], bytes]:
    """(manifest, parts by name, signature) of a genuine file."""
    c = read_artifact(path)
    data = path.read_bytes()
    m_len, _ = struct.unpack_from("<IB", data, 8)
    at = 13 + m_len + 32
    (n,) = struct.unpack_from("<H", data, at)
    return copy.deepcopy(c.manifest), dict(c.parts), data[at + 2:at + 2 + n]


def _assemble(manifest_stored: bytes, codec: int, payload: bytes, signature: bytes = b"") -> bytes:
    """An .eslim with every digest right (what anyone can compute; only the signature is not)."""
    body = b"".join([MAGIC, struct.pack("<IB", len(manifest_stored), codec), manifest_stored,
                     hashlib.sha256(manifest_stored).digest(), struct.pack("<H", len(signature)), signature,
                     payload])
    return body + hashlib.sha256(body).digest()


def _forge(manifest, parts: dict[str, bytes], signature: bytes = b"", fix_parts: bool = True) -> bytes:
    """Re-lay the parts, recompute their offsets and sha256 (unless the test broke ``parts``
    on purpose) and every digest."""
    payload, offset = b"", 0
    if fix_parts:
        for p in manifest["parts"]:
            blob = parts[p["name"]]
            p.update(offset=offset, length=len(blob), sha256=hashlib.sha256(blob).hexdigest())
            offset += len(blob)
            payload += blob
    else:
        payload = b"".join(parts.values())
    return _assemble(json.dumps(manifest).encode(), 0, payload, signature)


def _zstd_bomb(size: int = BOMB_BYTES) -> bytes:
    """A small zstd frame (about 30 KB per GiB) that expands to ``size`` zero bytes."""
    c = zstandard.ZstdCompressor(level=1).compressobj()
    chunk = bytes(1 << 20)
    return b"".join([c.compress(chunk) for _ in range(size >> 20)] + [c.flush()])


def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its own peak RSS (MB) and what it printed."""
    wrapper = ("import resource, sys\n"
               "from edgeslim.errors import EdgeslimError\n"
               "try:\n" + "".join(f"    {line}\n" for line in code.splitlines()) +
               "except EdgeslimError as e:\n    print('refused:', e)\n"
               "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = int(proc.stdout.split("peak")[-1])
    return peak / 1024, proc.stdout


READ = "from edgeslim.runtime.artifact import verify_artifact\nverify_artifact({path!r}, {key!r})"


@pytest.fixture(scope="module")
def baseline_rss(packed):
    peak, out = _peak_rss_mb(READ.format(path=str(packed["plain"]), key=None))
    assert "refused" not in out
    return peak


def test_manifest_zstd_bomb_costs_bounded_memory(packed, tmp_path, baseline_rss):
    manifest, parts, _ = _split(packed["plain"])
    bomb = tmp_path / "manifest-bomb.eslim"
    bomb.write_bytes(_assemble(_zstd_bomb(), 1, b"".join(parts.values())))
    peak, out = _peak_rss_mb(READ.format(path=str(bomb), key=None))
    assert f"more than {MAX_MANIFEST_BYTES:,} bytes" in out
    assert peak < baseline_rss + RSS_MARGIN_MB, (peak, baseline_rss)
    # with a key, the (missing) signature is refused before anything is decompressed
    peak, out = _peak_rss_mb(READ.format(path=str(bomb), key=str(packed["pub"])))
    assert "not signed" in out and peak < baseline_rss + RSS_MARGIN_MB


def test_tensor_stream_zstd_bomb_costs_bounded_memory(packed, tmp_path, baseline_rss):
    manifest, parts, _ = _split(packed["plain"])
    entry = max(manifest["tensors"], key=lambda t: int(np.prod(t["shape"])))
    values = next(s for s in entry["streams"] if s["kind"] == "floats")
    entry.update(encoding="raw", streams=[{**values, "name": "values", "coder": "zstd",
                                           "count": int(np.prod(entry["shape"]))}])
    parts[entry["part"]] = _zstd_bomb()
    entry["streams"][0]["length"] = len(parts[entry["part"]])
    bomb = tmp_path / "stream-bomb.eslim"
    bomb.write_bytes(_forge(manifest, parts))
    assert bomb.stat().st_size < 2**20
    peak, out = _peak_rss_mb(READ.format(path=str(bomb), key=None))
    assert f"tensor {entry['name']!r} cannot be decoded" in out and "more than the" in out
    assert peak < baseline_rss + RSS_MARGIN_MB, (peak, baseline_rss)


def test_huffman_and_bit_packed_streams_cannot_claim_more_symbols():
    enc = codecs.huffman_encode(np.array([0, 1, 1, 2, 3] * 20), 4)
    huge = struct.pack("<I", 2**32 - 1) + enc[4:]  # the header claims 4 billion symbols
    with pytest.raises(ValueError, match="expected 100"):
        codecs.huffman_decode(huge, 100)
    with pytest.raises(ValueError, match="symbols in"):
        codecs.huffman_decode(huge)  # more symbols than the stream has bits
    with pytest.raises(ValueError, match="shorter than its header"):
        codecs.huffman_decode(b"\x01")
    with pytest.raises(ValueError, match="too short"):
        codecs.unpack_bits(b"\xff" * 4, 8, 10**9)


def _mutations(manifest: dict) -> list[tuple[str, object, str]]:
    """(what, crafted manifest, expected words in the error)."""
    out: list[tuple[str, object, str]] = [("a list, not an object", [manifest], "not an edgeslim-artifact v1")]

    def case(what, mutate, expect):
        m = copy.deepcopy(manifest)
        mutate(m)
        out.append((what, m, expect))

    case("part without offset", lambda m: m["parts"][0].pop("offset"), "parts.0.offset")
    case("parts as lists", lambda m: m.update(parts=[[1, 2]]), "parts.0")
    case("negative offset", lambda m: m["parts"][1].update(offset=-5), "greater than or equal to 0")
    case("string length", lambda m: m["parts"][1].update(length="12"), "parts.1.length")
    case("unknown encoding", lambda m: m["tensors"][0].update(encoding="pickle"), "tensors.0.encoding")
    case("object dtype", lambda m: m["tensors"][0].update(dtype="object"), "not a numeric type")
    case("huge shape", lambda m: m["tensors"][0].update(shape=[2**40]), "tensors.0.shape")
    case("count does not match shape", lambda m: m["tensors"][0]["streams"][-1].update(count=1), "declare")
    case("missing stream", lambda m: m["tensors"][0].update(streams=[]), "needs streams")
    case("missing part", lambda m: m["tensors"][0].update(part="tensor/nowhere"), "not listed in parts")
    case("graph without coder", lambda m: m["graph"].pop("coder"), "graph.coder")
    case("metadata as list", lambda m: m.update(metadata=[1]), "metadata")
    return out


def test_crafted_manifests_with_valid_digests_give_clear_errors(packed, tmp_path):
    manifest, parts, _ = _split(packed["plain"])
    path = tmp_path / "crafted.eslim"
    for what, crafted, expect in _mutations(manifest):
        path.write_bytes(_assemble(json.dumps(crafted).encode(), 0, b"".join(parts.values())))
        for call in (read_artifact, verify_artifact, load_model):
            with pytest.raises(ArtifactError, match="manifest") as e:
                call(path)
            assert expect in str(e.value), (what, str(e.value))
    path.write_bytes(_assemble(b"\xff\xfe not json", 0, b"".join(parts.values())))
    with pytest.raises(ArtifactError, match="cannot be read"):
        read_artifact(path)
    path.write_bytes(_assemble(b"{}", 7, b""))
    with pytest.raises(ArtifactError, match="unknown manifest codec 7"):
        read_artifact(path)


def test_crafted_manifest_on_the_command_line(packed, tmp_path):
    manifest, parts, _ = _split(packed["plain"])
    del manifest["parts"][0]["offset"]
    path = tmp_path / "crafted.eslim"
    path.write_bytes(_assemble(json.dumps(manifest).encode(), 0, b"".join(parts.values())))
    for args in (["verify", str(path)], ["verify", str(path), "--key", str(packed["pub"])],
                 ["run", str(path), str(packed["img"])]):
        proc = subprocess.run([sys.executable, "-m", "edgeslim.cli", *args], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": SRC})
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "KeyError" not in proc.stderr and ("manifest" in proc.stderr or "not signed" in proc.stderr)


def _rehashed_without_signature(packed) -> bytes:
    """The signed file with one weight changed, every sha256 recomputed and the signature stripped."""
    from edgeslim.export.artifact import encode_tensor
    from edgeslim.runtime.artifact import decode_tensor

    manifest, parts, sig = _split(packed["signed"])
    assert len(sig) == 64
    i, entry = next((i, t) for i, t in enumerate(manifest["tensors"]) if t["dtype"] == "float32")
    weights = decode_tensor(entry, parts[entry["part"]]).copy()
    weights.flat[0] += 1.0
    manifest["tensors"][i], parts[entry["part"]] = encode_tensor(entry["name"], weights)
    return _forge(manifest, parts)


def test_a_rehashed_unsigned_artifact_warns_and_can_be_refused(packed, tmp_path, monkeypatch, caplog):
    forged = tmp_path / "forged.eslim"
    forged.write_bytes(_rehashed_without_signature(packed))
    with caplog.at_level(logging.WARNING, logger="edgeslim.runtime.runner"):
        load_model(forged)  # digests are consistent: it runs, but not silently
    warning = [r.getMessage() for r in caplog.records if "unverified" in r.getMessage()]
    assert len(warning) == 1 and "not signed" in warning[0] and "\n" not in warning[0]
    with pytest.raises(ArtifactError, match="not signed"):
        load_model(forged, public_key=packed["pub"])
    with pytest.raises(ArtifactError, match="signatures are required"):
        load_model(forged, require_signature=True)
    monkeypatch.setenv("EDGESLIM_REQUIRE_SIGNATURE", "1")
    for path in (forged, packed["plain"], packed["signed"]):  # a signed file needs its key too
        with pytest.raises(ArtifactError, match="signatures are required"):
            load_model(path)
    assert load_model(packed["signed"], public_key=packed["pub"]).metadata["artifact"]["signature_verified"]


def test_signature_policy_on_the_command_line(packed, tmp_path, digits_onnx):
    forged = tmp_path / "forged.eslim"
    forged.write_bytes(_rehashed_without_signature(packed))

    def run(*args, env=None):
        return subprocess.run([sys.executable, "-m", "edgeslim.cli", *args], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": SRC, **(env or {})})

    proc = run("run", str(forged), str(packed["img"]), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: running") and "unverified" in lines[0]
    for args, env in ((["run", str(forged), str(packed["img"])], {"EDGESLIM_REQUIRE_SIGNATURE": "1"}),
                      (["run", str(forged), str(packed["img"]), "--require-signature"], None),
                      (["bench", str(forged), "--rounds", "1", "--warmup", "0", "--require-signature"], None),
                      (["run", str(digits_onnx), str(packed["img"]), "--verify", str(packed["pub"])], None),
                      (["run", str(digits_onnx), str(packed["img"])], {"EDGESLIM_REQUIRE_SIGNATURE": "1"})):
        proc = run(*args, env=env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
        text = " ".join(proc.stderr.split())
        assert "signatures are required" in text or ".onnx files carry no signature" in text, text
    proc = run("run", str(packed["signed"]), str(packed["img"]), "--verify", str(packed["pub"]),
               "--require-signature", "--json")
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr[-2000:]


def test_eslim_directory_is_refused(tmp_path):
    (tmp_path / "dir.eslim").mkdir()
    with pytest.raises(ArtifactError, match="is a directory"):
        load_model(tmp_path / "dir.eslim")
