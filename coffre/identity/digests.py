"""Every patient in scope decrypted once, kept as keyed digests of the values a leaked
row or a new decoy identity is compared on: the NIR, each name with the birth date,
the phone and the e-mail, normalised as the registry normalises them.

BLAKE2b in its keyed mode (a MAC), under a random key drawn for each table and never
written anywhere, looked up by the first 64 bits. No plaintext is kept; the decrypted
values live only while their digests are computed. Used by the breach scan (a leaked
file against the installation) and by decoy identities (a canary or watermark row
must share no identifier with a patient of its lab).

With ``helpers``, the patients are decrypted in forked processes, a share of the labs
each (the CLI's breach scan of a large file).
"""

from __future__ import annotations

import multiprocessing
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator

from django.db import connection

from coffre.connections import release_connections
from coffre.identity import french
from coffre.identity.models import Patient
from coffre.identity.registry import open_columns
from coffre.vault import ScratchDigest

_FIELDS = ("nir", "birth_name", "used_name", "birth_date", "phone", "email")


_SLOTS = ("nir", "name", "phone", "email")
_MIXED = 0xFFFF_FFFF_FFFF_FFFF  # digests are looked up by their first 64 bits


def _digest_key(digest: ScratchDigest, text: str) -> int:
    return int.from_bytes(digest(text)[:8], "big")


def nir_text(nir: str) -> str:
    return "i\x1f" + nir


def name_text(birth_date: str, name: str) -> str:
    return f"n\x1f{birth_date}\x1f{name}"


def phone_text(phone: str) -> str:
    return "p\x1f" + phone


def email_text(email: str) -> str:
    return "e\x1f" + email.lower()


def _patient_texts(values: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(slot, text to digest) of one decrypted patient's compared values."""
    if values["nir"]:
        yield "nir", nir_text(values["nir"])
    birth = values["birth_date"]
    if birth:
        names = {n for n in (french.normalize_name(values["birth_name"]),
                             french.normalize_name(values["used_name"])) if n}
        for name in sorted(names):
            yield "name", name_text(birth, name)
    if values["phone"]:
        yield "phone", phone_text(values["phone"])
    if values["email"]:
        yield "email", email_text(values["email"])


class PatientDigests:
    """The patients in scope, each decrypted once: ``ids`` and ``labs`` by position, and
    per compared value a map from digest (first 64 bits) to position (an int, or a
    list of positions when several patients share the value: a family's phone)."""

    def __init__(self, lab_id: int | None = None, helpers: int = 0) -> None:
        self.digest = ScratchDigest()
        self.ids: list[uuid.UUID] = []
        self.labs: list[int] = []
        self.maps: dict[str, dict[int, int | list[int]]] = {slot: {} for slot in _SLOTS}
        scope = Patient.unscoped.filter(data_key__isnull=False)
        if lab_id is not None:
            scope = scope.filter(lab_id=lab_id)
        positions: dict[uuid.UUID, int] = {}
        per_lab: Counter = Counter()
        for pid, lab in scope.order_by("lab_id", "id").values_list("id", "lab_id").iterator(
                chunk_size=10_000):
            positions[pid] = len(self.ids)
            self.ids.append(pid)
            self.labs.append(lab)
            per_lab[lab] += 1
        for part in _decrypt_parts(positions, per_lab, self.digest, helpers):
            self._add(part)

    @classmethod
    def empty(cls) -> PatientDigests:
        """No patient (a scan of files without a single row)."""
        found = cls.__new__(cls)
        found.digest, found.ids, found.labs = ScratchDigest(), [], []
        found.maps = {slot: {} for slot in _SLOTS}
        return found

    def _add(self, part: dict[str, array]) -> None:
        for slot, pairs in part.items():
            found = self.maps[slot]
            for at in range(0, len(pairs), 2):
                key, pos = pairs[at] & _MIXED, pairs[at + 1]
                known = found.get(key)
                if known is None:
                    found[key] = pos
                elif isinstance(known, list):
                    known.append(pos)
                elif known != pos:
                    found[key] = [known, pos]

    def get(self, slot: str, text: str) -> list[int]:
        """Positions of the patients whose ``slot`` value digests like ``text``."""
        found = self.maps[slot].get(_digest_key(self.digest, text))
        if found is None:
            return _NONE
        return found if isinstance(found, list) else [found]


_NONE: list[int] = []


def _decrypt_parts(positions: dict[uuid.UUID, int], per_lab: Counter, digest: ScratchDigest,
                   helpers: int) -> Iterator[dict[str, array]]:
    """The digests of every patient, a lab at a time: here, or in ``helpers`` forked
    processes sharing out the labs (largest first)."""
    labs = [lab for lab, _n in per_lab.most_common()]
    if helpers < 1 or len(labs) < 2:
        for lab in labs:
            yield _decrypt_lab(lab, positions, digest)
        return
    if connection.in_atomic_block:
        for lab in labs:
            yield _decrypt_lab(lab, positions, digest)
        return
    global _FORKED
    _FORKED = (positions, digest)  # inherited by the forked helpers, never pickled
    # Each helper opens its own connection: a connection pool copied into the children
    # would hand its one socket to all of them at once (two helpers then read each
    # other's answers, or hang).
    release_connections()
    pool = multiprocessing.get_context("fork").Pool(helpers)
    try:
        yield from pool.imap_unordered(_forked_lab, labs)
    finally:
        pool.terminate()
        pool.join()
        _FORKED = None


_FORKED: tuple[dict[uuid.UUID, int], ScratchDigest] | None = None


def _forked_lab(lab_id: int) -> dict[str, array]:
    assert _FORKED is not None
    return _decrypt_lab(lab_id, *_FORKED)


def _decrypt_lab(lab_id: int, positions: dict[uuid.UUID, int], digest: ScratchDigest
                 ) -> dict[str, array]:
    """(digest key, position) pairs of one lab's patients, flat per slot. Plain SQL: the
    ORM's model instances of wide sealed rows cost more than the decryption."""
    meta, quote = Patient._meta, connection.ops.quote_name
    pk = meta.pk
    columns = ", ".join(quote(meta.get_field(name).column)
                        for name in ("id", "data_key", *_FIELDS))
    sql = (f"SELECT {columns} FROM {quote(meta.db_table)} "  # noqa: S608 - names from the model
           f"WHERE {quote(meta.get_field('lab').column)} = %s AND "
           f"{quote(meta.get_field('data_key').column)} IS NOT NULL")
    pairs = {slot: array("q") for slot in _SLOTS}
    with connection.cursor() as cursor:
        cursor.execute(sql, [lab_id])
        while rows := cursor.fetchmany(2000):
            for raw_id, wrapped, *blobs in rows:
                pid = pk.to_python(raw_id)
                pos = positions.get(pid)
                if pos is None:  # created since the positions were listed
                    continue
                values = open_columns(pid, lab_id, wrapped,
                                      dict(zip(_FIELDS, blobs, strict=True)))
                for slot, text in _patient_texts(values):
                    pairs[slot].extend((_signed(_digest_key(digest, text)), pos))
    return pairs


def _signed(value: int) -> int:
    """A 64-bit digest key as array("q") stores it (masked back on reading)."""
    return value - (1 << 64) if value >= 1 << 63 else value
