"""Models for the server tests: a whole seed-cnn (random weights, dynamic batch axis) exported the
way `edgeslim export` writes it, with preprocessing and class names in its metadata."""
from __future__ import annotations

import pytest

TOKEN = "test-token-0123456789abcdef"
CLASS_NAMES = [f"class-{i}" for i in range(10)]


@pytest.fixture(scope="session")
def whole_cnn(tmp_path_factory):
    import torch

    from edgeslim.export import export_onnx
    from edgeslim.models import create
    from edgeslim.runtime import Preprocess

    torch.manual_seed(0)
    meta = {"input_shape": [1, 32, 32], "class_names": CLASS_NAMES,
            "preprocess": Preprocess(channels=1, resize=(32, 32), mean=(0.5,), std=(0.25,)).to_dict()}
    return export_onnx(create("seed-cnn"), tmp_path_factory.mktemp("whole") / "cnn.onnx", (1, 32, 32), meta)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"
