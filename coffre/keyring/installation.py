"""Rotating the material of the installation keys (accounts, audit, exports, export-text,
legal-hold).

`coffre keys rotate --master` re-wraps these keys but keeps their material; this module
replaces the material: ``rotate_installation_key(purpose)`` makes a new active version,
then re-seals, one locked batch at a time, every value the older versions sealed. The
apps say which columns hold such values (:func:`register`, from their ``ready()``), so
the keyring needs to know nothing of them. A column can be registered as not
re-sealable (the access log's sealed purposes: the chain's MACs cover their bytes):
its values stay under their version, which `keys retire --installation` then refuses
to destroy while any of them remains. Apps may also register a hook run after a
rotation (the audit log records the new checkpoint-signing key).

Re-running a rotation that stopped resumes it: while values remain under an older
version, the active version is kept and the re-sealing goes on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.db import models, transaction

from coffre.keyring import ROTATABLE_INSTALLATION_KEYS
from coffre.keyring import services as keyring
from coffre.keyring.models import InstallationKey
from coffre.vault import Key, key_id_of

ROTATABLE = ROTATABLE_INSTALLATION_KEYS
BATCH = 500


class InstallationKeyError(Exception):
    """A rotation or retirement that must not happen; the message says why."""


@dataclass(frozen=True)
class SealedColumn:
    """A column whose values are sealed with an installation key. ``ad``: the
    associated data of a row's value (from the model instance)."""

    purpose: str
    model: str  # "app_label.ModelName"
    field: str
    ad: Callable[[models.Model], bytes]
    resealable: bool = True
    min_size: int = 0  # the padding the values were sealed with
    where: tuple[tuple[str, object], ...] = ()  # only the rows matching these fields

    def queryset(self) -> models.QuerySet:
        model = apps.get_model(self.model)
        return model._base_manager.filter(**dict(self.where)).exclude(**{self.field: b""})


_COLUMNS: list[SealedColumn] = []
_HOOKS: dict[str, list[Callable[[Key, Key], None]]] = {}


def register(column: SealedColumn) -> None:
    if column not in _COLUMNS:
        _COLUMNS.append(column)


def on_rotation(purpose: str, hook: Callable[[Key, Key], None]) -> None:
    """``hook(old active version, new active version)``, run once the new version is
    active (and before any re-sealing)."""
    hooks = _HOOKS.setdefault(purpose, [])
    if hook not in hooks:
        hooks.append(hook)


def columns(purpose: str) -> list[SealedColumn]:
    return [c for c in _COLUMNS if c.purpose == purpose]


def usage(purpose: str) -> Counter:
    """Sealed values per key id (hex) of this purpose, over the registered columns."""
    found: Counter = Counter()
    for column in columns(purpose):
        for blob in column.queryset().values_list(column.field, flat=True).iterator(5000):
            if blob:
                found[key_id_of(bytes(blob)).hex()] += 1
    return found


@dataclass
class InstallationReport:
    purpose: str
    key_id: str
    created: bool
    resealed: int = 0
    kept: int = 0  # values left under older versions (not re-sealable)
    seconds: float = 0.0

    def as_row(self) -> dict:
        return {"event": "done", "purpose": self.purpose, "key_id": self.key_id,
                "new_key": self.created, "resealed": self.resealed,
                "kept_under_older_versions": self.kept, "seconds": round(self.seconds, 3)}


def _check_purpose(purpose: str) -> None:
    if purpose not in ROTATABLE:
        raise InstallationKeyError(f"unknown installation key {purpose!r}: one of "
                                   + ", ".join(ROTATABLE))


def _pending(purpose: str, active: str) -> bool:
    """Re-sealable values left under an older version (a run that stopped)."""
    for column in columns(purpose):
        if not column.resealable:
            continue
        for blob in column.queryset().values_list(column.field, flat=True).iterator(5000):
            if blob and key_id_of(bytes(blob)).hex() != active:
                return True
    return False


def rotate_installation_key(purpose: str) -> InstallationReport:
    started = time.perf_counter()
    _check_purpose(purpose)
    keyring.clear_caches()
    current = keyring.installation_key(purpose)
    created = not _pending(purpose, current.hex_id)
    if created:
        new = Key.generate()
        for hook in _HOOKS.get(purpose, []):  # before the key exists: a crash here
            hook(current.active, new)         # leaves a hook's record of a key never used
        keyring.new_installation_version(purpose, new)
    versions = keyring.installation_key(purpose)
    report = InstallationReport(purpose, versions.hex_id, created)
    for column in columns(purpose):
        if column.resealable:
            report.resealed += _reseal(column, versions)
    report.kept = sum(n for key_id, n in usage(purpose).items() if key_id != versions.hex_id)
    report.seconds = time.perf_counter() - started
    return report


def _reseal(column: SealedColumn, versions: keyring.KeyVersions) -> int:
    """Re-seal the column's values not under the active version, by locked batches."""
    done, last = 0, None
    while True:
        rows = column.queryset().order_by("pk")
        if last is not None:
            rows = rows.filter(pk__gt=last)
        ids = list(rows.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return done
        with transaction.atomic():
            for row in column.queryset().select_for_update().filter(pk__in=ids):
                blob = bytes(getattr(row, column.field))
                if key_id_of(blob) == versions.active.key_id:
                    continue
                ad = column.ad(row)
                resealed = versions.active.seal_bytes(versions.open_bytes(blob, ad), ad,
                                                      column.min_size)
                type(row)._base_manager.filter(pk=row.pk).update(**{column.field: resealed})
                done += 1
        last = ids[-1]


def retire_installation_key(purpose: str, hex_id: str) -> None:
    """Destroy an older version of an installation key; refused while it is active or
    a value still uses it."""
    _check_purpose(purpose)
    row = InstallationKey.objects.filter(purpose=purpose, key_id=hex_id).first()
    if row is None:
        raise InstallationKeyError(f"{purpose} key {hex_id} is not in this database")
    if row.active:
        raise InstallationKeyError(f"{purpose} key {hex_id} is the active one; rotate first")
    with transaction.atomic():
        InstallationKey.objects.select_for_update().get(pk=row.pk)
        used = usage(purpose)[hex_id] + _derived_usage(purpose, hex_id)
        if used:
            raise InstallationKeyError(
                f"{purpose} key {hex_id} still seals {used} values"
                + (": run `coffre keys rotate --installation` to the end first"
                   if any(c.resealable for c in columns(purpose)) else ""))
        row.delete()
    keyring.clear_caches()


_DERIVED: dict[str, list[Callable[[str], int]]] = {}


def register_derived_use(purpose: str, count: Callable[[str], int]) -> None:
    """``count(key id)``: rows that need a key derived from that version (e.g. export
    watermark fingerprints): the version cannot be retired while any remains."""
    counters = _DERIVED.setdefault(purpose, [])
    if count not in counters:
        counters.append(count)


def _derived_usage(purpose: str, hex_id: str) -> int:
    return sum(count(hex_id) for count in _DERIVED.get(purpose, []))


def status() -> list[dict]:
    """One row per installation key version, with the values each one seals."""
    rows = []
    for purpose in ROTATABLE:
        used = usage(purpose)
        for row in InstallationKey.objects.filter(purpose=purpose).order_by("pk"):
            rows.append({"kind": "installation", "purpose": purpose, "key_id": row.key_id,
                         "active": row.active,
                         "sealed_values": used.get(row.key_id, 0)
                         + _derived_usage(purpose, row.key_id)})
    return rows
