"""Forward-secure MAC chain and signed checkpoints, for the tamper-evident access log.

Each entry i carries ``MAC_i = HMAC-SHA256(k_i, entry_i || MAC_{i-1})`` and the key moves
on, ``k_{i+1} = SHA-256(k_i)`` (as Acra's audit log). Whoever holds k_i can append but
cannot recompute an earlier MAC, so a compromise today cannot rewrite yesterday. The
verifier derives every k_i from k_0. Checkpoints of the chain head are signed with
Ed25519, so their copies outside the database can be checked with a public key.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

GENESIS = b"\x00" * 32


def chain_mac(key: bytes, entry: bytes, previous: bytes) -> bytes:
    return hmac.new(key, entry + previous, hashlib.sha256).digest()


def next_key(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


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
