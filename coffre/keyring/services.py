"""The keyring: loads the master key, keeps unwrapped lab keys in memory, hands out
per-row data keys. The only module that joins the vault to the database.

Unwrapped keys are cached per process (by key id, which never changes meaning), so a
patient read costs one unwrap of the patient's data key and no database round trip
for the lab key.
"""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.db import IntegrityError, transaction

from coffre import config
from coffre.keyring.models import InstallationKey, LabIndexKey, LabKey
from coffre.vault import (
    BlindIndexer,
    DecryptionError,
    Key,
    KeyProviderError,
    MasterKeys,
    VaultError,
    context,
    index_bits,
    key_id_of,
    load_master_keys,
)

INDEX_ROOT = "blind-index-root"

_master: MasterKeys | None = None
_installation_keys: dict[str, KeyVersions] = {}
_lab_keys: dict[bytes, tuple[int, Key]] = {}  # key id -> (lab id, key)
_active_lab_key: dict[int, tuple[float, Key]] = {}  # lab id -> (when checked, key)


def active_key_seconds() -> float:
    """How long a process trusts its cached active lab key before checking the
    database again: after `coffre keys rotate --lab`, a running server wraps new data
    keys under the new lab key within this delay, and `coffre keys retire` waits twice
    as long after a rotation before destroying the old key."""
    return float(os.environ.get("COFFRE_ACTIVE_KEY_SECONDS", "60"))
_indexer: BlindIndexer | None = None


def clear_caches() -> None:
    global _master, _indexer
    _master = None
    _indexer = None
    _installation_keys.clear()
    _lab_keys.clear()
    _active_lab_key.clear()
    from coffre.keyring import indexes  # it builds on this module

    indexes.clear_cache()


def master_keys() -> MasterKeys:
    global _master
    if _master is None:
        _master = load_master_keys(config.key_file(), os.environ)
    return _master


def master_key_by_id(master_key_id: str) -> Key:
    """A master key version by id. A version this process has not seen (the key file
    gained one by `coffre keys rotate --master` while a server ran) reloads the file
    once."""
    global _master
    key_id = bytes.fromhex(master_key_id)
    try:
        return master_keys().by_id(key_id)
    except KeyProviderError:
        _master = None
        return master_keys().by_id(key_id)


def master_for_new_keys() -> Key:
    """The master version to wrap a new key under: the key file is read again, so a
    server started before `coffre keys rotate --master` does not wrap under a version
    that rotation is about to retire."""
    global _master
    _master = None
    return master_keys().current


def _unwrap_with_master(wrapped: bytes, master_key_id: str, ad: bytes, what: str) -> Key:
    master = master_key_by_id(master_key_id)
    try:
        return master.unwrap(wrapped, ad)
    except VaultError:
        raise KeyProviderError(
            f"{what} does not open with master key {master.hex_id}: the key or the "
            "database has been altered"
        ) from None


def initialise(expected_patients: int | None = None) -> bool:
    """Create the installation keys if this database has none. True if created."""
    if InstallationKey.objects.filter(purpose=INDEX_ROOT).exists():
        return False
    master = master_for_new_keys()
    root = Key.generate()
    rows = expected_patients or settings.COFFRE_EXPECTED_PATIENTS
    InstallationKey.objects.create(
        purpose=INDEX_ROOT, key_id=root.hex_id, master_key_id=master.hex_id,
        wrapped=master.wrap(root, context("installation-key", INDEX_ROOT)),
        index_bits=index_bits(rows),
    )
    return True


def check() -> None:
    """Fail closed: raise KeyProviderError unless the master key opens this database's
    index root and every lab key (a damaged lab key stops every start, naming its lab:
    serving the other labs would hide the damage until that lab's patients fail)."""
    try:
        root = InstallationKey.objects.get(purpose=INDEX_ROOT)
    except InstallationKey.DoesNotExist:
        raise KeyProviderError("this database has no keyring: run `coffre init` first") from None
    master = master_keys()
    if not any(k.hex_id == root.master_key_id for k in (master.current, *master.older)):
        raise KeyProviderError(
            f"this database was sealed with master key {root.master_key_id}, but "
            f"{master.source} holds key {master.current.hex_id}: wrong key file?"
        )
    indexer()
    for lab_key in LabKey.objects.select_related("lab"):
        try:
            _load_lab_key(lab_key)
        except KeyProviderError as exc:  # name the lab the way its people know it
            raise KeyProviderError(f"lab {lab_key.lab.finess} ({lab_key.lab.name}): "
                                   f"{exc}") from None
    from coffre.keyring import indexes  # it builds on this module

    for index_key in LabIndexKey.objects.select_related("lab"):
        try:
            indexes.indexer_of(index_key)
        except (KeyProviderError, DecryptionError) as exc:
            raise KeyProviderError(f"lab {index_key.lab.finess} ({index_key.lab.name}): "
                                   f"the blind-index key {index_key.key_id} does not open "
                                   f"({exc})") from None


class KeyVersions:
    """The versions of one installation key: seals and derives with the active version,
    opens a ciphertext with the version its header names (so values sealed before a
    `coffre keys rotate --installation` stay readable until they are re-sealed)."""

    __slots__ = ("_by_id", "_checked", "active", "purpose")

    def __init__(self, purpose: str, active: Key, versions: dict[bytes, Key]) -> None:
        self.purpose = purpose
        self.active = active
        self._by_id = versions
        self._checked = time.monotonic()

    @property
    def hex_id(self) -> str:
        return self.active.hex_id

    def version(self, key_id: bytes) -> Key:
        key = self._by_id.get(key_id)
        if key is None:
            row = InstallationKey.objects.filter(purpose=self.purpose,
                                                 key_id=key_id.hex()).first()
            if row is None:
                raise DecryptionError(f"sealed under {self.purpose} key {key_id.hex()}, "
                                      "which is not in this database (retired?)")
            key = self._by_id[key_id] = _unwrap_installation(row)
        return key

    def all_versions(self) -> list[Key]:
        """Every version present in the database (for keys derived from each: a
        fingerprint made under an older version is still looked up)."""
        for row in InstallationKey.objects.filter(purpose=self.purpose):
            self.version(bytes.fromhex(row.key_id))
        return list(self._by_id.values())

    def seal_bytes(self, data: bytes, ad: bytes, min_size: int = 0) -> bytes:
        return self.active.seal_bytes(data, ad, min_size)

    def seal(self, value: str, ad: bytes, min_size: int = 0) -> bytes:
        return self.active.seal(value, ad, min_size)

    def open_bytes(self, blob: bytes, ad: bytes) -> bytes:
        return self.version(key_id_of(bytes(blob))).open_bytes(blob, ad)

    def open(self, blob: bytes, ad: bytes) -> str:
        return self.open_bytes(blob, ad).decode()

    def derive(self, info: bytes) -> bytes:
        """A key derived from the active version (see coffre.vault.Key.derive)."""
        return self.active.derive(info)

    def __repr__(self) -> str:
        return f"<KeyVersions {self.purpose} active {self.hex_id}>"


def _unwrap_installation(row: InstallationKey) -> Key:
    return _unwrap_with_master(bytes(row.wrapped), row.master_key_id,
                               context("installation-key", row.purpose),
                               f"the {row.purpose} key")


def _load_installation(purpose: str) -> KeyVersions:
    rows = list(InstallationKey.objects.filter(purpose=purpose).order_by("pk"))
    if not rows:
        master = master_for_new_keys()
        key = Key.generate()
        try:
            with transaction.atomic():
                InstallationKey.objects.create(
                    purpose=purpose, key_id=key.hex_id, master_key_id=master.hex_id,
                    wrapped=master.wrap(key, context("installation-key", purpose)))
        except IntegrityError:  # another process created it first: use theirs
            return _load_installation(purpose)
        return KeyVersions(purpose, key, {key.key_id: key})
    versions = {bytes.fromhex(row.key_id): _unwrap_installation(row) for row in rows}
    active = next((row for row in reversed(rows) if row.active), rows[-1])
    return KeyVersions(purpose, versions[bytes.fromhex(active.key_id)], versions)


def installation_key(purpose: str) -> KeyVersions:
    """A key of the whole installation for one purpose (e.g. "audit"), created on first
    use and wrapped by the master key. The active version is looked up again after
    ``active_key_seconds()`` (a rotation by the CLI while a server runs)."""
    key = _installation_keys.get(purpose)
    if key is not None and time.monotonic() - key._checked < active_key_seconds():
        return key
    key = _installation_keys[purpose] = _load_installation(purpose)
    return key


def forget_installation_key(purpose: str) -> None:
    """Read the purpose's versions again at next use (the active one may have changed)."""
    _installation_keys.pop(purpose, None)


def new_installation_version(purpose: str, key: Key) -> None:
    """Make ``key`` the active version of an installation key (the older ones stay,
    inactive, to open what they sealed until it is re-sealed)."""
    master = master_for_new_keys()
    with transaction.atomic():
        list(InstallationKey.objects.select_for_update().filter(purpose=purpose))
        InstallationKey.objects.filter(purpose=purpose, active=True).update(active=False)
        InstallationKey.objects.create(purpose=purpose, key_id=key.hex_id, active=True,
                                       master_key_id=master.hex_id,
                                       wrapped=master.wrap(key, context("installation-key",
                                                                        purpose)))
    _installation_keys.pop(purpose, None)


def indexer() -> BlindIndexer:
    global _indexer
    if _indexer is None:
        try:
            row = InstallationKey.objects.get(purpose=INDEX_ROOT)
        except InstallationKey.DoesNotExist:
            raise KeyProviderError("this database has no keyring: run `coffre init`") from None
        root = _unwrap_with_master(bytes(row.wrapped), row.master_key_id,
                                   context("installation-key", INDEX_ROOT), "the index key")
        if row.index_bits is None:
            raise KeyProviderError("the installation's index key has no size: the keyring "
                                   "was changed outside Coffre")
        _indexer = BlindIndexer(root, row.index_bits)
    return _indexer


def create_lab_key(lab_id: int) -> Key:
    master = master_for_new_keys()
    key = Key.generate()
    with transaction.atomic():
        LabKey.objects.filter(lab_id=lab_id, active=True).update(active=False)
        LabKey.objects.create(lab_id=lab_id, key_id=key.hex_id, master_key_id=master.hex_id,
                              wrapped=master.wrap(key, context("lab-key", lab_id)))
    _lab_keys[key.key_id] = (lab_id, key)
    _active_lab_key[lab_id] = (time.monotonic(), key)
    return key


def _load_lab_key(row: LabKey) -> Key:
    key = _unwrap_with_master(bytes(row.wrapped), row.master_key_id,
                              context("lab-key", row.lab_id), f"the key of lab {row.lab_id}")
    _lab_keys[key.key_id] = (row.lab_id, key)
    if row.active:
        _active_lab_key[row.lab_id] = (time.monotonic(), key)
    return key


def lab_key_by_id(key_id: bytes, lab_id: int) -> Key:
    """A key of this lab by id; another lab's key is refused, so a row moved to another
    lab (its lab_id rewritten) does not open there."""
    cached = _lab_keys.get(key_id)
    if cached is None:
        try:
            row = LabKey.objects.get(key_id=key_id.hex())
        except LabKey.DoesNotExist:
            raise KeyProviderError(f"lab key {key_id.hex()} is not in this database") from None
        cached = (row.lab_id, _load_lab_key(row))
    owner, key = cached
    if owner != lab_id:
        raise DecryptionError("this row's data key was not wrapped by its lab's key")
    return key


def active_lab_key(lab_id: int) -> Key:
    cached = _active_lab_key.get(lab_id)
    if cached is not None and time.monotonic() - cached[0] < active_key_seconds():
        return cached[1]
    try:
        row = LabKey.objects.get(lab_id=lab_id, active=True)
    except LabKey.DoesNotExist:
        raise KeyProviderError(f"lab {lab_id} has no active key") from None
    known = _lab_keys.get(bytes.fromhex(row.key_id))
    if known is None:
        return _load_lab_key(row)
    _active_lab_key[lab_id] = (time.monotonic(), known[1])
    return known[1]


def new_row_key(lab_id: int, table: str, row_id: object) -> tuple[Key, bytes]:
    """A fresh data key for one row, and its wrapped form to store beside the row; the
    wrap is bound to the lab and the row."""
    key = Key.generate()
    return key, active_lab_key(lab_id).wrap(key, context(table, "data-key", lab_id, row_id))


def open_row_key(wrapped: bytes, table: str, lab_id: int, row_id: object) -> Key:
    wrapped = bytes(wrapped)
    return lab_key_by_id(key_id_of(wrapped), lab_id).unwrap(
        wrapped, context(table, "data-key", lab_id, row_id))
