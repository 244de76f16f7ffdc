"""The breach record made from a scan, its sealed free text, the 72-hour deadline, the
draft notification to the CNIL (GDPR art. 33) and the DPO's review of the drafts.

Patients' letters and emails (art. 34) are in coffre.breach.letters. Every change is
recorded in the access log with kind "breach" and no patient value.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from coffre.audit import canaries, log
from coffre.breach.models import (
    SEALED_TEXT,
    Breach,
    BreachStatus,
    Channel,
    Notification,
    NotificationKind,
)
from coffre.breach.report import CONFIDENCES, Evidence, ScanReport
from coffre.identity.models import Patient
from coffre.keyring import services as keyring
from coffre.tenancy.access import RowNotFound, one_row
from coffre.tenancy.actors import Actor, LabActor
from coffre.tenancy.capabilities import require
from coffre.tenancy.models import Lab
from coffre.vault import Key, context

TABLE = "breach_breach"
NOTE_TABLE = "breach_notification"
CHUNK = 5000  # ids per IN (...) query

# How the categories of coffre.breach.report are said to the CNIL and to patients.
CATEGORY_LABELS = {
    "identity": "identité (noms, prénoms, sexe)",
    "nir": "numéro de sécurité sociale (NIR)",
    "contact": "coordonnées (téléphone, adresse électronique)",
    "address": "adresse postale",
    "birth_date": "date de naissance",
    "health": "données de santé (commentaires médicaux, résultats, traitements)",
    "credentials": "identifiants et mots de passe",
    "insurance": "organisme d'assurance maladie",
    "prescriber": "médecin prescripteur",
    "other": "autres données",
}
CONFIDENCE_LABELS = {
    "nir": "NIR identique (clé valide)",
    "name_birth": "nom et date de naissance",
    "contact": "téléphone ou adresse électronique seuls",
}

STRENGTH_LABELS = {"conclusive": "concluant", "strong": "fort", "weak": "faible"}


def _day(iso: str | None) -> str:
    return dt.date.fromisoformat(iso[:10]).strftime("%d/%m/%Y") if iso else "—"


def _recipient(detail: dict) -> str:
    """The recipient of the export a watermark names, opened from the export's sealed
    record (the breach record keeps only the export's id)."""
    if detail.get("recipient"):  # a record made before the recipient was sealed
        return detail["recipient"]
    from coffre.exports.models import ExportRequest
    from coffre.exports.services import texts

    export = ExportRequest.objects.filter(pk=detail.get("export_id")).first()
    return texts(export).recipient if export is not None else "—"


def evidence_text(evidence: Evidence) -> str:
    """What a piece of evidence supports, in French for the CNIL and the DPO, from its
    details (the scanner's own statement when they are missing); no more than it says."""
    d = evidence.detail or {}
    if evidence.kind == "watermark" and "export_id" in d:
        return (f"{evidence.rows} ligne(s) du fichier sont des lignes filigranes de l'export "
                f"n° {d['export_id']} (FINESS {d.get('finess', '—')}), lignes fictives écrites "
                f"dans le seul fichier de cet export : le fichier provient de cet export "
                f"(demandé par {d.get('requested_by') or '—'}, approuvé par "
                f"{d.get('approved_by') or '—'}, produit le {_day(d.get('produced_at'))}, "
                f"destinataire : {_recipient(d)}). Cela ne dit pas qui l'a "
                "divulgué : le destinataire, ou quiconque a eu le fichier ensuite."
                + ("" if evidence.strength == "conclusive"
                   else " Une seule ligne : indice fort, non concluant."))
    if evidence.kind == "canary" and "canaries" in d:
        return (f"{evidence.rows} ligne(s) du fichier correspondent à {d['canaries']} "
                f"patient(s) sentinelle(s) du laboratoire (FINESS {d.get('finess', '—')}), "
                f"créés au plus tard le {_day(d.get('planted_to'))} et qui n'existent que "
                "dans ses données : le fichier provient d'une copie de ces données faite "
                "après cette date (base, sauvegarde ou export : les sentinelles ne disent "
                "pas laquelle), sans désigner qui l'a faite.")
    return evidence.statement


class BreachError(ValueError):
    """A refused operation on a breach record; the message names the problem, never a
    patient value."""


class BreachNotFound(BreachError, RowNotFound):
    """No such breach in the actor's lab."""


# --- sealed free text -------------------------------------------------------------------

def _key(breach: Breach) -> Key:
    return keyring.open_row_key(bytes(breach.data_key), TABLE, breach.lab_id, breach.pk)


def _seal(key: Key, table: str, column: str, row_id: int, text: str,
          min_size: int = 128) -> bytes:
    return key.seal(text, context(table, column, row_id), min_size)


def texts(breach: Breach) -> dict[str, str]:
    """The breach's free text in clear (in memory only)."""
    key = _key(breach)
    return {column: key.open(bytes(getattr(breach, column)), context(TABLE, column, breach.pk))
            for column in SEALED_TEXT}


def _set_texts(breach: Breach, key: Key, values: dict[str, str]) -> None:
    for column, size in SEALED_TEXT.items():
        if column in values:
            text = values[column].strip()
            setattr(breach, column, _seal(key, TABLE, column, breach.pk, text, size))


def update_texts(actor: Actor, breach: Breach, values: dict[str, str]) -> None:
    require(actor, "breach.manage")
    unknown = set(values) - set(SEALED_TEXT)
    if unknown:
        raise BreachError(f"unknown breach fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        _set_texts(breach, _key(breach), values)
        breach.save(update_fields=list(values))
        log.record(actor, "update", [], kind="breach")


def notification_body(note: Notification) -> str:
    """The text the DPO edited and kept for this draft ("" while untouched)."""
    if not bytes(note.body):
        return ""
    return _key(note.breach).open(bytes(note.body), context(NOTE_TABLE, "body", note.pk))


# --- from a scan to a record ------------------------------------------------------------

def lab_patients(lab_id: int, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these ids are patients of the lab, not erased (ids only, nothing read)."""
    ids = list(ids)
    found: set[uuid.UUID] = set()
    for start in range(0, len(ids), CHUNK):
        found.update(Patient.unscoped.filter(lab_id=lab_id, data_key__isnull=False,
                                             id__in=ids[start:start + CHUNK])
                     .values_list("id", flat=True))
    return found


def lab_part(report: ScanReport, lab_id: int) -> ScanReport:
    """The part of a scan a lab's breach record keeps: the file's totals, this lab's
    impact, evidence about this lab (or about no lab), and only this lab's patients."""
    mine = lab_patients(lab_id, report.matches)
    return ScanReport(
        files=report.files, rows_read=report.rows_read, rows_matched=report.rows_matched,
        columns=report.columns, categories=report.categories,
        labs=[lab for lab in report.labs if lab.lab_id == lab_id],
        evidence=[e for e in report.evidence if e.lab_id in (lab_id, None)],
        matches={pid: level for pid, level in report.matches.items() if pid in mine})


def stored_report(breach: Breach) -> ScanReport:
    return ScanReport.from_dict(breach.report)


def default_texts(lab: Lab, report: ScanReport) -> dict[str, str]:
    """First drafts of the free text, from the report alone (the DPO rewrites them)."""
    names = ", ".join(f["name"] for f in report.files) or "fichier non nommé"
    categories = ", ".join(CATEGORY_LABELS.get(c, c) for c in report.categories)
    consequences = ["Tentatives d'hameçonnage (courriels, SMS, appels) s'appuyant sur les "
                    "données du laboratoire pour paraître crédibles."]
    if {"nir", "identity", "birth_date"} & set(report.categories):
        consequences.append("Usurpation d'identité.")
    if "health" in report.categories:
        consequences.append("Atteinte à la vie privée : divulgation d'informations de santé "
                            "pouvant entraîner discrimination ou préjudice moral.")
    if "credentials" in report.categories:
        consequences.append("Accès frauduleux aux comptes dont les identifiants figurent "
                            "dans le fichier.")
    return {
        "nature": f"Violation de confidentialité : un ou plusieurs fichiers ({names}) "
                  f"contenant des données de patients du laboratoire {lab.name} ont été "
                  f"trouvés hors du laboratoire. Données présentes : {categories or '—'}.",
        "consequences": "\n".join(consequences),
        "measures_taken": "Analyse du fichier par Coffre (correspondance par index aveugles, "
                          "sans déchiffrement de la base) ; recherche de la source "
                          "(patients sentinelles, filigranes d'export).",
        "measures_proposed": "",
        "dpo_contact": "",
        "delay_reasons": "",
    }


def record_breach(actor: Actor, lab: Lab, report: ScanReport, *,
                  aware_at: dt.datetime | None = None,
                  values: dict[str, str] | None = None) -> Breach:
    """The breach record of ``lab`` from a scan, with its drafts: one for the CNIL, one
    per matched patient of the lab (canaries excepted: they are synthetic). All or
    nothing: any failure leaves no record."""
    require(actor, "breach.record")
    if actor.lab_id != lab.id:
        raise BreachError("the acting person does not act for this laboratory")
    aware_at = aware_at or timezone.now()
    if aware_at > timezone.now() + dt.timedelta(minutes=5):
        raise BreachError("the time the lab became aware cannot be in the future")
    part = lab_part(report, lab.id)
    patients = sorted(set(part.matches) - canaries.canary_ids(), key=str)
    with transaction.atomic():
        breach = Breach.objects.create(lab=lab, created_by=actor.person, aware_at=aware_at,
                                       report=part.to_dict(), data_key=b"")
        key, breach.data_key = keyring.new_row_key(lab.id, TABLE, breach.pk)
        _set_texts(breach, key, {**default_texts(lab, part), **(values or {})})
        breach.save()
        Notification.objects.create(breach=breach, lab_id=lab.id, kind=NotificationKind.CNIL,
                                    channel=Channel.ONLINE)
        Notification.objects.bulk_create(
            [Notification(breach=breach, lab_id=lab.id, kind=NotificationKind.PATIENT,
                          patient_id=pid, channel=Channel.LETTER) for pid in patients],
            batch_size=1000)
        log.record(actor, "create", [], kind="breach")
    return breach


def run_scan(actor: Actor, lab: Lab, paths: Sequence[Path]) -> ScanReport:
    """Scan the files with coffre.breach.scan, as ``actor`` and, where the scanner takes
    them, limited to ``lab`` (its reads are then logged under the actor's name). A file
    the scanner refuses raises its BreachScanError before anything is written."""
    import inspect

    from coffre.breach.scan import scan_files

    accepted = inspect.signature(scan_files).parameters
    options = {name: value for name, value in (("lab_id", lab.id), ("actor", actor))
               if name in accepted}
    return scan_files(list(paths), **options)


def scan_and_record(actor: Actor, lab: Lab, paths: Sequence[Path], *,
                    aware_at: dt.datetime | None = None,
                    values: dict[str, str] | None = None) -> Breach:
    """Scan, then record: a malformed file leaves no record."""
    return record_breach(actor, lab, run_scan(actor, lab, paths), aware_at=aware_at,
                         values=values)


# --- the deadline -----------------------------------------------------------------------

@dataclass(frozen=True)
class Deadline:
    due: dt.datetime
    remaining: dt.timedelta  # negative once overdue
    notified_at: dt.datetime | None  # when the CNIL notification was marked sent
    late: bool  # sent after the deadline, or not sent and past it

    @property
    def text(self) -> str:
        """"41 h 12 min restantes", "en retard de 3 h 05 min", "notifiée dans les délais"."""
        if self.notified_at is not None:
            if not self.late:
                return "notifiée dans les délais"
            return f"notifiée avec {_duration(self.notified_at - self.due)} de retard"
        if self.late:
            return f"en retard de {_duration(-self.remaining)}"
        return f"{_duration(self.remaining)} restantes"


def _duration(span: dt.timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(max(minutes, 0), 60)
    return f"{hours} h {minutes:02d} min"


def deadline(breach: Breach, now: dt.datetime | None = None) -> Deadline:
    now = now or timezone.now()
    cnil = breach.notifications.filter(kind=NotificationKind.CNIL).first()
    sent = cnil.sent_at if cnil else None
    due = breach.deadline
    late = (sent or now) > due
    return Deadline(due=due, remaining=due - now, notified_at=sent, late=late)


# --- the CNIL draft ---------------------------------------------------------------------

def _fr_datetime(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%d/%m/%Y à %H:%M")


def _people_lines(report: ScanReport, lab: Lab) -> list[str]:
    lines = [f"- Fichier(s) : {len(report.files)} ; lignes lues : {report.rows_read} ; "
             f"lignes rattachées à des patients : {report.rows_matched}."]
    for impact in report.labs or []:
        detail = ", ".join(f"{CONFIDENCE_LABELS[c]} : {impact.by_confidence.get(c, 0)}"
                           for c in CONFIDENCES)
        lines.append(f"- {impact.name} (FINESS {impact.finess}) : {impact.patients} "
                     f"patient(s) concerné(s) ({detail}).")
    if not report.labs:
        lines.append(f"- {lab.name} (FINESS {lab.finess}) : aucun patient du laboratoire "
                     "reconnu dans le fichier.")
    return lines


def cnil_text(breach: Breach, now: dt.datetime | None = None) -> str:
    """The text for the CNIL: as the DPO edited it (or as sent), else the draft."""
    note = breach.notifications.filter(kind=NotificationKind.CNIL).first()
    return (notification_body(note) if note else "") or cnil_draft(breach, now)


def cnil_draft(breach: Breach, now: dt.datetime | None = None) -> str:
    """The draft notification to the CNIL, in the order of its online form's sections.
    Counts and categories come from the stored report; free text from the DPO."""
    lab, report, text = breach.lab, stored_report(breach), texts(breach)
    due = deadline(breach, now)
    letters = breach.notifications.filter(kind=NotificationKind.PATIENT).count()
    categories = [f"- {CATEGORY_LABELS.get(c, c)}" for c in report.categories] or ["- —"]
    sections = [
        ("NOTIFICATION D'UNE VIOLATION DE DONNÉES PERSONNELLES (RGPD, article 33)", [
            f"Projet établi le {_fr_datetime(now or timezone.now())} — "
            f"violation n° {breach.pk}."]),
        ("1. Responsable du traitement", [f"{lab.name} — FINESS {lab.finess}",
                                          lab.address or ""]),
        ("2. Délégué à la protection des données (point de contact)",
         [text["dpo_contact"] or "[à compléter : nom, adresse électronique, téléphone]"]),
        ("3. Chronologie", [
            f"Prise de connaissance de la violation : {_fr_datetime(breach.aware_at)}.",
            f"Échéance de notification (72 heures) : {_fr_datetime(due.due)} — {due.text}."]),
        ("4. Nature de la violation", [
            "Type : perte de confidentialité.", text["nature"] or "[à compléter]"]),
        ("5. Catégories de données concernées", categories),
        ("6. Personnes et enregistrements concernés (nombres approximatifs)", [
            "Catégorie de personnes : patients du laboratoire.", *_people_lines(report, lab)]),
        ("7. Origine du fichier (éléments d'attribution)",
         [f"- [{STRENGTH_LABELS.get(e.strength, e.strength)}] {evidence_text(e)}"
          for e in report.evidence]
         or ["Aucun patient sentinelle ni filigrane d'export trouvé dans le fichier : "
             "l'origine n'est pas établie par ces moyens."]),
        ("8. Conséquences probables", [text["consequences"] or "[à compléter]"]),
        ("9. Mesures prises", [text["measures_taken"] or "[à compléter]"]),
        ("10. Mesures proposées pour remédier à la violation et en atténuer les effets",
         [text["measures_proposed"] or "[à compléter]"]),
        ("11. Information des personnes concernées (article 34)", [
            f"{letters} patient(s) identifié(s) dans le fichier recevront une "
            "communication (courrier postal, et courriel lorsqu'une adresse est connue)."]),
    ]
    if due.late:
        sections.append(("12. Motifs du retard (article 33, paragraphe 1)", [
            text["delay_reasons"] or "[à compléter : la notification intervient après le "
                                     "délai de 72 heures ; en indiquer les motifs]"]))
    return "\n\n".join("\n".join([title, *[line for line in body if line]])
                       for title, body in sections) + "\n"


# --- review and sending -----------------------------------------------------------------

def edit_cnil_text(actor: Actor, breach: Breach, body: str) -> Notification:
    """Keep the DPO's edited CNIL text (sealed); an empty text returns to the draft."""
    require(actor, "breach.manage")
    note = breach.notifications.get(kind=NotificationKind.CNIL)
    body = body.replace("\r\n", "\n").strip()
    if body == cnil_draft(breach).strip():
        body = ""  # saved unchanged: keep following the record (counts, deadline)
    with transaction.atomic():
        note.body = _seal(_key(breach), NOTE_TABLE, "body", note.pk, body, 1024) if body else b""
        note.save(update_fields=["body"])
        log.record(actor, "update", [], kind="breach_notification")
    return note


def mark_reviewed(actor: Actor, notes: Sequence[Notification]) -> int:
    """Record who read the drafts, and when; returns how many."""
    require(actor, "breach.manage")
    now = timezone.now()
    with transaction.atomic():
        for note in notes:
            note.reviewed_by, note.reviewed_at = actor.person, now
        Notification.objects.bulk_update(notes, ["reviewed_by", "reviewed_at"])
        log.record(actor, "review", [], kind="breach")
    return len(notes)


def mark_sent(actor: Actor, notes: Sequence[Notification], channel: str) -> int:
    """Mark drafts sent (by whom, when, how). Sending the CNIL's marks the breach
    notified. Returns how many were marked; already sent ones are left as they were."""
    require(actor, "breach.manage")
    if channel not in Channel.values:
        raise BreachError(f"unknown channel: {channel}")
    pending = [n for n in notes if n.sent_at is None]
    now = timezone.now()
    with transaction.atomic():
        for note in pending:
            if note.kind == NotificationKind.CNIL and not bytes(note.body):
                # Keep the text as sent: the draft would change with the deadline.
                note.body = _seal(_key(note.breach), NOTE_TABLE, "body", note.pk,
                                  cnil_draft(note.breach, now), 1024)
            note.sent_by, note.sent_at, note.channel = actor.person, now, channel
            if not note.reviewed_by:
                note.reviewed_by, note.reviewed_at = actor.person, now
        Notification.objects.bulk_update(
            pending, ["sent_by", "sent_at", "channel", "reviewed_by", "reviewed_at", "body"])
        breaches = {n.breach_id for n in pending if n.kind == NotificationKind.CNIL}
        Breach.objects.filter(pk__in=breaches, status=BreachStatus.DRAFT).update(
            status=BreachStatus.NOTIFIED)
        ids = [n.patient_id for n in pending if n.patient_id]
        for start in range(0, len(ids), CHUNK):
            log.record(actor, "notified", ids[start:start + CHUNK], kind="breach")
        if len(ids) < len(pending):  # the CNIL's
            log.record(actor, "notified", [], kind="breach")
    return len(pending)


def breaches_of(lab_id: int):
    return Breach.objects.filter(lab_id=lab_id).select_related("lab")


def access_breach(actor: LabActor, breach_id: int | str) -> Breach:
    """The actor's lab's breach; another lab's or a missing one raises the same
    BreachNotFound."""
    try:
        return one_row(breaches_of(actor.lab_id), int(breach_id), "breach", BreachNotFound)
    except ValueError:
        raise BreachNotFound("no such breach") from None
