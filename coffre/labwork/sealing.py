"""Sealing lab values under their patient's data key, bound to table, column and row,
and binding each result's clear columns to its sealed values.

A result copied to another row, column or patient fails to open. The patient's key is
the one that seals their identity (coffre.identity.registry.patient_key): erasing the
patient (destroying that key) makes their orders and results unreadable as well.

A result's clear columns (``RESULT_BOUND``: test code, order, specimen, patient, state,
version, source and every validation stamp, plus the test's unit from the catalogue)
say what its sealed value means. They carry a tag (``Result.mac``: a MAC under a subkey
of the same patient key, coffre.vault.Key.mac) recomputed by every legitimate write
(coffre.labwork.workflow, orders, synthetic, lifecycle.reencrypt) and checked by every read
that opens a value and every write, before anything is shown or changed: a haemoglobin
relabelled CRP or a result pushed to "published" in the database fails loudly
(:class:`TamperedRow`, naming the row, never a value), and the failure is logged and
alerted (:func:`report_tampering`). Why a MAC and not the values' associated data: the
state changes at each validation, and a tag costs one keyed hash per row where re-sealing
would cost three opens and three seals.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import uuid
from collections.abc import Iterable, Sequence

from coffre.identity.models import Patient
from coffre.identity.registry import patient_key
from coffre.labwork import catalogue
from coffre.labwork.models import SEALED, Result
from coffre.vault import Key, context_prefix

logger = logging.getLogger("coffre.labwork")

# What a result's sealed value means, in the order the tag covers them (attnames):
# first those an order's results share (ORDER_SHARED), then each result's own. The
# report position is left out: it only orders lines.
RESULT_BOUND = ("lab_id", "patient_id", "order_id", "state", "version", "replaces_id",
                "entered_at", "entered_by_id", "tech_validated_at", "tech_validated_by_id",
                "bio_validated_at", "bio_validated_by_id", "published_at",
                "specimen_id", "loinc", "source")
ORDER_SHARED = RESULT_BOUND.index("specimen_id")
_LOINC = RESULT_BOUND.index("loinc")
_bound_values = operator.attrgetter(*RESULT_BOUND)
_MAC_PREFIX = context_prefix("result", "mac", "v1")
_SEPARATORS = len(RESULT_BOUND) + 1  # row id, the bound values, the unit
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

_PREFIX = {(table, column): context_prefix(table, column)
           for table, columns in SEALED.items() for column in columns}


class PatientErased(LookupError):
    """The patient's data key is gone: their lab data can no longer be read."""


class TamperedRow(RuntimeError):
    """Rows whose clear columns no longer match their tag: changed outside Coffre. The
    message names the rows, never a value; nothing of them was shown or changed."""

    def __init__(self, table: str, lab_id: int, row_ids: Sequence[object]) -> None:
        self.table, self.lab_id = table, lab_id
        self.row_ids = [str(row_id) for row_id in row_ids]
        self.reported = False
        more = f" (+{len(self.row_ids) - 5} more)" if len(self.row_ids) > 5 else ""
        super().__init__(
            f"{table} {', '.join(self.row_ids[:5])}{more} failed its integrity check: its "
            "test code, order, state or validation stamps were changed outside Coffre; "
            "nothing of it was shown or changed")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):  # the instant, whatever its time zone
        return str((value - _EPOCH) // _MICROSECOND)
    return str(value)


def bound_text(values: Sequence[object]) -> str:
    """Clear values as the tag reads them (a run of ``RESULT_BOUND``, in order)."""
    return "\x1f".join(map(_text, values))


def _binding(row_id: object, text: str, loinc: str) -> bytes | None:
    test = catalogue.TESTS.get(loinc)
    text = f"{row_id}\x1f{text}\x1f{test.unit if test else '?'}"
    if text.count("\x1f") != _SEPARATORS:
        return None
    return _MAC_PREFIX + text.encode()


def result_binding(row_id: object, values: Sequence[object]) -> bytes | None:
    """What a result's tag covers: its id, ``values`` (in ``RESULT_BOUND`` order) and
    its test's unit. None when a clear column holds the separator (only an edit outside
    Coffre can put it there): such a row never matches."""
    return _binding(row_id, bound_text(values), values[_LOINC])


class OrderTags:
    """Tags of the results of one order written at once (the lab history generator):
    the values they share (``RESULT_BOUND[:ORDER_SHARED]``) are read once."""

    def __init__(self, key: Key, shared: Sequence[object]) -> None:
        self.key, self.shared = key, bound_text(shared)

    def tag(self, row_id: str, specimen_id: str, loinc: str, source: str) -> bytes:
        """The tag of one of the order's results (ids already as text)."""
        return self.key.mac(_binding(row_id, f"{self.shared}\x1f{specimen_id}\x1f{loinc}"
                                             f"\x1f{source}", loinc))


def bind_result(key: Key, result: Result) -> bytes:
    """Set (and return) the tag of a result's clear columns as they are now: call after
    a legitimate change, before saving (with ``mac`` among the saved fields)."""
    result.mac = key.mac(result_binding(result.id, _bound_values(result)))
    return result.mac


def result_intact(key: Key, row_id: object, values: Sequence[object], tag: bytes) -> bool:
    """Whether ``tag`` is the tag of these bound values (``RESULT_BOUND`` order)."""
    binding = result_binding(row_id, values)
    return binding is not None and key.mac_matches(binding, tag)


def check_result(key: Key, result: Result) -> None:
    """Raise TamperedRow (logged) unless the result's clear columns match its tag."""
    if not result_intact(key, result.id, _bound_values(result), result.mac):
        raise tampered("result", result.lab_id, [result.id])


def check_results(keys: PatientKeys, results: Iterable[Result]) -> None:
    """Raise TamperedRow (logged) unless every result's clear columns match its tag."""
    results = list(results)
    keys.load({r.patient_id for r in results})  # one query for the patients' keys
    bad = [r for r in results
           if not result_intact(keys[r.patient_id], r.id, _bound_values(r), r.mac)]
    if bad:
        raise tampered("result", bad[0].lab_id, [r.id for r in bad])


def tampered(table: str, lab_id: int, row_ids: Sequence[object]) -> TamperedRow:
    """The error for rows that failed their check, logged as it is made."""
    error = TamperedRow(table, lab_id, row_ids)
    logger.error("integrity: %s row(s) %s of lab %s do not match their tag (changed outside "
              "Coffre)", table, ", ".join(error.row_ids[:20]), lab_id)
    return error


def report_tampering(error: TamperedRow, person: str) -> None:
    """Alert the lab's data-protection officers, once per error. Called where the error
    leaves the application (a web request, a command, the MLLP listener), after the
    transaction that found it has rolled back, so the alert is kept."""
    from django.utils.translation import gettext as _

    from coffre.audit.alerts import raise_alert
    from coffre.audit.models import AlertKind

    if error.reported:
        return
    error.reported = True
    raise_alert(error.lab_id, AlertKind.TAMPERING, person or "unknown",
                _("%(table)s %(rows)s : colonnes en clair modifiées hors de Coffre "
                  "(contrôle d'intégrité)") % {"table": error.table,
                                               "rows": ", ".join(error.row_ids[:3])})


def seal(key: Key, table: str, column: str, row_id: uuid.UUID | int, value: str) -> bytes:
    ad = _PREFIX[(table, column)] + str(row_id).encode()
    return key.seal(value, ad, SEALED[table][column])


def unseal(key: Key, table: str, column: str, row_id: uuid.UUID | int, blob: bytes) -> str:
    return key.open(bytes(blob), _PREFIX[(table, column)] + str(row_id).encode())


def seal_columns(key: Key, table: str, row_id: uuid.UUID | int,
                 values: dict[str, str]) -> dict[str, bytes]:
    """Every sealed column of ``table``: absent values are sealed empty, never NULL."""
    return {column: seal(key, table, column, row_id, values.get(column, ""))
            for column in SEALED[table]}


class PatientKeys:
    """Data keys of the patients one operation touches, unwrapped once each.

    Only patients of ``lab_id`` are found; the caller has already scoped its rows.
    """

    def __init__(self, lab_id: int) -> None:
        self.lab_id = lab_id
        self._keys: dict[uuid.UUID, Key] = {}

    def load(self, patient_ids: Iterable[uuid.UUID]) -> None:
        missing = set(patient_ids) - self._keys.keys()
        if not missing:
            return
        rows = (Patient.unscoped.filter(lab_id=self.lab_id, id__in=missing,
                                        data_key__isnull=False)
                .values_list("id", "data_key"))
        for patient_id, wrapped in rows:
            self._keys[patient_id] = patient_key(patient_id, self.lab_id, wrapped)

    def __getitem__(self, patient_id: uuid.UUID) -> Key:
        if patient_id not in self._keys:
            self.load([patient_id])
        try:
            return self._keys[patient_id]
        except KeyError:
            raise PatientErased("this patient's data was erased") from None


def report_request_failure(sender: object, request: object = None, **kwargs: object) -> None:
    """``got_request_exception`` receiver (coffre.labwork.apps): a web or API request that
    met a changed row alerts, after its transactions have rolled back."""
    import sys

    error = sys.exc_info()[1]
    if request is None or not isinstance(error, TamperedRow):
        return
    actor = getattr(request, "actor", None)
    user = getattr(request, "user", None)
    person = (getattr(actor, "person", "")
              or (user.get_username() if user is not None and user.is_authenticated else ""))
    report_tampering(error, person)


def tag_untagged_results(results_model: type = Result, patients_model: type = Patient,
                         batch: int = 2000) -> int:
    """Tag the results that have no tag yet: rows written before tags existed. The data
    migration that added ``Result.mac`` runs it (with its historical models), so it
    needs the master key, as `coffre init` has; rows of erased patients stay untagged
    (nothing can open them). Returns the rows tagged."""
    from coffre.bulk import update_rows

    rows = results_model._default_manager.filter(mac=b"").order_by("pk")
    done, last = 0, None
    while True:
        page = rows if last is None else rows.filter(pk__gt=last)
        chunk = list(page.values_list("pk", *RESULT_BOUND)[:batch])
        if not chunk:
            return done
        last = chunk[-1][0]
        owners = {row[2] for row in chunk}  # patient_id
        keys = {pk: patient_key(pk, lab_id, wrapped) for pk, lab_id, wrapped in
                patients_model._default_manager.filter(id__in=owners, data_key__isnull=False)
                .values_list("id", "lab_id", "data_key")}
        updates = []
        for pk, *values in chunk:
            key = keys.get(values[1])
            binding = result_binding(pk, values)
            if key is not None and binding is not None:
                updates.append((pk, [key.mac(binding)]))
        update_rows(results_model, ["mac"], updates)
        done += len(updates)
