"""Encrypting a file to a recipient's public key, in the age format (age-encryption.org/v1).

Exports leave the installation only encrypted to the person who asked for them: an age
X25519 recipient (``age1...``). The ``pyrage`` bindings (Rust ``age`` crate) do the work;
the recipient decrypts with the standard ``age`` or ``rage`` tools and their identity.
No Django here.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Iterable
from typing import BinaryIO

import pyrage
from pyrage import x25519

from coffre.vault.errors import DecryptionError, VaultError


class RecipientKeyError(VaultError):
    """The text is not an age X25519 public key."""


def check_recipient(public_key: str) -> str:
    """The canonical form of an age X25519 recipient, or RecipientKeyError."""
    text = public_key.strip()
    try:
        return str(x25519.Recipient.from_str(text))
    except Exception:
        raise RecipientKeyError("not an age X25519 public key (age1...)") from None


def encrypt_to(public_key: str, data: bytes) -> bytes:
    """The age ciphertext of ``data`` for one recipient (fresh file key, chunked
    ChaCha20-Poly1305 payload, X25519 stanza: age's own construction)."""
    recipient = x25519.Recipient.from_str(check_recipient(public_key))
    return pyrage.encrypt(data, [recipient])


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks: pyrage encrypts from a file
    object, and this one produces the plaintext only as it is read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""
        self.error: BaseException | None = None  # raised by the producer, re-raised as is

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except BaseException as error:
                self.error = error
                raise
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def encrypt_stream_to(public_key: str, chunks: Iterable[bytes], out: BinaryIO) -> None:
    """``encrypt_to`` for data too large to hold: each chunk is encrypted as it is
    produced and written to ``out``; the whole plaintext never sits in memory."""
    recipient = x25519.Recipient.from_str(check_recipient(public_key))
    reader = _ChunkReader(chunks)
    try:
        pyrage.encrypt_io(io.BufferedReader(reader, 1 << 16), out, [recipient])
    except pyrage.EncryptError:
        if reader.error is not None:  # pyrage wraps the producer's error: give it back
            raise reader.error from None
        raise


def decrypt_with(identity: str, blob: bytes) -> bytes:
    """For tests and recipients' tooling: open an age file with an ``AGE-SECRET-KEY-``."""
    try:
        return pyrage.decrypt(blob, [x25519.Identity.from_str(identity.strip())])
    except Exception:
        raise DecryptionError("this identity does not open the file") from None


def new_recipient_identity() -> tuple[str, str]:
    """(identity, recipient): an age key pair, as ``age-keygen`` makes."""
    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def fingerprint(key: bytes, text: str) -> str:
    """A keyed fingerprint (HMAC-SHA256, hex) of a short text."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
