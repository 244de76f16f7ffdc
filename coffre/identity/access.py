"""The one way to reach patients: scoped to the actor's lab, and audited.

A patient of another lab is indistinguishable from one that does not exist: the same
PatientNotFound, the same empty search.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from coffre.audit import canaries, detection, log
from coffre.audit.alerts import raise_alert
from coffre.audit.models import AlertKind
from coffre.identity import french
from coffre.identity.models import Patient
from coffre.identity.registry import (
    FieldError,
    PatientRecord,
    clean_values,
    index_filters,
    index_inputs,
    open_field,
    open_patient,
    patient_key,
    sealed_row,
)
from coffre.keyring import indexes
from coffre.refusals import Reason, Refusal, reason
from coffre.tenancy import rls
from coffre.tenancy.access import RowNotFound
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import require
from coffre.tenancy.models import Lab
from coffre.vault import Key


class PatientNotFound(RowNotFound):
    pass


class SearchError(Refusal, ValueError):
    """The search criteria are incomplete or malformed; the reason says which (never the
    value)."""


NIR_KEY = reason("search.nir_key", gettext_lazy(
    "NIR : la clé de contrôle (2 derniers chiffres) ne correspond pas aux 13 premiers "
    "caractères."))
NIR_LENGTH = reason("search.nir_length", gettext_lazy(
    "NIR : il faut 15 caractères, les 13 du numéro et la clé."))
NIR_INVALID = reason("search.nir_invalid", gettext_lazy("NIR invalide : vérifiez la saisie."))
NAME_WITHOUT_BIRTH_DATE = reason("search.name_without_birth_date", gettext_lazy(
    "La recherche par nom demande aussi la date de naissance."))
BIRTH_DATE_INVALID = reason("search.birth_date_invalid", gettext_lazy(
    "Date de naissance invalide."))
PHONE_INVALID = reason("search.phone_invalid", gettext_lazy("Numéro de téléphone invalide."))
EMAIL_INVALID = reason("search.email_invalid", gettext_lazy("Adresse de courriel invalide."))
NO_CRITERIA = reason("search.no_criteria", gettext_lazy(
    "Indiquez un NIR, un nom et une date de naissance, un téléphone ou un courriel."))
_NIR_RULES = {"nir_key": NIR_KEY, "nir_length": NIR_LENGTH}


def _search_refusal(kind: str, error: french.InvalidValue) -> SearchError:
    why: Reason = {"nir": _NIR_RULES.get(error.rule, NIR_INVALID),
                   "birth_date": BIRTH_DATE_INVALID, "phone": PHONE_INVALID,
                   "email": EMAIL_INVALID}.get(kind, NO_CRITERIA)
    return SearchError(why)


class InvalidPatient(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.column}: {e.reason}" for e in errors))
        self.errors = errors


def patients_for(actor: LabActor) -> QuerySet[Patient]:
    """Every patient query starts here: the actor's lab and nothing else, never an erased
    patient, and nothing at all for an account locked by the mass-reading detection."""
    detection.ensure_not_locked(actor)
    return Patient.unscoped.filter(lab_id=actor.lab_id, data_key__isnull=False)


def reachable_ids(actor: LabActor, patient_ids: Iterable[uuid.UUID | None]) -> set[uuid.UUID]:
    """Which of these ids are patients of the actor's lab that a page may link to
    (canaries excluded: a link to one is a trap for the person who follows it). Reads
    no value and logs nothing; opening the record logs the read."""
    wanted = {pid for pid in patient_ids if pid is not None} - canaries.canary_ids()
    if not wanted:
        return set()
    return set(patients_for(actor).filter(id__in=wanted)
               .values_list("id", flat=True))


def other_group_labs(actor: LabActor) -> list[Lab]:
    """The other labs of the actor's lab group: where break-the-glass can reach."""
    group_id = Lab.objects.filter(pk=actor.lab_id).values_list("group_id", flat=True).first()
    if group_id is None:
        return []
    return list(Lab.objects.filter(group_id=group_id).exclude(pk=actor.lab_id))


def _parse_id(patient_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return patient_id if isinstance(patient_id, uuid.UUID) else uuid.UUID(str(patient_id))
    except ValueError:
        raise PatientNotFound("no such patient") from None


def access_patient(actor: LabActor, patient_id: uuid.UUID | str,
                   names: Iterable[str] | None = None) -> PatientRecord:
    """Open one patient of the actor's lab, recording the read."""
    pid = _parse_id(patient_id)
    patient = patients_for(actor).filter(id=pid).first()
    if patient is None:
        log.record(actor, "read", [pid], outcome="not_found")
        raise PatientNotFound("no such patient")
    record = open_patient(patient, names)
    log.record(actor, "read", [pid])
    return record


@dataclass(frozen=True)
class _Criteria:
    """A search: the index columns to look in, the normalised input they index, the
    canonical values a candidate must hold, and the sealed fields to open to check."""

    kind: str
    columns: tuple[str, ...]
    normalized: str
    wanted: dict[str, str]
    fields: tuple[str, ...]


def _criteria(nir: str | None, name: str | None, birth_date: str | None, phone: str | None,
              email: str | None) -> _Criteria:
    kind = "nir" if nir else "birth_date" if name or birth_date else (
        "phone" if phone else "email")
    try:
        if nir:
            values = {"nir": french.clean_nir(nir)}
            return _Criteria("nir", ("bi_nir",), index_inputs(values)["bi_nir"], values,
                             ("nir",))
        if name or birth_date:
            if not (name and birth_date):
                raise SearchError(NAME_WITHOUT_BIRTH_DATE)
            dob = french.clean_birth_date(birth_date).isoformat()
            kind = "name"
            text = f"{french.normalize_name(name)}|{dob}"
            return _Criteria("name", ("bi_birth_name_dob", "bi_used_name_dob"), text,
                             {"name": french.normalize_name(name), "birth_date": dob},
                             ("birth_date", "birth_name", "used_name"))
        if phone:
            values = {"phone": french.clean_phone(phone)}
            return _Criteria("phone", ("bi_phone",), index_inputs(values)["bi_phone"], values,
                             ("phone",))
        if email:
            values = {"email": french.clean_email(email)}
            return _Criteria("email", ("bi_email",), index_inputs(values)["bi_email"], values,
                             ("email",))
    except french.InvalidValue as exc:
        raise _search_refusal(kind, exc) from None
    raise SearchError(NO_CRITERIA)


def _confirms(key: Key, pid: uuid.UUID, blobs: dict[str, bytes],
              criteria: _Criteria) -> bool:
    """Blind indexes are truncated, and absent values carry random index values: drop
    the candidates that only share a hash, opening as few fields as decide (a name
    search opens the birth date first: most candidates stop there). Stored values are
    canonical already."""
    wanted = criteria.wanted
    if criteria.kind == "name":
        if open_field(key, pid, "birth_date", blobs["birth_date"]) != wanted["birth_date"]:
            return False
        names = {french.normalize_name(n) for n in (
            open_field(key, pid, "birth_name", blobs["birth_name"]),
            open_field(key, pid, "used_name", blobs["used_name"])) if n}
        return wanted["name"] in names
    kind = criteria.kind
    value = open_field(key, pid, kind, blobs[kind])
    if kind == "email":
        return bool(value) and value.lower() == wanted["email"].lower()
    return bool(value) and value == wanted[kind]


def find_patients(actor: LabActor, *, nir: str | None = None, name: str | None = None,
                  birth_date: str | None = None, phone: str | None = None,
                  email: str | None = None) -> list[PatientRecord]:
    """Search the actor's lab through the blind indexes; every match read is recorded."""
    matches = _search(patients_for(actor), [actor.lab_id], nir=nir, name=name,
                      birth_date=birth_date, phone=phone, email=email)
    log.record(actor, "search", [r.id for r in matches],
               outcome="ok" if matches else "no_match")
    return canaries.without(matches)


def _search(scope: QuerySet[Patient], lab_ids: Iterable[int], *, nir: str | None = None,
            name: str | None = None, birth_date: str | None = None,
            phone: str | None = None, email: str | None = None) -> list[PatientRecord]:
    """The patients of ``scope`` (in ``lab_ids``) matching the criteria. Each lab's
    index values are its own (per-lab keys), so the filter is built per lab; the
    candidates are fetched narrow (the few sealed fields that decide) and only the
    true matches are opened whole."""
    criteria = _criteria(nir, name, birth_date, phone, email)
    matched, seen = [], set()
    for lab_id in lab_ids:
        for where in index_filters(indexes.in_use(lab_id), criteria.columns,
                                   criteria.normalized):
            for pid, lab, wrapped, blobs in _candidates(
                    scope.filter(Q(lab_id=lab_id) & where), criteria.fields):
                if pid in seen:  # a candidate of both names: decided once
                    continue
                seen.add(pid)
                if _confirms(patient_key(pid, lab, wrapped), pid, blobs, criteria):
                    matched.append(pid)
    if not matched:
        return []
    return [open_patient(patient) for patient in scope.filter(id__in=matched).order_by("id")]


def _candidates(rows: QuerySet[Patient], fields: tuple[str, ...]
                ) -> Iterator[tuple[uuid.UUID, int, bytes, dict[str, bytes]]]:
    """(id, lab, wrapped data key, the sealed fields) of the rows, through a cursor: a
    search may read thousands of candidates (docs/architecture.md, "Blind indexes"), and
    the ORM's per-row conversion would cost more than their decryption."""
    sql, params = rows.values_list("id", "lab_id", "data_key", *fields).query.sql_with_params()
    to_id = Patient._meta.pk.to_python
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(2000):
            for raw_id, lab_id, wrapped, *blobs in chunk:
                yield to_id(raw_id), lab_id, bytes(wrapped), dict(zip(fields, blobs,
                                                                      strict=True))


# --- break-the-glass: another lab of the group, with a written reason ------------------

MIN_REASON = 15


class ReasonRequired(ValueError):
    pass


class BreakGlassRefused(PermissionError):
    pass


def _group_labs(actor: LabActor, reason: str) -> list[Lab]:
    """The other labs of the actor's lab group, once the break-the-glass rules hold."""
    require(actor, "patient.break_glass", BreakGlassRefused)
    if len(reason.strip()) < MIN_REASON:
        raise ReasonRequired(f"break-the-glass needs a written reason of at least "
                             f"{MIN_REASON} characters")
    detection.ensure_not_locked(actor)
    labs = other_group_labs(actor)
    rls.widen(lab.id for lab in labs)
    return labs


def _group_patients(labs: list[Lab]) -> QuerySet[Patient]:
    return Patient.unscoped.filter(lab__in=labs, data_key__isnull=False)


def _record_break_glass(actor: LabActor, action: str, records: list[PatientRecord],
                        reason: str) -> None:
    """Alert each patient's lab first (a lock raised by the log must not skip them), then
    log every record read, canaries included, as find_patients does."""
    canary_ids = canaries.canary_ids()
    for record in records:
        if record.id in canary_ids:
            continue  # the canary check alerts; a break-glass alert would point at it
        summary = _("bris de glace (%(action)s) depuis le laboratoire %(lab)s") % {
            "action": _("consultation") if action == "read" else _("recherche"),
            "lab": actor.lab_id}
        raise_alert(record.lab_id, AlertKind.BREAK_GLASS, actor.person, summary,
                    patient_id=record.id)
    log.record(actor, action, [r.id for r in records],
               outcome="break_glass" if records else "no_match", purpose=reason)


def break_glass_find(actor: LabActor, reason: str, **criteria: str | None
                     ) -> list[PatientRecord]:
    """Search the other labs of the group; logged with the reason and alerted."""
    labs = _group_labs(actor, reason)
    matches = _search(_group_patients(labs), [lab.id for lab in labs], **criteria)
    _record_break_glass(actor, "search", matches, reason)
    return canaries.without(matches)


def break_glass_access(actor: LabActor, patient_id: uuid.UUID | str, reason: str
                       ) -> PatientRecord:
    pid = _parse_id(patient_id)
    patient = _group_patients(_group_labs(actor, reason)).filter(id=pid).first()
    if patient is None:
        log.record(actor, "read", [pid], outcome="not_found", purpose=reason)
        raise PatientNotFound("no such patient")
    record = open_patient(patient)
    _record_break_glass(actor, "read", [record], reason)
    return record


def create_patient(actor: LabActor, raw: dict[str, str]) -> PatientRecord:
    values, errors = clean_values(raw)
    if errors:
        raise InvalidPatient(errors)
    with transaction.atomic():
        patient = Patient(**sealed_row(actor.lab_id, values))
        patient.save(force_insert=True)
        log.record(actor, "create", [patient.id])
    values.pop("identity_status")
    return PatientRecord(patient.id, patient.lab_id, patient.identity_status, values)

