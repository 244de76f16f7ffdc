"""Symmetric keys and the one ciphertext format of Coffre (AES-256-GCM).

Layout of every ciphertext (sealed value or wrapped key)::

    version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext + tag (16 bytes)

The associated data is the 5-byte header followed by a context string naming where the
value lives (table, column, row id), so a ciphertext copied to another row, column or
key slot fails to open. Plaintexts are padded (ISO/IEC 7816-4) to a multiple of 16 bytes
and to a per-column minimum so that lengths leak little (e.g. whether a note exists).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coffre.vault.errors import DecryptionError

FORMAT_AES256GCM_V1 = 1
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
HEADER_BYTES = 1 + KEY_ID_BYTES
PAD_BLOCK = 16
MAC_BYTES = 16
_MAC_INFO = b"coffre/row-mac/v1"


def context(*parts: object) -> bytes:
    """Associated data naming a value's place, e.g. ``context("patient", "nir", row_id)``."""
    return "\x1f".join(str(part) for part in parts).encode()


def context_prefix(*parts: object) -> bytes:
    """``context_prefix(a, b) + str(c).encode() == context(a, b, c)``, for hot loops that
    seal many columns of many rows."""
    return context(*parts) + b"\x1f"


def _pad(data: bytes, min_size: int) -> bytes:
    padded = data + b"\x80"
    size = max(min_size, len(padded))
    size += -size % PAD_BLOCK
    return padded.ljust(size, b"\x00")


def _unpad(data: bytes) -> bytes:
    end = data.rfind(b"\x80")
    if end < 0 or data[end + 1 :].strip(b"\x00"):
        raise DecryptionError("ciphertext padding is invalid")
    return data[:end]


class Key:
    """A 256-bit AES-GCM key with a short public identifier.

    The identifier travels in every ciphertext so that rotation can find the right
    key version lazily; it reveals nothing about the key.
    """

    __slots__ = ("_aead", "_header", "_mac_key", "_material", "key_id")

    def __init__(self, key_id: bytes, material: bytes) -> None:
        if len(key_id) != KEY_ID_BYTES or len(material) != KEY_BYTES:
            raise ValueError("a key needs a 4-byte id and 32 bytes of material")
        self.key_id = key_id
        self._material = material
        self._aead = AESGCM(material)
        self._header = bytes((FORMAT_AES256GCM_V1,)) + key_id
        self._mac_key: bytes | None = None

    @classmethod
    def generate(cls) -> Key:
        return cls(secrets.token_bytes(KEY_ID_BYTES), secrets.token_bytes(KEY_BYTES))

    @property
    def hex_id(self) -> str:
        return self.key_id.hex()

    def __repr__(self) -> str:  # never print the material
        return f"<Key {self.hex_id}>"

    def seal_bytes(self, data: bytes, ad: bytes, min_size: int = 0) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return self._header + nonce + self._aead.encrypt(nonce, _pad(data, min_size),
                                                         self._header + ad)

    def open_bytes(self, blob: bytes, ad: bytes) -> bytes:
        blob = bytes(blob)
        if len(blob) < HEADER_BYTES + NONCE_BYTES + 16 or blob[0] != FORMAT_AES256GCM_V1:
            raise DecryptionError("not a Coffre ciphertext")
        if blob[:HEADER_BYTES] != self._header:
            raise DecryptionError(f"ciphertext was sealed under key {blob[1:5].hex()}")
        nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        try:
            padded = self._aead.decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES :],
                                        blob[:HEADER_BYTES] + ad)
        except InvalidTag:
            raise DecryptionError("ciphertext does not open with this key and context") from None
        return _unpad(padded)

    def seal(self, value: str, ad: bytes, min_size: int = 0) -> bytes:
        """Encrypt a text value bound to ``ad`` (see :func:`context`)."""
        return self.seal_bytes(value.encode(), ad, min_size)

    def open(self, blob: bytes, ad: bytes) -> str:
        return self.open_bytes(blob, ad).decode()

    def wrap(self, key: Key, ad: bytes) -> bytes:
        """Encrypt another key under this one (envelope encryption)."""
        return self.seal_bytes(key.key_id + key._material, ad)

    def unwrap(self, blob: bytes, ad: bytes) -> Key:
        raw = self.open_bytes(blob, ad)
        return Key(raw[:KEY_ID_BYTES], raw[KEY_ID_BYTES:])

    def mac(self, data: bytes) -> bytes:
        """A 16-byte tag over ``data``: keyed BLAKE2b (RFC 7693, a MAC by design, a
        third of HMAC-SHA256's cost on a short row) under a subkey derived from this key
        for tags only (HKDF, once per key object). Binds clear data to the key that seals
        the values beside it: destroying the key leaves nothing to check a tag with."""
        if self._mac_key is None:
            self._mac_key = self.derive(_MAC_INFO)
        return hashlib.blake2b(data, key=self._mac_key, digest_size=MAC_BYTES).digest()

    def mac_matches(self, data: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is :meth:`mac` of ``data`` (constant-time comparison)."""
        return hmac.compare_digest(self.mac(data), bytes(tag))

    def derive(self, info: bytes) -> bytes:
        """32 bytes derived for a named purpose (HKDF-SHA256); the key itself stays here."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            self._material
        )


def key_id_of(blob: bytes) -> bytes:
    """The id of the key a ciphertext was sealed under."""
    return bytes(blob[1:HEADER_BYTES])
