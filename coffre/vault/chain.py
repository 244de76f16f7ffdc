"""Forward-secure MAC chain and signed checkpoints, for the tamper-evident access log.

Each entry i carries ``MAC_i = HMAC-SHA256(k_i, entry_i || MAC_{i-1})`` and the key moves
on, ``k_{i+1} = SHA-256(k_i)`` (as Acra's audit log). Whoever holds k_i can append but
cannot recompute an earlier MAC, so a compromise today cannot rewrite yesterday. The
verifier derives every k_i from k_0, which is random and sealed to the auditor's X25519
public key: the server forgets it after the first entry. Checkpoints of the chain head
are signed with Ed25519, so their copies outside the database can be checked with a
public key.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from coffre.vault.errors import DecryptionError

GENESIS = b"\x00" * 32


def chain_mac(key: bytes, entry: bytes, previous: bytes) -> bytes:
    return hmac.new(key, entry + previous, hashlib.sha256).digest()


def next_key(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def digest(data: bytes) -> str:
    """A SHA-256 digest (hex) that stands for a sealed field inside a chained entry."""
    return hashlib.sha256(data).hexdigest()


def same_mac(one: bytes, two: bytes) -> bool:
    return hmac.compare_digest(one, two)


class CheckpointSigner:
    """Ed25519 signatures over checkpoint lines, from a 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_bytes = self._private.public_key().public_bytes(Encoding.Raw,
                                                                    PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def signature_valid(public_bytes: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_bytes).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the auditor's key: k_0 sealed so that the running server cannot read it back -----

_AUDITOR_INFO = b"coffre/auditor-seal/v1"


def new_auditor_keypair() -> tuple[bytes, bytes]:
    """(private, public) raw X25519 keys for the person who verifies the log offline."""
    private = X25519PrivateKey.generate()
    return (private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def auditor_public_of(private: bytes) -> bytes | None:
    """The public key of a raw X25519 private key; None for anything else (to recognise
    an auditor private key lying in a file without trusting its name)."""
    try:
        key = X25519PrivateKey.from_private_bytes(private)
    except ValueError:
        return None
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _auditor_aead(shared: bytes, ephemeral: bytes, public: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=_AUDITOR_INFO + ephemeral + public).derive(shared)
    return AESGCM(key)


def seal_for_auditor(public: bytes, secret: bytes) -> bytes:
    """Encrypt to the auditor's public key (X25519 + HKDF + AES-256-GCM, an ECIES)."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
    nonce = os.urandom(12)
    aead = _auditor_aead(shared, ephemeral_public, public)
    return ephemeral_public + nonce + aead.encrypt(nonce, secret, ephemeral_public)


def open_as_auditor(private: bytes, blob: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ephemeral_public, nonce, sealed = blob[:32], blob[32:44], blob[44:]
    shared = key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    try:
        return _auditor_aead(shared, ephemeral_public, public).decrypt(nonce, sealed,
                                                                       ephemeral_public)
    except InvalidTag:
        raise DecryptionError("this auditor key does not open the chain's first key") from None
