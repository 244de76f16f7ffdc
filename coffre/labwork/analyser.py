"""Analyser messages: HL7 v2.5 ORU^R01 results in, ORU^R01 out.

A message is matched to specimens by barcode only (never by the name or birth date in
PID: identity comes from the order) and to tests by LOINC or the analyser's local code.
Everything is checked before anything is written: a message with one unmatched
specimen or test is refused whole with an AE acknowledgement naming the OBR/OBX, and
changes nothing. Errors never carry a value from the message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from coffre.audit import log
from coffre.labwork import catalogue, hl7v2
from coffre.labwork.access import ResultView, access_order
from coffre.labwork.mllp import AllowList
from coffre.labwork.models import LabWorkflowSettings, ResultState
from coffre.labwork.scope import results_for, specimens_for
from coffre.labwork.sealing import TamperedRow, report_tampering
from coffre.labwork.workflow import ENTERABLE, Entry, WorkflowError, enter_results
from coffre.refusals import english, reason
from coffre.tenancy.actors import LabActor, os_user
from coffre.tenancy.capabilities import ANALYSER
from coffre.tenancy.models import Lab

# OBX-11 statuses that carry no result to record.
NO_RESULT = frozenset({"X", "D", "W", "N"})
# One refusal for every barcode that is not a specimen of this lab: unknown anywhere,
# another lab's, or an erased patient's (an analyser cannot probe what exists).
UNKNOWN_SPECIMEN = reason("analyser.unknown_specimen", gettext_lazy(
    "OBR %(index)s : code-barres d'échantillon %(barcode)s inconnu dans ce laboratoire"))
UNKNOWN_CODE = reason("analyser.unknown_code", gettext_lazy(
    "OBX %(set_id)s : le code d'analyse %(code)s n'est pas au catalogue"))
NOT_WAITING = reason("analyser.not_waiting", gettext_lazy(
    "OBX %(set_id)s : aucune analyse %(loinc)s de l'échantillon %(barcode)s n'attend de "
    "résultat"))
GIVEN_TWICE = reason("analyser.given_twice", gettext_lazy(
    "OBX %(set_id)s : l'analyse %(loinc)s est donnée deux fois"))
EMPTY_MESSAGE = reason("analyser.empty_message", gettext_lazy(
    "Le message ne contient aucun résultat à enregistrer."))
TAMPERED = ("not recorded: a result it names failed its integrity check; the lab was "
            "alerted")


def analyser_actor(lab_id: int, source: str, channel: str) -> LabActor:
    """The identity an analyser connection acts under: results it sends go through the
    same entry rules as typed ones, and a biologist validates them."""
    who = source or "unknown"
    if channel == "cli":
        who = f"{who} via {os_user()}"
    return LabActor(person=f"analyser:{who}"[:150], lab_id=lab_id, role=ANALYSER,
                    channel=channel)


def analyser_addresses(lab_id: int) -> AllowList:
    """The addresses the lab's MLLP listener reads (`coffre hl7 analysers`)."""
    text = (LabWorkflowSettings.objects.filter(lab_id=lab_id)
            .values_list("analyser_addresses", flat=True).first())
    return AllowList.parse(text or "")


def set_analyser_addresses(lab_id: int, text: str) -> AllowList:
    """Replace the lab's allow-list ("" empties it); ValueError names a bad entry."""
    allowed = AllowList.parse(text)
    stored = str(allowed)
    max_length = LabWorkflowSettings._meta.get_field("analyser_addresses").max_length
    if len(stored) > max_length:
        raise ValueError(f"the list is longer than {max_length} characters: use networks")
    LabWorkflowSettings.objects.update_or_create(lab_id=lab_id,
                                                 defaults={"analyser_addresses": stored})
    return allowed


@dataclass(frozen=True)
class Outcome:
    control_id: str
    code: str  # AA, AE, AR
    text: str
    ack: str
    recorded: int = 0


def _ack(message: hl7v2.OruMessage | None, control_id: str, code: str, text: str,
         recorded: int = 0) -> Outcome:
    ack = hl7v2.build_ack(
        control_id, code, text,
        sending_facility=message.receiving_facility if message else "",
        receiving_application=message.sending_application if message else "",
        receiving_facility=message.sending_facility if message else "")
    return Outcome(control_id, code, text, ack, recorded)


def _entries(message: hl7v2.OruMessage, actor: LabActor) -> list[Entry]:
    entries: list[Entry] = []
    for index, group in enumerate(message.groups, start=1):
        specimen = specimens_for(actor).filter(barcode=group.specimen_barcode.strip()).first()
        if specimen is None:
            raise WorkflowError(UNKNOWN_SPECIMEN, index=index,
                                barcode=repr(group.specimen_barcode))
        open_results = {r.loinc: r for r in results_for(actor).filter(
            specimen=specimen, state__in=list(ENTERABLE))}
        for obs in group.observations:
            if obs.status.upper() in NO_RESULT:
                continue
            test = catalogue.find(obs.code)
            if test is None:
                raise WorkflowError(UNKNOWN_CODE, set_id=obs.set_id, code=repr(obs.code))
            result = open_results.get(test.loinc)
            if result is None:
                raise WorkflowError(NOT_WAITING, set_id=obs.set_id, loinc=test.loinc,
                                    barcode=specimen.barcode)
            if any(e.result_id == result.id for e in entries):
                raise WorkflowError(GIVEN_TWICE, set_id=obs.set_id, loinc=test.loinc)
            entries.append(Entry(result.id, obs.value))
    return entries


def import_message(lab_id: int, text: str, *, channel: str = "hl7") -> Outcome:
    """Record one ORU^R01 for a lab; always answers with an ACK (AA, AE or AR)."""
    try:
        message = hl7v2.parse_oru(text)
    except hl7v2.Hl7Error as exc:
        return _ack(None, exc.control_id, exc.code, exc.message)
    actor = analyser_actor(lab_id, message.sending_application, channel)
    try:
        with transaction.atomic():
            entries = _entries(message, actor)
            if not entries:
                raise WorkflowError(EMPTY_MESSAGE)
            enter_results(actor, entries, source="analyser")
    except (WorkflowError, catalogue.InvalidResult) as exc:
        return _ack(message, message.control_id, "AE", english(exc))
    except TamperedRow as exc:  # rolled back: the alert is kept
        report_tampering(exc, actor.person)
        return _ack(message, message.control_id, "AE", TAMPERED)
    return _ack(message, message.control_id, "AA", f"{len(entries)} result(s) recorded",
                len(entries))


def import_stream(lab_id: int, data: str | bytes, *, channel: str = "hl7"
                  ) -> list[Outcome]:
    """Each message of a file or stream, in order, each accepted or refused on its own."""
    return [import_message(lab_id, message, channel=channel)
            for message in hl7v2.split_messages(data)]


def export_oru(actor: LabActor, order_id: uuid.UUID | str) -> str:
    """An order's validated results as ORU^R01 (for a prescriber's system or another
    lab). PID carries the internal patient id only; the export is logged."""
    view = access_order(actor, order_id)
    lab = Lab.objects.get(pk=view.order.lab_id)
    reported = [v for v in view.results
                if v.state in (ResultState.BIO_VALIDATED, ResultState.PUBLISHED)]
    groups = []
    for specimen in view.specimens:
        mine = [v for v in reported if v.result.specimen_id == specimen.id]
        if not mine:
            continue
        groups.append(hl7v2.ObservationGroup(
            specimen_barcode=specimen.barcode, placer_order=view.order.number,
            filler_order=specimen.barcode, universal_service=specimen.specimen_type,
            observations=[_observation(i, v) for i, v in enumerate(mine, start=1)]))
    log.record(actor, "export", [view.order.patient_id], kind="results")
    return hl7v2.build_oru(control_id=uuid.uuid4().hex[:20], sending_facility=lab.finess,
                           receiving_facility="", groups=groups,
                           patient_id=str(view.order.patient_id), now=timezone.now())


def _observation(set_id: int, view: ResultView) -> hl7v2.Observation:
    test = view.test
    return hl7v2.Observation(
        set_id=str(set_id), code=test.loinc, coding_system="LN", text=test.label,
        value_type="NM" if catalogue.numeric(view.value) is not None else "ST",
        value=view.value, unit=test.unit,
        reference_range=view.reference.replace(",", "."),
        abnormal_flags=view.flag, status="C" if view.corrected else "F",
        observed_at=view.result.specimen.collected_at)

