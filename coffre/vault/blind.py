"""Blind indexes: searchable, truncated keyed hashes of normalised values.

A lookup hashes the normalised query, fetches the rows with the same truncated hash
(about C of them), decrypts those few and keeps the true matches. Truncation is sized
by the CipherSweet rule 2 <= C <= sqrt(R), where C = R / 2**bits is the expected number
of rows sharing one index value among R rows: a stolen dump then cannot confirm a
guessed value, because every hash value stands for several patients.
"""

from __future__ import annotations

import hmac
import math

from coffre.vault.aead import Key

MAX_BITS = 31  # stored in a signed 32-bit column


def index_bits(expected_rows: int) -> int:
    """Largest truncation keeping at least two expected rows per index value."""
    if expected_rows < 8:
        return 1
    bits = min(MAX_BITS, math.floor(math.log2(expected_rows / 2)))
    coincidences = expected_rows / 2**bits
    assert 2 <= coincidences <= math.sqrt(expected_rows)
    return bits


class BlindIndexer:
    """Computes the blind indexes of one installation.

    Each index gets its own HMAC key, derived with HKDF from the index root key, so
    equal values in two indexes (a phone typed as an email...) hash differently.
    """

    def __init__(self, root: Key, bits: int) -> None:
        if not 1 <= bits <= MAX_BITS:
            raise ValueError("blind index bits must be between 1 and 31")
        self.bits = bits
        self._root = root
        self._keys: dict[str, bytes] = {}

    def _key(self, index: str) -> bytes:
        key = self._keys.get(index)
        if key is None:
            key = self._keys[index] = self._root.derive(b"coffre/blind-index/v1/" + index.encode())
        return key

    def compute(self, index: str, normalized: str) -> int:
        """Index value of an already normalised input (see coffre.identity.french)."""
        digest = hmac.digest(self._key(index), normalized.encode(), "sha256")  # the C path
        return int.from_bytes(digest[:4], "big") >> (32 - self.bits)
