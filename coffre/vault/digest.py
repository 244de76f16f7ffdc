"""Digests outside encryption, kept in the vault with the rest of the crypto: a stored
token's hash, a MAC over a record, a file's checksum, a scratch comparison key.
No Django here."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import AnyStr

SCRATCH_BYTES = 16


def token_digest(token: str) -> str:
    """SHA-256 (hex) of a random token or secret of 256 bits, stored instead of it. A fast
    hash is enough there: nothing can search a 256-bit space (a password needs Argon2)."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_digest(one: AnyStr, two: AnyStr) -> bool:
    """Constant-time comparison of two digests or MACs of the same type."""
    return hmac.compare_digest(one, two)


def mac_hex(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 (hex) of ``data`` under ``key``."""
    return hmac.digest(key, data, "sha256").hex()


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class ScratchDigest:
    """Keyed 16-byte BLAKE2b digests under a random key that lives only in this object:
    for telling equal values apart within one run without keeping them (never stored,
    so the key never needs to be found again). BLAKE2b's keyed mode costs half an
    HMAC-SHA256 on short values."""

    __slots__ = ("_key",)

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def __call__(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode(), key=self._key,
                               digest_size=SCRATCH_BYTES).digest()
