"""Blind indexes: searchable, truncated keyed hashes of normalised values.

A lookup hashes the normalised query, fetches the rows with the same truncated hash,
decrypts those few and keeps the true matches. Truncation follows the CipherSweet rule
``2 <= C <= sqrt(R)``, where C is the expected number of rows sharing one index value
among R rows.

A row carries several indexes (NIR, two names with the birth date, phone, e-mail), and
someone who can compute index values (a probe patient created through the application)
can intersect them: what must stay ambiguous is the row's whole tuple of index values,
not each index alone. :func:`plan_index_bits` therefore shares one budget,
``floor(log2(R / 2))`` bits for a lab's planned population R, between the indexes of a
row (CipherSweet's ``C = R / 2**sum(L_i)``), giving each bit where it saves the most
decryption per search. Each lab has its own index key (:class:`BlindIndexer`), so equal
values in two labs have unrelated index values: a copy of the database cannot link one
person's rows across labs, and a probe in one lab says nothing about another.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping

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


def plan_index_bits(population: int, indexes: Mapping[str, tuple[int, int]]
                    ) -> dict[str, int]:
    """Bits per index for a row holding ``indexes`` (name -> (columns on the row, how
    often it is searched)), so that the row's combined bits stay within
    ``index_bits(population)``: the whole tuple of a row's index values then stands for
    at least two rows of the population.

    Greedy: a search over an index of L bits decrypts about ``columns * R / 2**L``
    candidates; each step gives one more bit (per column) to the index whose searches
    it makes the cheapest, while the budget allows. An index may get no bit at all
    (a tiny population): its searches then decrypt the whole lab.
    """
    budget = index_bits(population)
    bits = dict.fromkeys(indexes, 0)
    used = 0
    while True:
        affordable = [name for name, (columns, _weight) in indexes.items()
                      if used + columns <= budget and bits[name] < MAX_BITS]
        if not affordable:
            return bits
        best = max(affordable, key=lambda name: indexes[name][1] / 2 ** bits[name])
        bits[best] += 1
        used += indexes[best][0]


def combined_bits(bits: Mapping[str, int], indexes: Mapping[str, tuple[int, int]]) -> int:
    """The bits a row's tuple of index values carries (``sum(columns * L)``)."""
    return sum(indexes[name][0] * value for name, value in bits.items())


class BlindIndexer:
    """Computes blind indexes under one index key (a lab's, or the legacy
    installation-wide one).

    Each index gets its own HMAC key, derived with HKDF from the index key, so equal
    values in two indexes (a phone typed as an email...) hash differently. ``bits`` is
    one truncation for every index or a truncation per index.
    """

    __slots__ = ("_bits", "_keys", "_root", "key_id")

    def __init__(self, root: Key, bits: int | Mapping[str, int]) -> None:
        values = [bits] if isinstance(bits, int) else list(bits.values())
        if not all(0 <= value <= MAX_BITS for value in values):
            raise ValueError("blind index bits must be between 0 and 31")
        self._bits = bits
        self._root = root
        self._keys: dict[str, bytes] = {}
        self.key_id = root.hex_id

    def bits_of(self, index: str) -> int:
        if isinstance(self._bits, int):
            return self._bits
        return self._bits[index]

    @property
    def bits(self) -> int:
        """The single truncation of a legacy indexer (one for every index)."""
        if not isinstance(self._bits, int):
            raise TypeError("this indexer has one truncation per index: use bits_of()")
        return self._bits

    def _key(self, index: str) -> bytes:
        key = self._keys.get(index)
        if key is None:
            key = self._keys[index] = self._root.derive(b"coffre/blind-index/v1/" + index.encode())
        return key

    def compute(self, index: str, normalized: str) -> int:
        """Index value of an already normalised input (see coffre.identity.french)."""
        digest = hmac.digest(self._key(index), normalized.encode(), "sha256")  # the C path
        return int.from_bytes(digest[:4], "big") >> (32 - self.bits_of(index))
