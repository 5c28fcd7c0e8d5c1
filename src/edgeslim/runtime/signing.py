"""ed25519 keys and signatures for ``.eslim`` artifacts (``cryptography``; torch-free).

``edgeslim keygen --out key`` writes ``key`` (PKCS#8 PEM private key, mode 0600) and
``key.pub`` (SubjectPublicKeyInfo PEM). Packing with ``--sign key`` signs the SHA-256
digest of the artifact's manifest, which lists the SHA-256 of every other part.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .._io import atomic_write_bytes
from ..errors import ArtifactError

SIGNATURE_BYTES = 64


def public_key_path(private_key_path: str | os.PathLike) -> Path:
    return Path(f"{private_key_path}.pub")


def generate_keypair(out: str | os.PathLike, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new private key to ``out`` (0600) and its public key to ``out.pub``."""
    out = Path(out)
    pub = public_key_path(out)
    if not overwrite and (out.exists() or pub.exists()):
        raise ArtifactError(f"{out} or {pub} already exists; refusing to overwrite a key (`edgeslim keygen "
                            "--overwrite`, or overwrite=True in Python, replaces it)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write_bytes(out, private_pem)  # mkstemp creates it 0600; chmod states the intent
    os.chmod(out, 0o600)
    atomic_write_bytes(pub, public_pem)
    os.chmod(pub, 0o644)
    return out, pub


def _load_pem_key(path, parse, key_type: type, missing: str, malformed: str, kind: str):
    try:
        key = parse(Path(path).read_bytes())
    except FileNotFoundError:
        raise ArtifactError(missing) from None
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{path}: not {malformed} ({e})") from None
    if not isinstance(key, key_type):
        raise ArtifactError(f"{path}: not an ed25519 {kind} key")
    return key


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    return _load_pem_key(path, lambda data: serialization.load_pem_private_key(data, password=None),
                         Ed25519PrivateKey, f"signing key not found: {path} (create one with `edgeslim keygen "
                         f"--out {path}`)", "an unencrypted PEM private key", "private")


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    return _load_pem_key(path, serialization.load_pem_public_key, Ed25519PublicKey,
                         f"public key not found: {path}", "a PEM public key", "public")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex digits of the SHA-256 of its raw bytes)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_digest(private_key: Ed25519PrivateKey, digest: bytes) -> bytes:
    return private_key.sign(digest)


def verify_digest(public_key: Ed25519PublicKey, digest: bytes, signature: bytes, what: str = "artifact") -> None:
    """Raise ``ArtifactError`` unless ``signature`` is ``public_key``'s signature of ``digest``."""
    try:
        public_key.verify(signature, digest)
    except InvalidSignature:
        raise ArtifactError(f"{what}: signature does not verify with public key {key_id(public_key)} "
                            "(wrong key, or the manifest was altered after signing)") from None
