"""Chunked streaming AEAD (AES-256-GCM) for files too big to seal in one piece: backups.

Layout::

    magic "COFFRESTRM" (10) | version (1) | header length (4, big endian) | header (JSON)
    chunk 0 | chunk 1 | ... | chunk n-1          each: ciphertext + tag (16)

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds
0..chunk_size bytes (an empty stream still has one, empty, final chunk). The header
carries a random 32-byte salt; the stream key is HKDF(key, salt, info) so each file has
its own key and the nonce can simply be the chunk counter. The associated data of a
chunk is SHA-256(magic..header) | index (8) | final flag (1) and, on the final chunk only,
the total plaintext length (8). Hence a changed header, a changed or moved chunk, a
dropped tail (the new last chunk was not sealed as final) or appended bytes (the real
final chunk is no longer last) all fail to open.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coffre.vault.errors import DecryptionError

MAGIC = b"COFFRESTRM"
STREAM_VERSION = 1
CHUNK_SIZE = 1 << 20
TAG_BYTES = 16
SALT_BYTES = 32
MAX_HEADER = 64 * 1024
_INFO = b"coffre/stream/v1"

Advance = Callable[[int], None]


def _stream_aead(key: bytes, salt: bytes) -> AESGCM:
    if len(key) != 32:
        raise ValueError("a stream key needs 32 bytes")
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(key))


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", index)


def _ad(header_digest: bytes, index: int, final: bool, total: int) -> bytes:
    ad = header_digest + struct.pack(">QB", index, 1 if final else 0)
    return ad + struct.pack(">Q", total) if final else ad


def _read_full(src: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    missing = size
    while missing:
        part = src.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, fields: dict,
                   chunk_size: int = CHUNK_SIZE, advance: Advance | None = None) -> dict:
    """Encrypt ``src`` to ``dst`` under ``key`` (32 bytes); ``fields`` (JSON, public,
    authenticated) go into the header. Returns the header written."""
    if chunk_size < 1:
        raise ValueError("chunk size must be positive")
    salt = os.urandom(SALT_BYTES)
    header = {**fields, "stream": STREAM_VERSION, "chunk_size": chunk_size,
              "salt": salt.hex()}
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    prefix = MAGIC + bytes((STREAM_VERSION,)) + struct.pack(">I", len(body)) + body
    digest = hashlib.sha256(prefix).digest()
    aead = _stream_aead(key, salt)
    dst.write(prefix)
    index = total = 0
    chunk = _read_full(src, chunk_size)
    while True:
        following = _read_full(src, chunk_size) if len(chunk) == chunk_size else b""
        final = not following
        total += len(chunk)
        dst.write(aead.encrypt(_nonce(index), chunk, _ad(digest, index, final, total)))
        if advance:
            advance(len(chunk))
        if final:
            return header
        chunk, index = following, index + 1


def read_header(src: BinaryIO) -> dict:
    """The public header (not yet authenticated: decrypt_stream checks it)."""
    start = _read_full(src, len(MAGIC) + 5)
    if len(start) < len(MAGIC) + 5 or not start.startswith(MAGIC):
        raise DecryptionError("not a Coffre encrypted stream")
    if start[len(MAGIC)] != STREAM_VERSION:
        raise DecryptionError(f"unknown stream version {start[len(MAGIC)]}")
    (length,) = struct.unpack(">I", start[len(MAGIC) + 1:])
    if length > MAX_HEADER:
        raise DecryptionError("stream header is too long")
    body = _read_full(src, length)
    try:
        header = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DecryptionError("stream header is damaged") from None
    if len(body) != length or not isinstance(header, dict):
        raise DecryptionError("stream header is damaged")
    header["_prefix_digest"] = hashlib.sha256(start + body).hexdigest()
    return header


def decrypt_stream(src: BinaryIO, dst: BinaryIO | None, key: bytes,
                   advance: Advance | None = None) -> dict:
    """Decrypt and authenticate the whole of ``src`` (written to ``dst`` unless None).

    Raises DecryptionError on a wrong key, a changed byte, a truncated, reordered or
    extended stream. Returns the header with ``total`` (plaintext bytes) added.
    """
    header = read_header(src)
    try:
        chunk_size = int(header["chunk_size"])
        salt = bytes.fromhex(header["salt"])
    except (KeyError, TypeError, ValueError):
        raise DecryptionError("stream header is damaged") from None
    if not 0 < chunk_size <= 64 << 20 or len(salt) != SALT_BYTES:
        raise DecryptionError("stream header is damaged")
    digest = bytes.fromhex(header.pop("_prefix_digest"))
    aead = _stream_aead(key, salt)
    sealed_size = chunk_size + TAG_BYTES
    index = total = 0
    sealed = _read_full(src, sealed_size)
    while True:
        following = _read_full(src, sealed_size) if len(sealed) == sealed_size else b""
        final = not following
        if len(sealed) < TAG_BYTES:
            raise DecryptionError(f"stream is truncated at chunk {index}")
        size = len(sealed) - TAG_BYTES
        try:
            plain = aead.decrypt(_nonce(index), sealed, _ad(digest, index, final, total + size))
        except InvalidTag:
            raise DecryptionError(
                f"chunk {index} does not authenticate: wrong key, changed, truncated or "
                f"reordered data") from None
        total += size
        if dst is not None:
            dst.write(plain)
        if advance:
            advance(len(sealed))
        if final:
            return {**header, "total": total}
        sealed, index = following, index + 1
