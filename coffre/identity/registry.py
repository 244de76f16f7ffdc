"""The patient registry's core: validate a patient's values, seal them into a row,
open a row back into a record, and compute blind indexes. Plain functions, no access
control here: callers go through coffre.identity.access.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone

from coffre.identity import french
from coffre.identity.models import SEALED_FIELDS, IdentityStatus, Patient
from coffre.keyring import indexes
from coffre.keyring import services as keyring
from coffre.vault import Key, context_prefix

TABLE = "patient"

# The registry CSV columns, in order (docs/import-format.md).
CSV_COLUMNS = (
    "nir", "birth_name", "used_name", "first_names", "sex", "birth_date", "birth_place",
    "address", "postal_code", "city", "phone", "email", "blood_group", "doctor_rpps",
    "doctor_name", "insurer", "notes",
)
OPTIONAL_COLUMNS = ("identity_status", "treatments")
REQUIRED_VALUES = ("birth_name", "first_names", "sex", "birth_date")


@dataclass
class PatientRecord:
    """A patient's values in clear, in memory only. Fields not read are None."""

    id: uuid.UUID
    lab_id: int
    identity_status: str
    values: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> str | None:
        if name in SEALED_FIELDS:
            return self.values.get(name)
        raise AttributeError(name)

    def __repr__(self) -> str:  # a record must never print its values by accident
        return f"<PatientRecord {self.id} ({len(self.values)} values)>"

    def as_row(self) -> dict[str, str]:
        """The CSV/JSON shape: CSV column names plus id and identity status."""
        row = {"id": str(self.id), "identity_status": self.identity_status}
        row.update({name: self.values.get(name, "") for name in CSV_COLUMNS})
        return row


@dataclass(frozen=True)
class FieldError:
    column: str
    reason: str


_CLEANERS: dict[str, Callable[[str], object]] = {
    "nir": french.clean_nir,
    "sex": french.clean_sex,
    "birth_date": french.clean_birth_date,
    "birth_place": french.clean_insee_place,
    "postal_code": french.clean_postal_code,
    "phone": french.clean_phone,
    "email": french.clean_email,
    "blood_group": french.clean_blood_group,
    "doctor_rpps": french.clean_rpps,
}
_NAME_FIELDS = ("birth_name", "used_name", "first_names", "city", "doctor_name")
MAX_LENGTHS = {"notes": 4000, "treatments": 4000, "address": 200}


def clean_values(raw: dict[str, str], phone_memo: dict[str, str] | None = None
                 ) -> tuple[dict[str, str], list[FieldError]]:
    """Validate one patient's values. Returns the canonical values and every error.

    Error reasons name the column and the rule, never the value. ``phone_memo`` lets a bulk
    import reuse the costly phone validation (~60 us) between its two passes; it lives
    in memory for that import only.
    """
    values: dict[str, str] = {}
    errors: list[FieldError] = []
    for name in SEALED_FIELDS:
        text = (raw.get(name) or "").strip()
        if not text:
            if name in REQUIRED_VALUES:
                errors.append(FieldError(name, "is required"))
            values[name] = ""
            continue
        limit = MAX_LENGTHS.get(name, 100)
        if len(text) > limit:
            errors.append(FieldError(name, f"is longer than {limit} characters"))
            continue
        cleaner = _CLEANERS.get(name)
        try:
            if phone_memo is not None and name == "phone":
                cleaned = phone_memo.get(text) or phone_memo.setdefault(text, cleaner(text))
            else:
                cleaned = cleaner(text) if cleaner else " ".join(text.split())
        except french.InvalidValue as exc:
            errors.append(FieldError(name, str(exc)))
            continue
        values[name] = cleaned.isoformat() if isinstance(cleaned, dt.date) else str(cleaned)
    if values.get("nir") and values.get("sex") and values.get("birth_date"):
        try:
            french.check_nir_matches(values["nir"], values["sex"],
                                     dt.date.fromisoformat(values["birth_date"]))
        except french.InvalidValue as exc:
            errors.append(FieldError("nir", str(exc)))
    status = (raw.get("identity_status") or "").strip().upper()
    if status and status not in IdentityStatus.values:
        errors.append(FieldError("identity_status", "must be PROV, RECUP, VALI or QUAL"))
    if status in {"RECUP", "QUAL"} and not values.get("nir"):
        errors.append(FieldError("identity_status", f"{status} needs a NIR"))
    values["identity_status"] = status or IdentityStatus.PROVISIONAL
    return values, errors


# Which index (key and truncation) each blind-index column holds.
INDEX_OF_COLUMN = {"bi_nir": "nir", "bi_birth_name_dob": "name_dob",
                   "bi_used_name_dob": "name_dob", "bi_phone": "phone", "bi_email": "email"}


def index_inputs(values: dict[str, str]) -> dict[str, str]:
    """The normalised input of each blind-index column ("" when the value is absent)."""
    dob = values.get("birth_date", "")

    def name_dob(name: str) -> str:
        return f"{french.normalize_name(name)}|{dob}" if name and dob else ""

    phone = values.get("phone", "")
    return {
        "bi_nir": french.normalize_nir(values["nir"]) if values.get("nir") else "",
        "bi_birth_name_dob": name_dob(values.get("birth_name", "")),
        "bi_used_name_dob": name_dob(values.get("used_name", "")),
        "bi_phone": french.normalize_phone(phone, canonical=True) if phone else "",
        "bi_email": french.normalize_email(values["email"]) if values.get("email") else "",
    }


def index_values(values: dict[str, str], generation: indexes.Generation) -> dict[str, object]:
    """Blind index columns for canonical values, under one of the lab's index keys
    (``bi_key`` names it).

    An absent value gets a random index value, not NULL: NULL would tell a copy who has
    no NIR, no email, or a used name (most often a married woman). A random value is a
    candidate that decryption then rules out, like any other coincidence.
    """
    row: dict[str, object] = {"bi_key_id": generation.bi_key}
    for column, text in index_inputs(values).items():
        index = INDEX_OF_COLUMN[column]
        row[column] = (generation.compute(index, text) if text
                       else secrets.randbelow(2 ** generation.bits_of(index)))
    return row


def index_filters(generations: Iterable[indexes.Generation], columns: Iterable[str],
                  normalized: str) -> list[Q]:
    """Rows whose ``columns`` may hold ``normalized``, under any of the generations: the
    candidates of a search (to be confirmed by decryption). One filter per generation
    and column, each to be run on its own with the lab: SQLite answers an ``OR`` of
    them by walking the whole lab instead of each ``(lab, bi_*)`` index."""
    found = []
    for generation in generations:
        key = (Q(bi_key__isnull=True) if generation.bi_key is None
               else Q(bi_key=generation.bi_key))
        for column in columns:
            value = generation.compute(INDEX_OF_COLUMN[column], normalized)
            found.append(key & Q(**{column: value}))
    return found


_AD_PREFIX = {name: context_prefix(TABLE, name) for name in SEALED_FIELDS}


def seal_values(key: Key, row_id: uuid.UUID, values: dict[str, str]) -> dict[str, bytes]:
    row = str(row_id).encode()
    return {name: key.seal(values.get(name, ""), _AD_PREFIX[name] + row, min_size)
            for name, min_size in SEALED_FIELDS.items()}


def sealed_row(lab_id: int, values: dict[str, str],
               generation: indexes.Generation | None = None) -> dict[str, object]:
    """A new patient row (column -> value) holding sealed values and blind indexes
    (under ``generation``, by default the lab's current index key: a bulk writer passes
    it once)."""
    generation = generation or indexes.current(lab_id)
    row_id = uuid.uuid4()
    key, wrapped = keyring.new_row_key(lab_id, TABLE, row_id)
    now = timezone.now()
    return {"id": row_id, "lab_id": lab_id, "identity_status": values["identity_status"],
            "data_key": wrapped, "created_at": now, "updated_at": now,
            **seal_values(key, row_id, values), **index_values(values, generation)}


def patient_key(patient_id: uuid.UUID, lab_id: int, wrapped: bytes) -> Key:
    """A patient's data key: it seals their identity and, in coffre.labwork, their orders and
    results, so that destroying it erases all of them."""
    return keyring.open_row_key(wrapped, TABLE, lab_id, patient_id)


def open_patient(patient: Patient, names: Iterable[str] | None = None) -> PatientRecord:
    """Decrypt the named fields (all by default) of a row into a record."""
    key = patient_key(patient.id, patient.lab_id, patient.data_key)
    wanted = SEALED_FIELDS if names is None else names
    row = str(patient.id).encode()
    values = {name: key.open(getattr(patient, name), _AD_PREFIX[name] + row) for name in wanted}
    return PatientRecord(patient.id, patient.lab_id, patient.identity_status, values)



def open_field(key: Key, patient_id: uuid.UUID, name: str, blob: bytes) -> str:
    """One sealed field of a patient whose data key is already open."""
    return key.open(bytes(blob), _AD_PREFIX[name] + str(patient_id).encode())


def open_columns(patient_id: uuid.UUID, lab_id: int, wrapped: bytes,
                 blobs: dict[str, bytes]) -> dict[str, str]:
    """Decrypt a few sealed columns fetched without the model (a search's candidates)."""
    key = patient_key(patient_id, lab_id, bytes(wrapped))
    row = str(patient_id).encode()
    return {name: key.open(bytes(blob), _AD_PREFIX[name] + row) for name, blob in blobs.items()}
