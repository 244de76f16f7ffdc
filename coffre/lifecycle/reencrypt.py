"""``coffre keys reencrypt``: each patient gets a new data key and every value sealed
under the old one (identity columns, orders, specimens, results, critical values) is
re-sealed with the same table/column/row binding, and each result's tag over its clear
columns (coffre.labwork.sealing) checked under the old key and made again under the new one,
one patient per transaction with its rows locked. Progress is a cursor
(:class:`ReencryptionRun`) moved in the same transaction as the patient it names, in
primary-key order: a run that did not finish resumes after its cursor. A result changed
outside Coffre stops the run at its patient (TamperedRow), never re-tagged.

It lives here, above the apps whose rows it re-seals (identity, lab), as
coffre.lifecycle.reindex does for the blind indexes; the keyring below only makes the
new data key (coffre.keyring.services.new_row_key) and keeps the run's cursor
(coffre.keyring.models.ReencryptionRun).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from coffre import faults
from coffre.bulk import update_rows
from coffre.identity.models import Patient
from coffre.identity.registry import open_patient, patient_key, seal_values
from coffre.keyring import services as keyring
from coffre.keyring.models import ReencryptionRun
from coffre.keyring.rotation import PATIENT_TABLE
from coffre.labwork.models import SEALED, CriticalValue, Order, Result, Specimen
from coffre.labwork.sealing import (
    RESULT_BOUND,
    result_binding,
    result_intact,
    seal,
    tampered,
    unseal,
)
from coffre.progress import Advance, no_advance
from coffre.vault import Key


@dataclass
class ReencryptReport:
    run_id: int
    resumed: bool
    patients: int = 0
    reencrypted: int = 0
    seconds: float = 0.0
    finished: bool = False
    tables: Counter = field(default_factory=Counter)

    def as_row(self) -> dict:
        rate = self.reencrypted / self.seconds if self.seconds else 0.0
        return {"event": "done", "run": self.run_id, "resumed": self.resumed,
                "finished": self.finished, "patients": self.patients,
                "reencrypted": self.reencrypted, "rows": dict(self.tables),
                "seconds": round(self.seconds, 3), "patients_per_second": round(rate, 1)}


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _reseal_rows(model, rows: list[tuple], table: str, old: Key, new: Key,
                 tables: Counter, lab_id: int) -> None:
    """Re-seal the sealed columns of rows ``(pk, row id of the binding, *sealed)``; a
    result row also carries its tag and bound values (``_lock_query``): the tag is
    checked under the old key and made again under the new one, never for a row changed
    outside Coffre (TamperedRow: the patient's transaction rolls back)."""
    if not rows:
        return
    columns = list(SEALED[table])
    tagged = table == "result"
    updates, bad = [], []
    for pk, bound_id, *rest in rows:
        row_id = _as_uuid(bound_id)
        blobs, extra = rest[:len(columns)], rest[len(columns):]
        if tagged:
            tag, *bound = extra
            if not result_intact(old, row_id, bound, tag):
                bad.append(row_id)
                continue
        values = [seal(new, table, column, row_id, unseal(old, table, column, row_id, blob))
                  for column, blob in zip(columns, blobs, strict=True)]
        if tagged:
            values.append(new.mac(result_binding(row_id, bound)))
        updates.append((row_id if table != "critical" else pk, values))
    if bad:
        raise tampered("result", lab_id, bad)
    update_rows(model, columns + (["mac"] if tagged else []), updates)
    tables[table] += len(rows)


_LOCK_SQL: dict[tuple[str, str], tuple[str, dict]] = {}


def _lock_query(table: str, patient_id: uuid.UUID):
    """Rows of one patient in ``table``, locked: (pk, row id of the AD, *sealed), and
    for results their tag and bound values (coffre.labwork.sealing.RESULT_BOUND)."""
    columns = list(SEALED[table])
    if table == "order":
        rows = Order.unscoped.filter(patient_id=patient_id).values_list("pk", "pk", *columns)
    elif table == "specimen":
        rows = Specimen.unscoped.filter(order__patient_id=patient_id).values_list(
            "pk", "pk", *columns)
    elif table == "result":
        rows = Result.unscoped.filter(patient_id=patient_id).values_list(
            "pk", "pk", *columns, "mac", *RESULT_BOUND)
    else:
        rows = CriticalValue.objects.filter(result__patient_id=patient_id).values_list(
            "pk", "result_id", *columns)
    return rows.select_for_update(of=("self",)).order_by("pk")


def _locked(table: str, patient_id: uuid.UUID) -> list[tuple]:
    """The patient's rows of ``table``, locked (FOR UPDATE where the database has it).
    The query is compiled by the ORM once, then run as plain SQL for each patient: its
    compilation cost more than the cryptography. Values come back as the ORM would give
    them (its converters: UUIDs and timestamps, which a result's tag reads)."""
    cache_key = (connection.vendor, table)
    found = _LOCK_SQL.get(cache_key)
    if found is None:
        compiler = _lock_query(table, patient_id).query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        if len(params) != 1:
            raise AssertionError(f"unexpected parameters for {table}: {params}")
        found = _LOCK_SQL[cache_key] = (sql, compiler.get_converters(
            [column for column, _sql, _alias in compiler.select]))
    sql, converters = found
    with connection.cursor() as cursor:
        cursor.execute(sql, [Patient._meta.pk.get_db_prep_value(patient_id, connection)])
        rows = cursor.fetchall()
    if not converters:
        return rows
    converted = []
    for row in rows:
        row = list(row)
        for position, (functions, expression) in converters.items():
            for convert in functions:
                row[position] = convert(row[position], expression, connection)
        converted.append(tuple(row))
    return converted


def reencrypt_patient(patient_id: uuid.UUID, run: ReencryptionRun, tables: Counter) -> bool:
    """Give one patient a new data key and re-seal everything the old one sealed, in one
    transaction with the patient and their lab rows locked; the run's cursor moves in
    the same transaction. False if the patient was erased or is gone."""
    with transaction.atomic():
        patient = Patient.unscoped.select_for_update().filter(pk=patient_id).first()
        done = patient is not None and patient.data_key is not None
        if done:
            old = patient_key(patient.id, patient.lab_id, patient.data_key)
            values = open_patient(patient).values
            new, wrapped = keyring.new_row_key(patient.lab_id, PATIENT_TABLE, patient.id)
            sealed = seal_values(new, patient.id, values)
            update_rows(type(patient), ["data_key", *sealed],
                        [(patient.id, [wrapped, *sealed.values()])])
            tables["patient"] += 1
            for model, table in ((Order, "order"), (Specimen, "specimen"),
                                 (Result, "result"), (CriticalValue, "critical")):
                _reseal_rows(model, _locked(table, patient.id), table, old, new, tables,
                             patient.lab_id)
            faults.point("reencrypt-patient")  # every row re-sealed, nothing committed
        ReencryptionRun.objects.filter(pk=run.pk).update(
            last_patient_id=patient_id, patients_done=run.patients_done + done)
        run.last_patient_id = patient_id
        run.patients_done += done
    return done


def open_run(lab_id: int | None) -> tuple[ReencryptionRun, bool]:
    """The unfinished run of this scope (resumed), or a new one."""
    run = (ReencryptionRun.objects.filter(lab_id=lab_id, finished_at__isnull=True)
           .order_by("-pk").first())
    if run is not None:
        return run, True
    return ReencryptionRun.objects.create(lab_id=lab_id), False


def reencrypt(lab_id: int | None = None, limit: int | None = None,
              add_bar: Callable[[str, int | None], Advance] | None = None,
              batch: int = 1000) -> ReencryptReport:
    """Re-encrypt every patient of the lab (all labs if None); stop after ``limit``
    patients (tests), leaving the run to be resumed."""
    started = time.perf_counter()
    keyring.clear_caches()
    run, resumed = open_run(lab_id)
    report = ReencryptReport(run.pk, resumed)
    scope = Patient.unscoped.filter(data_key__isnull=False)
    if lab_id is not None:
        scope = scope.filter(lab_id=lab_id)
    report.patients = scope.count()
    advance = add_bar("re-encrypting patients", report.patients) if add_bar else no_advance
    if run.last_patient_id is not None:
        advance(scope.filter(id__lte=run.last_patient_id).count())
    while True:
        todo = scope.order_by("id")
        if run.last_patient_id is not None:
            todo = todo.filter(id__gt=run.last_patient_id)
        ids = list(todo.values_list("id", flat=True)[:batch])
        if not ids:
            break
        for patient_id in ids:
            if limit is not None and report.reencrypted >= limit:
                report.seconds = time.perf_counter() - started
                return report
            report.reencrypted += reencrypt_patient(patient_id, run, report.tables)
            advance(1)
    ReencryptionRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())
    report.finished = True
    report.seconds = time.perf_counter() - started
    return report
