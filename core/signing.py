"""The service's Ed25519 signing key: signatures on records kept apart from the database
(audit checkpoints, deletion receipts) that anyone holding the public key can check.

    signer = Signer.from_settings(settings)   RECORDER_SIGNING_KEY_PATH, else (not in production)
                                              {data_dir}/keys/signing-ed25519.pem, made on first use
    sig = signer.sign(data)                   base64 of the 64-byte signature
    verify(signer.public_key_pem(), data, sig) -> bool

A generated key is written once, atomically (processes starting together agree on one
key), readable by its owner only; its public half is written next to it
(`signing-ed25519.pub.pem`) and served at `GET /v1/audit/public-key`. In production the
key must be provided (every API and worker process signs with the same key): without
`RECORDER_SIGNING_KEY_PATH` signing fails with `signing_key_missing`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import RecorderError

__all__ = ["Signer", "verify", "key_id", "KEY_FILE", "PUBLIC_FILE"]

KEY_FILE = Path("keys") / "signing-ed25519.pem"  # under data_dir
PUBLIC_FILE = Path("keys") / "signing-ed25519.pub.pem"
SIGNATURE_BYTES = 64


class Signer:
    """Signs bytes with one Ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> "Signer":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "the key") -> "Signer":
        """A PKCS#8 PEM private key (unencrypted), which must be Ed25519."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise _key_error(f"{source} is not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise _key_error(f"{source} is not an Ed25519 key")
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> "Signer":
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise _key_error(f"cannot read the signing key {path}: {exc.strerror}", "signing_key_missing") from exc
        return cls.from_pem(pem, str(path))

    @classmethod
    def load_or_create(cls, path: Path) -> "Signer":
        """The key at `path`, made there first if missing (one winner among racing processes)."""
        if not path.exists():
            _write_once(path, cls.generate().private_key_pem())
        signer = cls.load(path)
        public = path.with_name(path.name.removesuffix(".pem") + ".pub.pem")
        if not public.exists():
            _write_once(public, signer.public_key_pem().encode(), mode=0o644)
        return signer

    @classmethod
    def from_settings(cls, settings: Any) -> "Signer":
        """The configured key, else (outside production) the generated one under data_dir."""
        if settings.signing_key_path:
            return cls.load(Path(settings.signing_key_path))
        if settings.env == "production":
            raise _key_error("RECORDER_SIGNING_KEY_PATH must name the service's Ed25519 key in production "
                             "(every API and worker process signs with the same key)", "signing_key_missing")
        return cls.load_or_create(Path(settings.data_dir) / KEY_FILE)

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data)).decode("ascii")

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def public_key_pem(self) -> str:
        return self.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def private_key_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    @property
    def key_id(self) -> str:
        return key_id(self.public_key_pem())


def key_id(public_key_pem: str | bytes) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 over its raw bytes."""
    raw = _public_key(public_key_pem).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def verify(public_key_pem: str | bytes, data: bytes, signature: str) -> bool:
    """Is `signature` (base64, canonical encoding only) a signature of `data` by this key?"""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    # A base64 text with other padding bits decodes to the same bytes: one text per signature.
    if len(raw) != SIGNATURE_BYTES or base64.b64encode(raw).decode("ascii") != signature:
        return False
    try:
        _public_key(public_key_pem).verify(raw, data)
    except InvalidSignature:
        return False
    return True


def _public_key(pem: str | bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _key_error("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise _key_error("not an Ed25519 public key")
    return key


def _write_once(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `path` atomically unless it exists (then the other writer's file is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if it exists: never replaces a key
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def _key_error(message: str, code: str = "signing_key_invalid") -> RecorderError:
    return RecorderError(message, code=code)
