"""Controlled exports (the 2021 leak began with an unchecked migration extract).

request -> approve (a second person, who signs with their password and a second-factor
code: DPO above the lab's threshold, lab manager or DPO otherwise) -> run (only the
requested fields of only the covered patients, watermark rows mixed in, the CSV or FHIR
NDJSON encrypted to the recipient's age key line by line as it is produced: no clear
copy on disk, one patient's values in memory at a time) ->
fetch (copied out, deleted from staging) or purge (deleted at expiry). The purpose and
the recipient are sealed (coffre.exports.sealing); the CSV's cells are neutralised so a
spreadsheet runs none as a formula (coffre.spreadsheet).

Who acted: a web step is the logged-in account; a CLI request, run, fetch or expiry is
the operating-system user (``os:<user>``), never a name typed on the command line. An
approval needs the approver's own credentials on both channels (``accounts.stepup``), and
the four-eyes rule (``_approver``) refuses the account that requested, and, in the CLI,
the operating-system user that requested, whichever account they sign in as.

Audit: one entry per exported patient, action "export", role "export", channel "cli",
the purpose sealed as "export <id>: <purpose>". They are appended to the chain directly
(as coffre.audit.log.record does) WITHOUT the mass-reading detection: an approved export
of a few hundred patients would cross the hard threshold and lock the operating-system
account running it, mid-file; the two-person approval is this channel's control, and
the entries still make every patient's export visible in their history.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy

from coffre import config, faults, spreadsheet
from coffre.accounts import stepup
from coffre.accounts.models import Membership
from coffre.audit import canaries, chain
from coffre.audit.detection import DEFAULTS
from coffre.audit.log import record, seal_text
from coffre.audit.models import AuditSettings
from coffre.exports import sealing
from coffre.exports.models import ExportFormat, ExportRequest, ExportState, ExportWatermark
from coffre.files import private_file, write_private
from coffre.identity import french
from coffre.identity.access import patients_for
from coffre.identity.decoys import LabProfile, draw_unused
from coffre.identity.digests import PatientDigests
from coffre.identity.models import Patient
from coffre.identity.registry import CSV_COLUMNS, open_patient
from coffre.labwork.models import Order
from coffre.refusals import Refusal, reason
from coffre.tenancy.access import one_row
from coffre.tenancy.actors import Actor, LabActor, cli_actor
from coffre.tenancy.capabilities import may, roles
from coffre.tenancy.models import Lab
from coffre.vault import RecipientKeyError, check_recipient, encrypt_stream_to, fingerprint

EXPORT_ROLE = "export"  # the role of audit entries written by an export run
DEFAULT_DAYS = 7
MAX_DAYS = 30
REQUEST_DAYS = 14  # a request not produced within this is closed as expired
WATERMARK_ROWS = (2, 3)
# Columns whose values are near-unique: a single leaked cell is enough to attribute.
# A watermark row is a decoy like the lab's patients (identity.decoys), so its names,
# town and address are ordinary; its NIR, phone and e-mail are its own, and so is its
# name with its birth date ("name_dob", fingerprinted together).
DISTINCTIVE = ("nir", "phone", "email")
NAME_DOB = "name_dob"
_FP_INFO = b"coffre/export-watermark/v1"
WATERMARK_PURPOSE = "exports"  # the installation key the fingerprint key derives from


class ExportError(Refusal, ValueError):
    """A refused request or operation; its reason says why (never a patient value)."""


STATE_LABELS = {
    ExportState.REQUESTED: gettext_lazy("En attente d'approbation"),
    ExportState.APPROVED: gettext_lazy("Approuvé"),
    ExportState.PRODUCED: gettext_lazy("Produit"),
    ExportState.DOWNLOADED: gettext_lazy("Remis"),
    ExportState.EXPIRED: gettext_lazy("Expiré"),
    ExportState.REFUSED: gettext_lazy("Refusé"),
}


def state_label(code: str) -> str:
    return str(STATE_LABELS.get(code, code))


def _state(export: ExportRequest) -> object:
    """An export's state as a refusal parameter: its label, in the reader's language."""
    return STATE_LABELS.get(export.state, export.state)


NO_FIELDS = reason("export.no_fields", gettext_lazy("Choisissez au moins un champ."))
UNKNOWN_FIELDS = reason("export.unknown_fields", gettext_lazy(
    "Champ inconnu du registre : %(fields)s."))
PURPOSE_REQUIRED = reason("export.purpose_required", gettext_lazy("Le motif est obligatoire."))
RECIPIENT_REQUIRED = reason("export.recipient_required", gettext_lazy(
    "Le destinataire est obligatoire."))
PERIOD_REVERSED = reason("export.period_reversed", gettext_lazy(
    "La période se termine avant de commencer."))
RECIPIENT_KEY = reason("export.recipient_key", gettext_lazy(
    "Clé publique age du destinataire invalide (une clé X25519 commençant par age1…)."))
PATIENT_LIST_NOT_UUID = reason("export.patient_list_not_uuid", gettext_lazy(
    "La liste de patients contient autre chose que des identifiants (UUID)."))
PATIENT_LIST_EMPTY = reason("export.patient_list_empty", gettext_lazy(
    "La liste de patients est vide."))
UNKNOWN_FORMAT = reason("export.unknown_format", gettext_lazy(
    "Format inconnu : %(format)s (formats : %(known)s)."))
NOT_IN_FHIR = reason("export.not_in_fhir", gettext_lazy(
    "Certains champs n'ont pas de place dans une ressource FHIR Patient "
    "(%(fields)s) : exportez-les en CSV."))
NO_SUCH_EXPORT = reason("export.no_such_export", gettext_lazy("Aucun export n° %(id)s."))
NOT_AWAITING_APPROVAL = reason("export.not_awaiting_approval", gettext_lazy(
    "Cet export n'attend plus d'approbation (état : %(state)s)."))
SECOND_PERSON = reason("export.second_person", gettext_lazy(
    "Vous avez demandé cet export : il doit être approuvé par une autre personne."))
SECOND_OS_USER = reason("export.second_os_user", gettext_lazy(
    "Un export doit être approuvé par une seconde personne : %(requested_by)s l'a demandé "
    "et l'approbation est faite en tant que %(os_user)s ; approuvez depuis un autre "
    "utilisateur du système, ou sur le web."))
NOT_A_MEMBER = reason("export.not_a_member", gettext_lazy(
    "Vous n'êtes pas membre actif de ce laboratoire."))
DPO_ONLY = reason("export.dpo_only", gettext_lazy(
    "Cet export couvre %(count)s patients, plus que le seuil de %(threshold)s : seul le "
    "délégué à la protection des données (DPO) peut l'approuver."))
APPROVER_ROLE = reason("export.approver_role", gettext_lazy(
    "Seul un responsable de laboratoire ou le DPO peut approuver un export."))
TOO_LATE_TO_REFUSE = reason("export.too_late_to_refuse", gettext_lazy(
    "Cet export ne peut plus être refusé (état : %(state)s)."))
REFUSER_ROLE = reason("export.refuser_role", gettext_lazy(
    "Seul un responsable de laboratoire ou le DPO peut refuser un export."))
EXPIRY_DAYS = reason("export.expiry_days", gettext_lazy(
    "La durée de validité doit être comprise entre 1 et %(max)s jours."))
RUN_NOT_APPROVED = reason("export.run_not_approved", gettext_lazy(
    "L'export n° %(id)s est à l'état %(state)s : seul un export approuvé peut être "
    "produit."))
GREW_PAST_THRESHOLD = reason("export.grew_past_threshold", gettext_lazy(
    "L'export couvre désormais plus de patients que le seuil du DPO : il faut une "
    "nouvelle demande approuvée par le DPO."))
NOTHING_TO_FETCH = reason("export.nothing_to_fetch", gettext_lazy(
    "L'export n° %(id)s est à l'état %(state)s : rien à remettre."))
FILE_EXPIRED = reason("export.file_expired", gettext_lazy(
    "L'export n° %(id)s a expiré ; son fichier a été supprimé."))
OUTPUT_EXISTS = reason("export.output_exists", gettext_lazy(
    "%(path)s existe déjà : il n'est pas remplacé."))


# --- request ---------------------------------------------------------------------------

def parse_fields(text: str) -> list[str]:
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        raise ExportError(NO_FIELDS)
    unknown = [f for f in fields if f not in CSV_COLUMNS]
    if unknown:
        raise ExportError(UNKNOWN_FIELDS, fields=", ".join(unknown))
    return list(dict.fromkeys(fields))


def _day_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = timezone.get_current_timezone()
    return (dt.datetime.combine(start, dt.time.min, tz),
            dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tz))


def covered(export: ExportRequest, actor: LabActor) -> QuerySet[Patient]:
    """The patients an export covers: the lab's (through patients_for), created or with
    an order within the period, and within the explicit list when there is one."""
    low, high = _day_bounds(export.period_from, export.period_to)
    with_orders = Order.unscoped.filter(lab_id=export.lab_id, created_at__gte=low,
                                       created_at__lt=high).values("patient_id")
    scope = patients_for(actor).filter(Q(created_at__gte=low, created_at__lt=high)
                                       | Q(id__in=with_orders))
    if export.patient_ids is not None:
        scope = scope.filter(id__in=[uuid.UUID(p) for p in export.patient_ids])
    return scope


def _person_in_lab(username: str, lab: Lab) -> Membership | None:
    return (Membership.objects.select_related("user")
            .filter(user__username=username, user__is_active=True, lab=lab).first())


def request_export(lab: Lab, *, purpose: str, recipient: str, recipient_key: str,
                   fields: str, period_from: dt.date, period_to: dt.date,
                   patient_ids: list[str] | None = None, requested_by: str,
                   channel: str = "cli", address: str = "",
                   format: str = ExportFormat.CSV) -> ExportRequest:
    if not purpose.strip():
        raise ExportError(PURPOSE_REQUIRED)
    if not recipient.strip():
        raise ExportError(RECIPIENT_REQUIRED)
    if period_from > period_to:
        raise ExportError(PERIOD_REVERSED)
    names = parse_fields(fields)
    _check_format(format, names)
    try:
        key = check_recipient(recipient_key)
    except (RecipientKeyError, ValueError):
        raise ExportError(RECIPIENT_KEY) from None
    ids = None
    if patient_ids is not None:
        try:
            ids = sorted({str(uuid.UUID(p.strip())) for p in patient_ids if p.strip()})
        except ValueError:
            raise ExportError(PATIENT_LIST_NOT_UUID) from None
        if not ids:
            raise ExportError(PATIENT_LIST_EMPTY)
    export = ExportRequest(lab=lab, recipient_key=key, fields=",".join(names),
                           period_from=period_from, period_to=period_to, patient_ids=ids,
                           requested_by=requested_by, format=format)
    export.size_estimate = covered(export, _runner(lab)).count()
    sealing.ensure_key()  # not inside the transaction: a rollback would orphan a new key
    with transaction.atomic():
        export.save()  # the sealed texts are bound to the id
        export.purpose = sealing.seal("purpose", export.pk, purpose.strip())
        export.recipient = sealing.seal("recipient", export.pk, recipient.strip())
        export.save(update_fields=["purpose", "recipient"])
        _log_step(export, "export_request", requested_by, channel, address)
    return export


@dataclass(frozen=True)
class Texts:
    purpose: str
    recipient: str


def texts(export: ExportRequest) -> Texts:
    """The request's purpose and recipient, opened (in memory only)."""
    return Texts(sealing.open_text("purpose", export.pk, export.purpose),
                 sealing.open_text("recipient", export.pk, export.recipient))


def _check_format(fmt: str, fields: list[str]) -> None:
    """FHIR NDJSON carries Patient resources: only the columns a Patient has elements
    for (coffre.fhir.bulk.EXPORT_COLUMNS) can be asked for in that format."""
    if fmt not in ExportFormat.values:
        raise ExportError(UNKNOWN_FORMAT, format=repr(fmt),
                          known=", ".join(ExportFormat.values))
    if fmt == ExportFormat.NDJSON:
        from coffre.fhir.bulk import EXPORT_COLUMNS

        outside = [f for f in fields if f not in EXPORT_COLUMNS]
        if outside:
            raise ExportError(NOT_IN_FHIR, fields=", ".join(outside))


def _log_step(export: ExportRequest, action: str, person: str, channel: str,
              address: str, *, outcome: str = "ok", note: str = "") -> None:
    """One audit entry, with no patient, for each step of an export's life (request,
    approval, refusal, download, expiry, a refused signature): the DPO sees who moved it,
    from where (the web address, or the CLI's operating-system user)."""
    membership = _person_in_lab(person, export.lab)
    role = membership.role if membership else (EXPORT_ROLE if person.startswith("os:")
                                               else "unknown")
    actor = Actor(person=person, lab_id=export.lab_id, role=role, channel=channel,
                  address=address[:45])
    record(actor, action, [], kind="export", outcome=outcome,
           purpose=f"export {export.pk}" + (f": {note}" if note else ""))


def _runner(lab: Lab) -> LabActor:
    return cli_actor(lab.id, role=EXPORT_ROLE)


# --- approval --------------------------------------------------------------------------

def dpo_threshold(lab_id: int) -> int:
    own = AuditSettings.objects.filter(lab_id=lab_id).values_list(
        "export_approval_patients", flat=True).first()
    return own if own is not None else DEFAULTS["export_approval_patients"]


def _same_person(one: str, two: str) -> bool:
    """``os:alice`` (the CLI) and ``alice`` (an account) are taken as the same person."""
    return one.removeprefix("os:").casefold() == two.removeprefix("os:").casefold()


def _get_locked(export_id: int | str) -> ExportRequest:
    """The request, its row locked until the transaction ends (call inside one): two
    approvals at once cannot both pass."""
    _get(export_id)
    return ExportRequest.objects.select_for_update().select_related("lab").get(
        pk=int(export_id))


def _get(export_id: int | str) -> ExportRequest:
    try:
        return ExportRequest.objects.select_related("lab").get(pk=int(export_id))
    except (ValueError, ExportRequest.DoesNotExist):
        raise ExportError(NO_SUCH_EXPORT, id=str(export_id)[:20]) from None


def _needed(size: int, lab_id: int) -> str:
    """The capability approving an export of ``size`` patients needs."""
    return "export.approve_large" if size > dpo_threshold(lab_id) else "export.approve"


def _approver(export: ExportRequest, by: str, os_user: str = "") -> Membership:
    """The approving membership, or ExportError saying why ``by`` (an account; in the
    CLI, signing in as the operating-system user ``os_user``) may not approve (refreshes
    ``export.size_estimate``; saves nothing).

    Four eyes: the account that requested may not approve; nor, in the CLI, the
    operating-system user that requested (``os:<user>``), whichever account it signs in
    as: one shell user must not both request and approve. An account and an
    operating-system user of the same name are taken as one person."""
    if export.state != ExportState.REQUESTED:
        raise ExportError(NOT_AWAITING_APPROVAL, state=_state(export))
    if _same_person(by, export.requested_by):
        raise ExportError(SECOND_PERSON)
    if os_user and _same_person(os_user, export.requested_by):
        raise ExportError(SECOND_OS_USER, requested_by=export.requested_by, os_user=os_user)
    membership = _person_in_lab(by, export.lab)
    if membership is None:
        raise ExportError(NOT_A_MEMBER)
    export.size_estimate = covered(export, _runner(export.lab)).count()
    needed = _needed(export.size_estimate, export.lab_id)
    if not may(membership, needed):
        if needed == "export.approve_large":
            raise ExportError(DPO_ONLY, count=export.size_estimate,
                              threshold=dpo_threshold(export.lab_id))
        raise ExportError(APPROVER_ROLE)
    return membership


def approval_refusal(export: ExportRequest, by: str, os_user: str = "") -> ExportError | None:
    """Why ``by`` may not approve ``export`` now (the same checks as ``approve``, except
    the credentials), or None when they may: the web page shows its form from this.
    Saves nothing."""
    try:
        _approver(export, by, os_user)
    except ExportError as error:
        return error
    return None


def refusal_refusal(export: ExportRequest, by: str) -> ExportError | None:
    """Why ``by`` may not refuse ``export`` now (the same checks as ``refuse``)."""
    if export.state not in {ExportState.REQUESTED, ExportState.APPROVED}:
        return ExportError(TOO_LATE_TO_REFUSE, state=_state(export))
    membership = _person_in_lab(by, export.lab)
    if not may(membership, "export.refuse"):
        return ExportError(REFUSER_ROLE)
    return None


def check_refusal(export_id: int | str, by: str) -> None:
    """Raise the ExportError that ``refuse`` would raise for ``by`` now (saves nothing)."""
    problem = refusal_refusal(_get(export_id), by)
    if problem is not None:
        raise problem


def approve(export_id: int | str, credentials: stepup.Credentials, *, channel: str,
            request: HttpRequest | None = None, address: str = "",
            os_user: str = "") -> ExportRequest:
    """Approve with the approver's own credentials (password and second-factor code),
    on the web (``request``: the logged-in person's, whose username the credentials
    carry) or in the CLI (``os_user``: who runs it; the account is the one the
    credentials prove). Raises ExportError, or stepup.StepUpRefused (counted as a failed
    login, and in the access log)."""
    if channel == "cli":
        os_user = os_user or cli_actor(None).person
        request, address = stepup.cli_request(os_user), os_user
    elif request is None:
        raise ValueError("a web approval needs the web request")
    export = _get(export_id)
    # The checks that need no proof first: a refused approval spends no code.
    _approver(export, credentials.username, os_user)
    try:
        user = stepup.confirm(credentials, request)
    except stepup.StepUpRefused as refused:
        _log_step(export, "export_approve", os_user or credentials.username, channel,
                  address, outcome="refused",
                  note=f"credentials of {credentials.username} refused ({refused.reason})")
        raise
    by = user.get_username()
    with transaction.atomic():
        export = _get_locked(export_id)
        membership = _approver(export, by, os_user)
        export.state, export.approved_by = ExportState.APPROVED, by
        export.approved_os_user = os_user
        export.approved_role, export.approved_at = membership.role, timezone.now()
        export.save()
        _log_step(export, "export_approve", by, channel, address)
    return export


def refuse(export_id: int | str, by: str, *, channel: str, address: str = "") -> ExportRequest:
    """Refuse as ``by``, an account the caller has authenticated: the web session's, or
    in the CLI the one ``accounts.stepup.confirm`` proved (``address``: os:<user>)."""
    with transaction.atomic():
        export = _get_locked(export_id)
        problem = refusal_refusal(export, by)
        if problem is not None:
            raise problem
        export.state, export.closed_at = ExportState.REFUSED, timezone.now()
        export.save()
        _log_step(export, "export_refuse", by, channel, address)
    return export


# --- run -------------------------------------------------------------------------------

def staging_dir() -> Path:
    return config.subdir("exports")


def staged_file(export: ExportRequest) -> Path:
    return staging_dir() / f"{export.pk}.{export.format or ExportFormat.CSV}.age"


def watermark_key() -> tuple[str, bytes]:
    """(key id, key) of the fingerprints of new watermark rows: derived from the active
    version of the "exports" installation key."""
    from coffre.keyring import services as keyring

    versions = keyring.installation_key(WATERMARK_PURPOSE)
    return versions.hex_id, versions.derive(_FP_INFO)


def watermark_keys() -> list[bytes]:
    """The fingerprint key of every version still present (an export made before a
    rotation keeps its fingerprints under its version)."""
    from coffre.keyring import services as keyring

    return [key.derive(_FP_INFO)
            for key in keyring.installation_key(WATERMARK_PURPOSE).all_versions()]


def watermark_uses(key_id: str) -> int:
    """Watermark fingerprints that need this version (keys retire refuses while any)."""
    return ExportWatermark.objects.filter(key_id=key_id).count()


def row_fingerprint(key: bytes, row: dict[str, str]) -> str:
    return fingerprint(key, "row\0" + json.dumps(sorted(row.items()), ensure_ascii=False))


def cell_fingerprint(key: bytes, column: str, value: str) -> str:
    return fingerprint(key, f"cell\0{column}\0{value}")


def name_dob_fingerprint(key: bytes, name: str, birth_date: str) -> str:
    """A name (normalised as the registry indexes it) with an ISO birth date."""
    return fingerprint(key, f"cell\0{NAME_DOB}\0{french.normalize_name(name)}|{birth_date}")


def _fingerprints(key: bytes, row: dict[str, str]) -> set[str]:
    found = {row_fingerprint(key, row)}
    found.update(cell_fingerprint(key, c, v) for c, v in row.items() if c in DISTINCTIVE and v)
    if row.get("birth_date"):
        found.update(name_dob_fingerprint(key, row[c], row["birth_date"])
                     for c in ("birth_name", "used_name") if row.get(c))
    return found


def watermark_rows(lab_id: int, fields: list[str], rng: random.Random
                   ) -> list[dict[str, str]]:
    """2-3 decoy patients like the lab's own, none of whose NIR, name + birth date,
    phone or e-mail is a patient's of the lab; only the requested fields."""
    profile = LabProfile(lab_id, rng, exclude=set(canaries.canary_ids()))
    taken = PatientDigests(lab_id)
    mine: set[tuple[str, str]] = set()
    return [{name: values.get(name, "") for name in fields}
            for values in (draw_unused(profile, taken, mine, rng)
                           for _ in range(rng.randint(*WATERMARK_ROWS)))]


def _csv_line(values: list[str]) -> bytes:
    return spreadsheet.csv_line(values).encode()


def _csv_lines(scope: QuerySet[Patient], fields: list[str], marks: list[dict[str, str]],
               rng: random.Random, ids: list[uuid.UUID],
               fmt: str = ExportFormat.CSV) -> Iterator[bytes]:
    """The export's file, a line at a time as the encryption reads it (only one
    patient's clear values in memory at once): a CSV with its header, or FHIR NDJSON
    (one Patient per line, of the requested fields only); watermark rows at random
    places, in the same form; the exported patients' ids are appended to ``ids`` for
    the audit entries."""
    if fmt == ExportFormat.NDJSON:
        from coffre.fhir.bulk import patient_line

        def line(row: dict[str, str]) -> bytes:
            return patient_line(row)
    else:
        def line(row: dict[str, str]) -> bytes:
            return _csv_line([row[name] for name in fields])

        yield _csv_line(fields)
    total = scope.count()
    places = sorted((rng.randint(0, total), index) for index in range(len(marks)))
    for position, patient in enumerate(scope.order_by("id").iterator(chunk_size=500)):
        while places and places[0][0] <= position:
            yield line(marks[places.pop(0)[1]])
        record = open_patient(patient, fields)
        ids.append(patient.id)
        yield line({name: record.values.get(name, "") for name in fields})
        faults.point("export-row")
    for _, index in places:  # a mark placed after the last row
        yield line(marks[index])


def _write_private(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` fills an owner-only temporary file, renamed into place once complete:
    a crash leaves no half file under the final name."""
    with private_file(path) as handle:
        write(handle)


def run(export_id: int | str, days: int = DEFAULT_DAYS) -> ExportRequest:
    if not 1 <= days <= MAX_DAYS:
        raise ExportError(EXPIRY_DAYS, max=MAX_DAYS)
    export = _get(export_id)
    if export.state != ExportState.APPROVED:
        raise ExportError(RUN_NOT_APPROVED, id=export.pk, state=_state(export))
    actor = _runner(export.lab)
    fields = export.field_list()
    scope = covered(export, actor)
    if (scope.count() > dpo_threshold(export.lab_id)
            and export.approved_role not in roles("export.approve_large")):
        raise ExportError(GREW_PAST_THRESHOLD)
    rng = random.Random(secrets.randbits(64))  # noqa: S311 - positions of synthetic rows
    marks = watermark_rows(export.lab_id, fields, rng)
    ids: list[uuid.UUID] = []
    path = staged_file(export)
    _write_private(path, lambda out: encrypt_stream_to(
        export.recipient_key, _csv_lines(scope, fields, marks, rng, ids,
                                              export.format), out))
    faults.point("export-written")  # the file in place, the request not yet produced
    key_id, key = watermark_key()
    prints = set().union(*(_fingerprints(key, mark) for mark in marks))
    now = timezone.now()
    try:
        with transaction.atomic():
            ExportWatermark.objects.bulk_create(
                [ExportWatermark(export=export, fingerprint=fp, key_id=key_id)
                 for fp in sorted(prints)])
            _log_export(actor, export, ids, now)
            export.state, export.rows_exported, export.produced_at = (
                ExportState.PRODUCED, len(ids), now)
            export.expires_at = now + dt.timedelta(days=days)
            export.size_estimate = len(ids)
            export.save()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if export.patient_ids is not None:
        # Picked by id: a canary in the list is a trap sprung (alert names the reader).
        canaries.check_reads(actor, ids)
    return export


def _approval(export: ExportRequest) -> str:
    """Who approved: the account, and the operating-system user of a CLI approval."""
    via = f" via {export.approved_os_user}" if export.approved_os_user else ""
    return f"{export.approved_by}{via}"


def _log_export(actor: LabActor, export: ExportRequest, ids: list[uuid.UUID],
                at: dt.datetime) -> None:
    """One chained entry per exported patient, as coffre.audit.log.record writes them,
    without the mass-reading detection (see the module's docstring)."""
    entry = {"at": at, "person": actor.person, "role": EXPORT_ROLE, "channel": actor.channel,
             "lab_id": actor.lab_id, "action": "export", "kind": "export",
             "address": actor.address, "outcome": "ok",
             "purpose": seal_text(f"export {export.pk}: {texts(export).purpose} (requested "
                                  f"by {export.requested_by}, approved by "
                                  f"{_approval(export)})", "purpose")}
    for start in range(0, len(ids), 5000):
        chain.append([{**entry, "patient_id": pid} for pid in ids[start:start + 5000]])


# --- fetch, expiry, listing ------------------------------------------------------------

def fetch(export_id: int | str, out: Path) -> ExportRequest:
    export = _get(export_id)
    if export.state != ExportState.PRODUCED:
        raise ExportError(NOTHING_TO_FETCH, id=export.pk, state=_state(export))
    if export.expires_at and export.expires_at <= timezone.now():
        purge_expired()
        raise ExportError(FILE_EXPIRED, id=export.pk)
    if out.exists() or out.is_symlink():
        raise ExportError(OUTPUT_EXISTS, path=str(out))
    source = staged_file(export)
    data = source.read_bytes()
    try:
        write_private(out, data, replace=False)
    except FileExistsError:
        raise ExportError(f"{out} exists: not replacing it") from None
    source.unlink()
    with transaction.atomic():
        export.state, export.downloaded_at = ExportState.DOWNLOADED, timezone.now()
        export.save()
        _log_step(export, "export_fetch", cli_actor(export.lab_id).person, "cli", "")
    return export


def purge_expired(now: dt.datetime | None = None) -> list[int]:
    """Delete the staged files of produced exports past their expiry, and close the
    requests never produced within REQUEST_DAYS: an approval given for a need of the
    moment must not stay usable for months. Then sweep what killed runs left."""
    now = now or timezone.now()
    stale = now - dt.timedelta(days=request_days())
    done = []
    for export in ExportRequest.objects.filter(
            Q(state=ExportState.PRODUCED, expires_at__lte=now)
            | Q(state__in=[ExportState.REQUESTED, ExportState.APPROVED],
                requested_at__lte=stale)).select_related("lab"):
        staged_file(export).unlink(missing_ok=True)
        with transaction.atomic():
            export.state, export.closed_at = ExportState.EXPIRED, now
            export.save()
            _log_step(export, "export_expire", cli_actor(export.lab_id).person, "cli", "")
        done.append(export.pk)
    sweep_staging(now)
    return done


STALE_SECONDS = 15 * 60


def sweep_staging(now: dt.datetime | None = None) -> list[str]:
    """Delete the staged files that no produced export owns: what a run killed mid-way
    left (its ``.partial``, or its finished file whose request was never marked
    produced; a run that gets an error removes its own). A run still writing keeps its
    file: only files untouched for STALE_SECONDS go. Returns their names."""
    now = now or timezone.now()
    produced = {staged_file(e).name for e in
                ExportRequest.objects.filter(state=ExportState.PRODUCED)}
    swept = []
    for path in staging_dir().iterdir():
        try:
            idle = now.timestamp() - path.lstat().st_mtime
        except FileNotFoundError:
            continue
        if path.name not in produced and idle >= STALE_SECONDS:
            path.unlink(missing_ok=True)
            swept.append(path.name)
    return swept


def request_days() -> int:
    """Days a request may wait for its approval and run (COFFRE_EXPORT_REQUEST_DAYS)."""
    return config.env_int("COFFRE_EXPORT_REQUEST_DAYS", REQUEST_DAYS)


def access_export(actor: LabActor, export_id: int | str) -> ExportRequest:
    """An export request of the actor's lab; RowNotFound for another lab's or none."""
    return one_row(ExportRequest.objects.select_related("lab").filter(lab_id=actor.lab_id),
                   export_id, "export")


def requests_of(lab: Lab) -> QuerySet[ExportRequest]:
    """The lab's export requests, newest first (the web list)."""
    return ExportRequest.objects.filter(lab=lab).order_by("-requested_at", "-pk")


def listing(lab: Lab) -> list[dict]:
    def iso(value):
        return value.isoformat() if value else None

    return [{"id": e.pk, "lab": lab.finess, "state": e.state, "purpose": texts(e).purpose,
             "recipient": texts(e).recipient, "fields": e.field_list(), "format": e.format,
             "from": e.period_from.isoformat(), "to": e.period_to.isoformat(),
             "explicit_patients": e.patient_ids is not None,
             "size_estimate": e.size_estimate, "requested_by": e.requested_by,
             "requested_at": iso(e.requested_at), "approved_by": e.approved_by or None,
             "approved_os_user": e.approved_os_user or None,
             "produced_at": iso(e.produced_at), "expires_at": iso(e.expires_at),
             "downloaded_at": iso(e.downloaded_at)}
            for e in ExportRequest.objects.filter(lab=lab).order_by("pk")]


# --- attribution of a leaked file --------------------------------------------------------

def attribute(csv_text: str) -> int | None:
    """The export a leaked CSV (or FHIR NDJSON) came from, by its watermark rows (None
    when none match, or when two exports match equally)."""
    if csv_text.lstrip().startswith("{"):  # FHIR NDJSON: the Patients' registry values
        from coffre.fhir.bulk import patient_row

        rows = [row for row in (patient_row(line) for line in csv_text.splitlines()
                                if line.strip()) if "__shape__" not in row]
    else:
        lines = [[spreadsheet.restore(cell) for cell in line]
                 for line in csv.reader(io.StringIO(csv_text))]
        if not lines:
            return None
        header = [h.strip() for h in lines[0]]
        if header and all(h in CSV_COLUMNS for h in header):
            rows = [dict(zip(header, line, strict=False)) for line in lines[1:]]
        else:  # no header: try each cell as each distinctive column
            return _vote({cell_fingerprint(key, c, v) for key in watermark_keys()
                          for line in lines for v in line if v for c in DISTINCTIVE})
    return _vote({fp for key in watermark_keys() for row in rows
                  for fp in _fingerprints(key, row)})


def _vote(prints: set[str]) -> int | None:
    if not prints:
        return None
    votes: Counter[int] = Counter()
    ordered = sorted(prints)
    for start in range(0, len(ordered), 500):  # SQLite's bound-parameter limit
        votes.update(ExportWatermark.objects.filter(fingerprint__in=ordered[start:start + 500])
                     .values_list("export_id", flat=True))
    ranked = votes.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]
