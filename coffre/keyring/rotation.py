"""Key rotation.

Two operations, all resumable by running them again (after a crash, kill -9 or
Ctrl-C) and safe while the server runs:

* ``rotate_master``: a new master key version is added to the key file (unless rows
  remain under older versions: a previous run stopped, so it resumes), then every
  installation key and lab key still wrapped under an older version is re-wrapped,
  one row per short transaction (``select_for_update``; a row already under the new
  version is skipped). Unwrapping picks the version by the row's ``master_key_id``,
  so readers work throughout. No data is re-encrypted.
* ``rotate_lab``: a new lab key becomes active (unless data keys remain under older
  lab keys: a previous run stopped, so it resumes), then every patient data key of the
  lab wrapped under an older lab key is unwrapped and wrapped again under the new one,
  with the same associated data, by locked batches that skip rows already done. The
  data key itself (its id and material) is unchanged, so no value is re-encrypted.
  Old lab keys stay readable until ``retire_lab_key``, which refuses while a data key
  uses them.
Re-encryption (each patient a new data key, every value re-sealed) re-seals identity
and lab rows, so it lives above them: coffre.lifecycle.reencrypt.

The keyring imports nothing above it (docs/architecture.md, "Layers"): the app whose
table holds the per-row data keys registers its model (``register_data_keys``, from
coffre.identity's ``ready``), as apps register their installation-sealed columns
(coffre.keyring.installation).
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db import models, transaction
from django.utils import timezone

from coffre import config
from coffre.bulk import update_rows
from coffre.keyring import indexes
from coffre.keyring import services as keyring
from coffre.keyring.models import InstallationKey, LabIndexKey, LabKey, ReencryptionRun
from coffre.progress import Advance, no_advance
from coffre.vault import ENV_VAR, Key, KeyProviderError, add_key_version, context, key_id_of

BATCH = 200
PATIENT_TABLE = "patient"



class RotationError(Exception):
    """A rotation or retirement that must not happen (key in use, unknown key...)."""


# --------------------------------------------------------------------------- master


def _installation_ad(row: InstallationKey) -> bytes:
    return context("installation-key", row.purpose)


def _lab_key_ad(row: LabKey) -> bytes:
    return context("lab-key", row.lab_id)


MASTER_WRAPPED = ((InstallationKey, _installation_ad), (LabKey, _lab_key_ad))


def master_usage() -> Counter:
    """Wrapped rows per master key id."""
    usage: Counter = Counter()
    for model, _ad in MASTER_WRAPPED:
        usage.update(model.objects.values_list("master_key_id", flat=True))
    return usage


def _key_file_provider() -> None:
    if os.environ.get(ENV_VAR) is not None:
        raise RotationError(
            f"the master key comes from {ENV_VAR}: add the new version in front of the "
            "variable's list yourself (rotation edits the key file only)")


def prepare_master() -> tuple[Key, bool]:
    """The master version to rotate to: the newest one while rows remain under older
    versions (a previous run stopped, before or after re-wrapping some), else a new
    version added to the key file. Returns (key, added)."""
    _key_file_provider()
    keyring.clear_caches()
    current = keyring.master_keys().current
    if any(n for key_id, n in master_usage().items() if key_id != current.hex_id):
        return current, False
    keys = add_key_version(config.key_file())
    keyring.clear_caches()
    return keys.current, True


@dataclass
class MasterReport:
    master_key_id: str
    added: bool
    rewrapped: int = 0
    remaining: int = 0
    seconds: float = 0.0

    def as_row(self) -> dict:
        return {"event": "done", "master_key_id": self.master_key_id,
                "added_version": self.added, "rewrapped": self.rewrapped,
                "remaining": self.remaining, "seconds": round(self.seconds, 3)}


def _rewrap_master_row(model, ad_of, pk: int, target: Key) -> bool:
    """Re-wrap one row under ``target`` in its own transaction; False if already done."""
    with transaction.atomic():
        row = model.objects.select_for_update().filter(pk=pk).first()
        if row is None or row.master_key_id == target.hex_id:
            return False
        ad = ad_of(row)
        key = keyring._unwrap_with_master(bytes(row.wrapped), row.master_key_id, ad,
                                          f"{model.__name__} {row.key_id}")
        model.objects.filter(pk=pk).update(wrapped=target.wrap(key, ad),
                                           master_key_id=target.hex_id)
        return True


def rewrap_master(target: Key, batch: int = BATCH, limit: int | None = None,
                  on_batch: Callable[[int, int], None] | None = None) -> int:
    """Re-wrap the rows not yet under ``target``, ``batch`` ids at a time; stop after
    ``limit`` rows (tests). Returns the number re-wrapped."""
    done = 0
    for model, ad_of in MASTER_WRAPPED:
        last = 0
        while True:
            ids = list(model.objects.exclude(master_key_id=target.hex_id).filter(pk__gt=last)
                       .order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            for pk in ids:
                if limit is not None and done >= limit:
                    return done
                done += _rewrap_master_row(model, ad_of, pk, target)
            last = ids[-1]
            if on_batch:
                on_batch(done, len(ids))
    return done


def rotate_master(batch: int = BATCH, limit: int | None = None,
                  on_batch: Callable[[int, int], None] | None = None) -> MasterReport:
    started = time.perf_counter()
    target, added = prepare_master()
    report = MasterReport(target.hex_id, added)
    report.rewrapped = rewrap_master(target, batch, limit, on_batch)
    usage = master_usage()
    report.remaining = sum(n for key_id, n in usage.items() if key_id != target.hex_id)
    keyring.clear_caches()
    report.seconds = time.perf_counter() - started
    return report


def retire_master(hex_id: str) -> None:
    """Remove an old master key version from the key file; refused while a wrapped row
    uses it."""
    from coffre.vault.master import remove_key_version

    _key_file_provider()
    keyring.clear_caches()
    keys = keyring.master_keys()
    if keys.current.hex_id == hex_id:
        raise RotationError(f"master key {hex_id} is the current one; rotate first")
    if all(k.hex_id != hex_id for k in keys.older):
        raise RotationError(f"master key {hex_id} is not in {keys.source}")
    used = master_usage()[hex_id]
    if used:
        raise RotationError(f"master key {hex_id} still wraps {used} keys: run "
                            "`coffre keys rotate --master` to the end first")
    remove_key_version(config.key_file(), hex_id)
    keyring.clear_caches()


# ------------------------------------------------------------------------------ lab


def _data_keys(lab_id: int | None = None) -> Iterator[tuple[uuid.UUID, int, bytes]]:
    rows = keyring_patients().filter(data_key__isnull=False)
    if lab_id is not None:
        rows = rows.filter(lab_id=lab_id)
    for pk, lab, wrapped in rows.values_list("id", "lab_id", "data_key").iterator(2000):
        yield pk, lab, bytes(wrapped)


_DATA_KEYS: list[type[models.Model]] = []


def register_data_keys(model: type[models.Model]) -> None:
    """The model whose rows carry a ``data_key`` wrapped by their lab's key (the
    associated data names the table ``patient``): coffre.identity's Patient."""
    _DATA_KEYS[:] = [model]


def _data_key_model() -> type[models.Model]:
    if not _DATA_KEYS:
        raise RotationError("no model registered its data keys (coffre.identity not loaded)")
    return _DATA_KEYS[0]


def keyring_patients() -> models.QuerySet:
    """Every row holding a data key, of every lab (the model's base manager)."""
    return _data_key_model()._base_manager.all()


def lab_key_usage(lab_id: int | None = None) -> Counter:
    """Patient data keys per lab key id (hex)."""
    return Counter(key_id_of(wrapped).hex() for _pk, _lab, wrapped in _data_keys(lab_id))


def prepare_lab(lab_id: int) -> tuple[Key, bool]:
    """The lab key to rotate to: the active one while a previous run has work left
    (data keys under older lab keys, or a blind-index generation not complete), else a
    new active key, with a new index generation (the index keys rotate with the lab
    key; the lab's older generations are re-wrapped under the new key at once).
    (key, created)"""
    keyring.clear_caches()
    usage = lab_key_usage(lab_id)
    active = LabKey.objects.filter(lab_id=lab_id, active=True).first()
    newest = LabIndexKey.objects.filter(lab_id=lab_id).order_by("-pk").first()
    pending = (any(n for key_id, n in usage.items() if key_id != active.key_id)
               or (newest is not None and not newest.complete)) if active else False
    if pending:
        return keyring.active_lab_key(lab_id), False
    with transaction.atomic():
        key = keyring.create_lab_key(lab_id)
        indexes.rewrap_index_keys(lab_id, key)
        indexes.create_index_key(lab_id, newest.planned_patients if newest else None,
                                 complete=False)
    return key, True


@dataclass
class LabReport:
    lab_key_id: str
    created: bool
    patients: int = 0
    rewrapped: int = 0
    remaining: int = 0
    seconds: float = 0.0

    def as_row(self) -> dict:
        rate = self.rewrapped / self.seconds if self.seconds else 0.0
        return {"event": "done", "lab_key_id": self.lab_key_id, "new_key": self.created,
                "patients": self.patients, "rewrapped": self.rewrapped,
                "remaining": self.remaining, "seconds": round(self.seconds, 3),
                "patients_per_second": round(rate)}


def _rewrap_patients(lab_id: int, ids: list[uuid.UUID], target: Key) -> int:
    """One locked batch: unwrap each data key with its old lab key and wrap it under
    ``target`` with the same associated data; rows already under ``target`` skipped."""
    updates = []
    with transaction.atomic():
        rows = (keyring_patients().select_for_update().filter(lab_id=lab_id, id__in=ids,
                                                              data_key__isnull=False)
                .values_list("id", "data_key"))
        for pk, wrapped in rows:
            wrapped = bytes(wrapped)
            if key_id_of(wrapped) == target.key_id:
                continue
            ad = context(PATIENT_TABLE, "data-key", lab_id, pk)
            data_key = keyring.lab_key_by_id(key_id_of(wrapped), lab_id).unwrap(wrapped, ad)
            updates.append((pk, [target.wrap(data_key, ad)]))
        update_rows(_data_key_model(), ["data_key"], updates)
    return len(updates)


def rewrap_lab(lab_id: int, target: Key, batch: int = BATCH, limit: int | None = None,
               advance: Advance = no_advance) -> int:
    """Re-wrap the lab's data keys not yet under ``target`` by locked batches; stop
    after ``limit`` rows (tests). The ids to do are listed first (a few bytes each), so
    no cursor stays open over the table being written."""
    pending = []
    for pk, _lab, wrapped in _data_keys(lab_id):
        if key_id_of(wrapped) == target.key_id:
            advance(1)
        else:
            pending.append(pk)
    if limit is not None:
        pending = pending[:limit]
    done = 0
    for start in range(0, len(pending), batch):
        ids = pending[start:start + batch]
        done += _rewrap_patients(lab_id, ids, target)
        advance(len(ids))
    return done


def rotate_lab(lab_id: int, batch: int = BATCH, limit: int | None = None,
               add_bar: Callable[[str, int | None], Advance] | None = None) -> LabReport:
    started = time.perf_counter()
    target, created = prepare_lab(lab_id)
    report = LabReport(target.hex_id, created)
    report.patients = keyring_patients().filter(lab_id=lab_id, data_key__isnull=False).count()
    advance = add_bar("re-wrapping data keys", report.patients) if add_bar else no_advance
    report.rewrapped = rewrap_lab(lab_id, target, batch, limit, advance)
    usage = lab_key_usage(lab_id)
    report.remaining = sum(n for key_id, n in usage.items() if key_id != target.hex_id)
    report.seconds = time.perf_counter() - started
    return report


def retire_lab_key(lab_id: int, hex_id: str) -> None:
    """Destroy an old lab key; refused while it is active or a data key uses it."""
    row = LabKey.objects.filter(lab_id=lab_id, key_id=hex_id).first()
    if row is None:
        raise RotationError(f"lab key {hex_id} is not a key of this lab")
    if row.active:
        raise RotationError(f"lab key {hex_id} is the lab's active key; rotate first")
    newest = LabKey.objects.filter(lab_id=lab_id, active=True).first()
    grace = 2 * keyring.active_key_seconds()
    if newest is not None and (timezone.now() - newest.created_at).total_seconds() < grace:
        raise RotationError(
            f"lab key {hex_id} was replaced less than {grace:.0f} s ago: running servers "
            "may still wrap new patient keys under it; wait, run `coffre keys rotate --lab` "
            "again, then retire")
    with transaction.atomic():
        LabKey.objects.select_for_update().get(pk=row.pk)
        used = lab_key_usage(lab_id)[hex_id] + sum(
            key_id_of(bytes(w)).hex() == hex_id
            for w in LabIndexKey.objects.filter(lab_id=lab_id).values_list("wrapped",
                                                                          flat=True))
        if used:
            raise RotationError(f"lab key {hex_id} still wraps {used} patient data keys: "
                                "run `coffre keys rotate --lab` to the end first")
        row.delete()
    keyring.clear_caches()


# --------------------------------------------------------------------------- status


def _index_status(finess: dict[int, str]) -> list[dict]:
    """One row per blind-index key generation of each lab, with the patients indexed
    under it (``legacy``: the installation-wide key of Coffre before per-lab keys)."""
    from django.db.models import Count

    from coffre.vault import combined_bits

    used: Counter[tuple[int, int | None]] = Counter()
    for lab_id, bi_key, count in (keyring_patients().values("lab_id", "bi_key")
                                  .annotate(n=Count("id")).order_by()
                                  .values_list("lab_id", "bi_key", "n")):
        used[(lab_id, bi_key)] += count
    newest = {}
    for row in LabIndexKey.objects.order_by("pk"):
        newest[row.lab_id] = row.pk
    rows = []
    for row in LabIndexKey.objects.order_by("lab_id", "pk"):
        patient_bits = {k: v for k, v in row.bits.items() if k in indexes.PATIENT_INDEXES}
        rows.append({"kind": "index", "lab": finess.get(row.lab_id), "key_id": row.key_id,
                     "current": newest[row.lab_id] == row.pk, "complete": row.complete,
                     "planned_patients": row.planned_patients, "bits": row.bits,
                     "combined_bits": combined_bits(patient_bits, indexes.PATIENT_INDEXES),
                     "patients": used.pop((row.lab_id, row.pk), 0)})
    for (lab_id, bi_key), count in sorted(used.items(), key=lambda item: item[0][0]):
        if bi_key is None and count:
            rows.append({"kind": "index", "lab": finess.get(lab_id), "key_id": None,
                         "legacy": True, "patients": count,
                         "todo": "run `coffre keys reindex`"})
    return rows


def status() -> list[dict]:
    """One row per master key version and per lab key, with the rows using each."""
    lab_model = LabKey._meta.get_field("lab").related_model  # labs.Lab, not imported
    rows: list[dict] = []
    try:
        keys = keyring.master_keys()
        known = [(keys.current, True), *((k, False) for k in keys.older)]
    except KeyProviderError:
        known = []
    usage: dict[str, Counter] = {}
    for model, _ad in MASTER_WRAPPED:
        for key_id in model.objects.values_list("master_key_id", flat=True):
            usage.setdefault(key_id, Counter())[model.__name__] += 1
    for key, current in known:
        counts = usage.pop(key.hex_id, Counter())
        rows.append({"kind": "master", "key_id": key.hex_id, "current": current,
                     "installation_keys": counts["InstallationKey"],
                     "lab_keys": counts["LabKey"]})
    for key_id, counts in sorted(usage.items()):  # used but missing from the key file
        rows.append({"kind": "master", "key_id": key_id, "current": False, "missing": True,
                     "installation_keys": counts["InstallationKey"],
                     "lab_keys": counts["LabKey"]})
    data_keys = lab_key_usage()
    finess = dict(lab_model._default_manager.values_list("id", "finess"))
    for row in LabKey.objects.order_by("lab_id", "created_at", "pk"):
        rows.append({"kind": "lab", "lab": finess.get(row.lab_id), "key_id": row.key_id,
                     "active": row.active, "master_key_id": row.master_key_id,
                     "patients": data_keys.pop(row.key_id, 0)})
    for key_id, count in sorted(data_keys.items()):  # wrapped under a key that is gone
        rows.append({"kind": "lab", "lab": None, "key_id": key_id, "missing": True,
                     "patients": count})
    rows.extend(_index_status(finess))
    from coffre.keyring import installation

    rows.extend(installation.status())
    for run in ReencryptionRun.objects.filter(finished_at__isnull=True).order_by("pk"):
        rows.append({"kind": "reencrypt", "run": run.pk,
                     "lab": finess.get(run.lab_id) if run.lab_id else None,
                     "patients_done": run.patients_done, "finished": False})
    return rows
