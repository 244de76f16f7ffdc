"""The workflow of specimens and results, one guarded function per transition.

    result:   registered -> collected -> received -> in_analysis -> tech_validated
              -> bio_validated -> published;  rejected (specimen refused),
              cancelled, invalidated (a published result corrected by a new version)
    specimen: registered -> collected -> received;  rejected

``TRANSITIONS`` is the table of steps: the capability each needs
(coffre.tenancy.capabilities), the states a row may be in, whether a reason is asked.
``allowed`` answers from it whether a person may take a step on a row now: the pages
offer a button only where it says yes, and docs/lab-workflow.md shows the same table
(tests/test_workflow_table.py keeps the three equal). Each step checks the capability,
the states of every row first and then writes them all in one transaction: a refused
batch changes nothing. Errors name the result or specimen and the rule, never a value.
Writes are recorded in the access log with the patient's id, inside their transaction:
a crash cannot keep a change without its entry (tests/test_faults.py kills the server mid-write).

Every result a step touches is checked against its tag first (coffre.labwork.sealing:
a state or stamp changed in the database raises TamperedRow instead of being validated
further), and tagged again with what the step wrote (``_store``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from coffre.audit import log
from coffre.bulk import update_rows
from coffre.identity.models import Patient
from coffre.identity.registry import PatientRecord, open_patient
from coffre.labwork import catalogue
from coffre.labwork.models import (
    CriticalValue,
    LabWorkflowSettings,
    Order,
    Result,
    ResultState,
    Specimen,
    SpecimenState,
)
from coffre.labwork.orders import user_id
from coffre.labwork.scope import results_for, specimens_for
from coffre.labwork.sealing import (
    PatientKeys,
    bind_result,
    check_result,
    check_results,
    seal,
    unseal,
)
from coffre.refusals import Reason, Refusal, reason
from coffre.tenancy.access import RowNotFound
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import HasRole, may, require
from coffre.vault import Key

S = ResultState
# Progress order, for calculated results that follow their inputs.
PROGRESS = (S.REGISTERED, S.COLLECTED, S.RECEIVED, S.IN_ANALYSIS, S.TECH_VALIDATED,
            S.BIO_VALIDATED, S.PUBLISHED)
FINAL = frozenset({S.PUBLISHED, S.REJECTED, S.CANCELLED, S.INVALIDATED})
OPEN = frozenset(set(S) - FINAL)
ENTERABLE = frozenset({S.RECEIVED, S.IN_ANALYSIS})
# Not biologically validated yet: a test may still be withdrawn, a specimen refused.
BEFORE_VALIDATION = frozenset({S.REGISTERED, S.COLLECTED, S.RECEIVED, S.IN_ANALYSIS,
                               S.TECH_VALIDATED})
REJECTION_REASONS = ("hémolysé", "coagulé", "quantité insuffisante", "tube inadapté",
                     "identification non conforme", "délai d'acheminement dépassé")


@dataclass(frozen=True)
class Transition:
    """One step: who (a capability), on what (a specimen or a result) in which states,
    to which state; ``reason``: the shortest reason or note accepted (0: none asked);
    ``typed_only``: calculated results are refused (they follow their inputs)."""

    step: str  # the name the order page posts
    function: str  # in this module
    subject: str  # "specimen" or "result"
    capability: str
    sources: frozenset[str]
    target: str  # "" when the row keeps its state
    reason: int = 0
    typed_only: bool = False


SP = SpecimenState
TRANSITIONS: dict[str, Transition] = {t.step: t for t in (
    Transition("collect", "collect", "specimen", "specimen.receive",
               frozenset({SP.REGISTERED}), SP.COLLECTED),
    Transition("receive", "receive", "specimen", "specimen.receive",
               frozenset({SP.REGISTERED, SP.COLLECTED}), SP.RECEIVED),
    Transition("reject", "reject", "specimen", "specimen.receive",
               frozenset(set(SP) - {SP.REJECTED}), SP.REJECTED, reason=3),
    Transition("enter", "enter_results", "result", "result.enter", ENTERABLE,
               S.IN_ANALYSIS, typed_only=True),
    Transition("validate_technically", "validate_technically", "result",
               "result.validate_technically", frozenset({S.IN_ANALYSIS}), S.TECH_VALIDATED,
               typed_only=True),
    Transition("validate_biologically", "validate_biologically", "result",
               "result.validate_biologically", frozenset({S.TECH_VALIDATED}),
               S.BIO_VALIDATED, typed_only=True),
    Transition("publish", "publish", "result", "result.publish",
               frozenset({S.BIO_VALIDATED}), S.PUBLISHED),
    Transition("correct", "invalidate", "result", "result.correct",
               frozenset({S.PUBLISHED}), S.INVALIDATED, reason=5, typed_only=True),
    Transition("cancel", "cancel", "result", "result.cancel", BEFORE_VALIDATION,
               S.CANCELLED, reason=3),
    # Any state: the result keeps it; refused without an unacknowledged critical value.
    Transition("acknowledge", "acknowledge_critical", "result", "critical.acknowledge",
               frozenset(S), "", reason=5),
)}
# The buttons of the order page, per row.
SPECIMEN_STEPS = tuple(t.step for t in TRANSITIONS.values() if t.subject == "specimen")
RESULT_STEPS = ("acknowledge", "correct", "cancel")


def _calculated(row) -> bool:
    return getattr(row, "result", row).source == "calculated"


def _open_critical(row) -> bool:
    try:
        critical = row.critical
    except ObjectDoesNotExist:
        return False
    return critical is not None and critical.acknowledged_at is None


def allowed(actor: HasRole | None, row, step: str) -> bool:
    """Whether ``actor`` may take ``step`` on ``row`` (a Specimen, a Result or an
    access.ResultView) as it is now: the capability, the row's state, no calculated
    result for a typed step, an open critical value to acknowledge. The step may still
    refuse for what a row alone does not say (self-validation, an unacknowledged
    critical value at biological validation, a bad value or reason)."""
    transition = TRANSITIONS[step]
    if not may(actor, transition.capability) or row.state not in transition.sources:
        return False
    if transition.typed_only and _calculated(row):
        return False
    return step != "acknowledge" or _open_critical(row)


def _require(actor: LabActor, step: str) -> Transition:
    transition = TRANSITIONS[step]
    require(actor, transition.capability)
    return transition


class WorkflowError(Refusal, ValueError):
    """A step refused; ``problems`` lists (row label, refusal) for a batch."""

    def __init__(self, why: Reason, problems: Sequence[tuple[str, Refusal]] = (), /,
                 **params: object) -> None:
        super().__init__(why, **params)
        self.problems = list(problems)


def _why(code: str, message: Promise) -> Reason:
    return reason(f"workflow.{code}", message)


ENTRY_REFUSED = _why("entry_refused", _(
    "Saisie des résultats refusée, rien n'a été modifié : %(detail)s"))
TECHNICAL_REFUSED = _why("technical_validation_refused", _(
    "Validation technique refusée, rien n'a été modifié : %(detail)s"))
BIOLOGICAL_REFUSED = _why("biological_validation_refused", _(
    "Validation biologique refusée, rien n'a été modifié : %(detail)s"))
UNKNOWN_RESULTS = _why("unknown_results", _("Résultat(s) inconnu(s), rien n'a été modifié."))
NO_SUCH_RESULT = _why("no_such_result", _("résultat inconnu dans ce laboratoire"))
CALCULATED = _why("calculated", _("calculé automatiquement, il ne se saisit pas"))
NOT_OPEN_FOR_ENTRY = _why("not_open_for_entry", _("pas ouvert à la saisie (%(state)s)"))
NOT_IN_ANALYSIS = _why("not_in_analysis", _("pas en analyse (%(state)s)"))
NOT_TECHNICALLY_VALIDATED = _why("not_technically_validated", _(
    "pas encore validé techniquement"))
SELF_VALIDATION = _why("self_validation", _(
    "saisi par vous-même : l'auto-validation n'est pas autorisée dans ce laboratoire"))
CRITICAL_NOT_ACKNOWLEDGED = _why("critical_not_acknowledged", _(
    "valeur critique non acquittée"))
NOT_A_NUMBER = _why("not_a_number", _("la valeur saisie n'est pas un nombre"))
NOT_A_CHOICE = _why("not_a_choice", _("valeurs possibles : %(choices)s"))
EMPTY_RESULT = _why("empty_result", _("résultat vide"))
OUT_OF_RANGE = _why("out_of_range", _("valeur hors des limites possibles"))
TEXT_TOO_LONG = _why("text_too_long", _("texte de plus de %(max)s caractères"))
REASON_REQUIRED = _why("reason_required", _("un motif est obligatoire"))
NOTE_REQUIRED = _why("note_required", _(
    "indiquez ce qui a été fait (qui a été appelé, quand)"))
NOTHING_TO_PUBLISH = _why("nothing_to_publish", _("aucun résultat validé à diffuser"))
NOT_WAITING_FOR_COLLECTION = _why("not_waiting_for_collection", _(
    "l'échantillon n'est plus à prélever"))
CANNOT_BE_RECEIVED = _why("cannot_be_received", _(
    "l'échantillon ne peut plus être réceptionné"))
ALREADY_REJECTED = _why("already_rejected", _("l'échantillon est déjà refusé"))
ALREADY_ACKNOWLEDGED = _why("already_acknowledged", _("valeur critique déjà acquittée"))
CANNOT_BE_CANCELLED = _why("cannot_be_cancelled", _("l'analyse ne peut plus être annulée"))
NOT_PUBLISHED = _why("not_published", _("seul un résultat diffusé se corrige ainsi"))
NO_CRITICAL_VALUE = _why("no_critical_value", _("pas de valeur critique"))
_VALUE_RULES = {"not_a_number": NOT_A_NUMBER, "out_of_range": OUT_OF_RANGE,
                "not_a_choice": NOT_A_CHOICE, "empty": EMPTY_RESULT,
                "too_long": TEXT_TOO_LONG}


def value_refusal(error: catalogue.InvalidResult) -> Refusal:
    """A value the catalogue refused, as a refusal of the workflow."""
    return Refusal(_VALUE_RULES[error.rule], **error.params)


def _state(code: str) -> object:
    """A result's state as a refusal parameter: its label, in the reader's language."""
    try:
        return S(code).label
    except ValueError:
        return code


class _Rows:
    """The refused rows of a batch, said in the language active when rendered."""

    def __init__(self, problems: Sequence[tuple[str, Refusal]]) -> None:
        self.problems = problems

    def __str__(self) -> str:
        shown = "; ".join(f"{row}: {why}" for row, why in self.problems[:5])
        more = len(self.problems) - 5
        return shown + (f" (+{more})" if more > 0 else "")


class SpecimenNotFound(RowNotFound):
    pass


@dataclass(frozen=True)
class Entry:
    result_id: uuid.UUID
    value: str
    comment: str = ""


def _refuse_if(problems: list[tuple[str, Refusal]], why: Reason) -> None:
    if problems:
        raise WorkflowError(why, problems, detail=_Rows(problems))


# -- specimens ---------------------------------------------------------------------

def _specimen(actor: LabActor, *, specimen_id: uuid.UUID | None = None,
              barcode: str | None = None) -> Specimen:
    rows = specimens_for(actor).select_for_update()
    found = (rows.filter(id=specimen_id) if specimen_id else
             rows.filter(barcode=(barcode or "").strip())).first()
    if found is None:
        raise SpecimenNotFound("no such specimen in this lab")
    return found


def _store(keys: PatientKeys, results: Sequence[Result], fields: Sequence[str]) -> None:
    """Write ``fields`` (attnames) of results already checked and changed in memory,
    with their new tags, in one prepared statement."""
    for result in results:
        bind_result(keys[result.patient_id], result)
    columns = [*fields, "mac"]
    update_rows(Result, columns, [(r.pk, [getattr(r, c) for c in columns]) for r in results])


def _move_results(specimen: Specimen, from_states: Iterable[str], to: str) -> None:
    keys = PatientKeys(specimen.lab_id)
    rows = list(Result.unscoped.select_for_update()
                .filter(specimen=specimen, state__in=list(from_states)))
    check_results(keys, rows)
    for row in rows:
        row.state = to
    _store(keys, rows, ["state"])


def collect(actor: LabActor, specimen_id: uuid.UUID, *, at: dt.datetime | None = None
            ) -> Specimen:
    step = _require(actor, "collect")
    with transaction.atomic():
        specimen = _specimen(actor, specimen_id=specimen_id)
        if specimen.state not in step.sources:
            raise WorkflowError(NOT_WAITING_FOR_COLLECTION)
        specimen.state = step.target
        specimen.collected_at = at or timezone.now()
        specimen.collected_by_id = user_id(actor)
        specimen.save(update_fields=["state", "collected_at", "collected_by"])
        _move_results(specimen, [S.REGISTERED], S.COLLECTED)
        log.record(actor, "update", [specimen.order.patient_id], kind="specimen")
    return specimen


def receive(actor: LabActor, barcode: str, *, at: dt.datetime | None = None) -> Specimen:
    """Receipt at the lab, by barcode. A specimen collected elsewhere (a nurse at home)
    arrives registered: its collection time is then the receipt time unless given."""
    step = _require(actor, "receive")
    now = at or timezone.now()
    with transaction.atomic():
        specimen = _specimen(actor, barcode=barcode)
        if specimen.state not in step.sources:
            raise WorkflowError(CANNOT_BE_RECEIVED)
        if specimen.collected_at is None:
            specimen.collected_at = now
        specimen.state = step.target
        specimen.received_at = now
        specimen.received_by_id = user_id(actor)
        specimen.save(update_fields=["state", "collected_at", "received_at", "received_by"])
        _move_results(specimen, [S.REGISTERED, S.COLLECTED], S.RECEIVED)
        log.record(actor, "update", [specimen.order.patient_id], kind="specimen")
    return specimen


def reject(actor: LabActor, specimen_id: uuid.UUID, reason: str) -> Specimen:
    """Refuse a specimen (haemolysed, clotted...): its tests that are not validated yet
    are not done. The reason is sealed with the patient's data."""
    step = _require(actor, "reject")
    reason = " ".join(reason.split())
    if len(reason) < step.reason:
        raise WorkflowError(REASON_REQUIRED)
    with transaction.atomic():
        specimen = _specimen(actor, specimen_id=specimen_id)
        if specimen.state not in step.sources:
            raise WorkflowError(ALREADY_REJECTED)
        key = PatientKeys(actor.lab_id)[specimen.order.patient_id]
        specimen.state = step.target
        specimen.rejection_reason = seal(key, "specimen", "rejection_reason", specimen.id,
                                         reason[:200])
        specimen.save(update_fields=["state", "rejection_reason"])
        _move_results(specimen, BEFORE_VALIDATION, S.REJECTED)
        log.record(actor, "update", [specimen.order.patient_id], kind="specimen")
    return specimen


# -- results -----------------------------------------------------------------------

def _locked_results(actor: LabActor, result_ids: Iterable[uuid.UUID]
                    ) -> tuple[list[Result], PatientKeys]:
    """The results, locked and checked against their tags, and their patients' keys."""
    ids = list(dict.fromkeys(result_ids))
    rows = {r.id: r for r in results_for(actor).select_for_update()
            .select_related("specimen").filter(id__in=ids)}
    missing = [str(rid) for rid in ids if rid not in rows]
    if missing:
        raise WorkflowError(UNKNOWN_RESULTS,
                            [(rid, Refusal(NO_SUCH_RESULT)) for rid in missing])
    keys = PatientKeys(actor.lab_id)
    check_results(keys, rows.values())
    return [rows[rid] for rid in ids], keys


def _label(result: Result) -> str:
    found = catalogue.find(result.loinc)
    return f"{found.label if found else result.loinc} ({result.specimen.barcode})"


@dataclass(frozen=True)
class Demographics:
    sex: str
    birth_date: dt.date | None

    def age_days(self, on: dt.datetime) -> int:
        return catalogue.age_in_days(self.birth_date, timezone.localdate(on))

    @classmethod
    def of(cls, patient: PatientRecord) -> Demographics:
        born = dt.date.fromisoformat(patient.birth_date) if patient.birth_date else None
        return cls(patient.sex or "", born)


def demographics(patient_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Demographics]:
    """Sex and birth date, opened for range and flag rules only (never shown here)."""
    found = {}
    for patient in Patient.unscoped.filter(id__in=set(patient_ids), data_key__isnull=False):
        found[patient.id] = Demographics.of(open_patient(patient, ["sex", "birth_date"]))
    return found


def enter_results(actor: LabActor, entries: Sequence[Entry], *, source: str = "manual",
                  at: dt.datetime | None = None) -> list[Result]:
    """Type (or receive from an analyser) values; results move to in_analysis with their
    flag. Re-entering before technical validation replaces the value. Critical values
    raise an alert a person must acknowledge; calculated tests follow."""
    _require(actor, "enter")
    now = at or timezone.now()
    by = user_id(actor)
    with transaction.atomic():
        results, keys = _locked_results(actor, [e.result_id for e in entries])
        problems, parsed = _parse_entries(results, entries)
        _refuse_if(problems, ENTRY_REFUSED)
        people = demographics(r.patient_id for r in results)
        for result, (value, comment) in zip(results, parsed, strict=True):
            _write_value(result, keys[result.patient_id], people[result.patient_id],
                         value, comment, now, by, source)
        sync_calculated(actor.lab_id, {r.order_id for r in results}, now)
        log.record(actor, "update", {r.patient_id for r in results}, kind="results")
    return results


def _parse_entries(results: list[Result], entries: Sequence[Entry]
                   ) -> tuple[list[tuple[str, Refusal]], list[tuple[str, str]]]:
    problems, parsed = [], []
    for result, entry in zip(results, entries, strict=True):
        test = catalogue.find(result.loinc)
        if test is None or test.calculated:
            problems.append((_label(result), Refusal(CALCULATED)))
        elif result.state not in TRANSITIONS["enter"].sources:
            problems.append((_label(result), Refusal(NOT_OPEN_FOR_ENTRY,
                                                     state=_state(result.state))))
        else:
            try:
                parsed.append((catalogue.parse_value(test, entry.value),
                               entry.comment.strip()[:1000]))
                continue
            except catalogue.InvalidResult as exc:
                problems.append((_label(result), value_refusal(exc)))
        parsed.append(("", ""))
    return problems, parsed


def _write_value(result: Result, key: Key, person: Demographics, value: str, comment: str,
                 now: dt.datetime, by: int | None, source: str) -> None:
    test = catalogue.test(result.loinc)
    taken = result.specimen.collected_at or now
    flag = catalogue.flag(test, value, person.sex, person.age_days(taken))
    result.value = seal(key, "result", "value", result.id, value)
    result.flag = seal(key, "result", "flag", result.id, flag)
    result.comment = seal(key, "result", "comment", result.id, comment)
    result.state = S.IN_ANALYSIS
    result.entered_at, result.entered_by_id, result.source = now, by, source
    bind_result(key, result)
    result.save(update_fields=["value", "flag", "comment", "state", "entered_at",
                               "entered_by", "source", "mac"])
    if flag in ("LL", "HH"):
        CriticalValue.objects.get_or_create(
            result=result, defaults={"lab_id": result.lab_id, "raised_at": now,
                                     "note": seal(key, "critical", "note", result.id, "")})


def sync_calculated(lab_id: int, order_ids: Iterable[uuid.UUID], now: dt.datetime) -> None:
    """Calculated tests (eGFR, LDL) are computed from the order's results and follow
    their inputs' state: never typed, never ahead of what they are made of."""
    calculated = list(Result.unscoped.filter(order_id__in=set(order_ids), source="calculated",
                                             state__in=list(OPEN)).select_related("specimen"))
    if not calculated:
        return
    keys = PatientKeys(lab_id)
    check_results(keys, calculated)
    people = demographics(r.patient_id for r in calculated)
    for result in calculated:
        test = catalogue.test(result.loinc)
        inputs = list(Result.unscoped.filter(order_id=result.order_id, loinc__in=test.inputs)
                      .exclude(state__in=[S.INVALIDATED, S.CANCELLED, S.REJECTED]))
        entered = [r for r in inputs if r.entered_at is not None]
        if len(entered) < len(test.inputs):
            continue
        check_results(keys, entered)
        key = keys[result.patient_id]
        values = {r.loinc: unseal(key, "result", "value", r.id, r.value) for r in entered}
        person = people[result.patient_id]
        age = person.age_days(result.specimen.collected_at or now) // 365
        value = catalogue.calculate(test, values, person.sex, age)
        if value is None:
            continue
        _write_value(result, key, person, value, "", now, None, "calculated")
        _follow(result, entered, key)


def _follow(result: Result, inputs: list[Result], key: Key) -> None:
    state = min((r.state for r in inputs), key=PROGRESS.index)
    if state in (S.TECH_VALIDATED, S.BIO_VALIDATED):
        first = min(inputs, key=lambda r: PROGRESS.index(r.state))
        result.state = state
        result.tech_validated_at = first.tech_validated_at
        result.tech_validated_by_id = first.tech_validated_by_id
        result.bio_validated_at = first.bio_validated_at
        result.bio_validated_by_id = first.bio_validated_by_id
        bind_result(key, result)
        result.save(update_fields=["state", "tech_validated_at", "tech_validated_by",
                                   "bio_validated_at", "bio_validated_by", "mac"])


def validate_technically(actor: LabActor, result_ids: Iterable[uuid.UUID], *,
                         at: dt.datetime | None = None) -> int:
    """The bench's check: the analyser ran correctly, the value is plausible."""
    step = _require(actor, "validate_technically")
    now = at or timezone.now()
    with transaction.atomic():
        results, keys = _locked_results(actor, result_ids)
        _refuse_if([(_label(r), Refusal(NOT_IN_ANALYSIS, state=_state(r.state)))
                    for r in results if r.state not in step.sources or _calculated(r)],
                   TECHNICAL_REFUSED)
        by = user_id(actor)
        for result in results:
            result.state = step.target
            result.tech_validated_at, result.tech_validated_by_id = now, by
        _store(keys, results, ["state", "tech_validated_at", "tech_validated_by_id"])
        sync_calculated(actor.lab_id, {r.order_id for r in results}, now)
        log.record(actor, "validate", {r.patient_id for r in results}, kind="results")
    return len(results)


def self_validation_allowed(lab_id: int) -> bool:
    return LabWorkflowSettings.objects.filter(lab_id=lab_id, allow_self_validation=True
                                              ).exists()


def set_self_validation(actor: LabActor, allow: bool) -> None:
    """The lab manager's switch letting a biologist validate what they entered. A change
    is recorded in the access log (kind ``lab_settings``) in the same transaction."""
    require(actor, "lab.settings")
    with transaction.atomic():
        current, _created = (LabWorkflowSettings.objects.select_for_update()
                             .get_or_create(lab_id=actor.lab_id))
        if current.allow_self_validation == allow:
            return
        current.allow_self_validation = allow
        current.save(update_fields=["allow_self_validation"])
        log.record(actor, "update", [], kind="lab_settings",
                   purpose=f"allow_self_validation={'on' if allow else 'off'}")


def validate_biologically(actor: LabActor, result_ids: Iterable[uuid.UUID], *,
                          at: dt.datetime | None = None) -> int:
    """The biologist's validation: technically validated results only, never one the
    same person entered (unless the lab allows it), never an unacknowledged critical."""
    step = _require(actor, "validate_biologically")
    now = at or timezone.now()
    by = user_id(actor)
    with transaction.atomic():
        results, keys = _locked_results(actor, result_ids)
        own_allowed = self_validation_allowed(actor.lab_id)
        critical = set(CriticalValue.objects.filter(
            result_id__in=[r.id for r in results], acknowledged_at__isnull=True)
            .values_list("result_id", flat=True))
        problems = []
        for result in results:
            if result.state not in step.sources or _calculated(result):
                problems.append((_label(result), Refusal(NOT_TECHNICALLY_VALIDATED)))
            elif by is not None and result.entered_by_id == by and not own_allowed:
                problems.append((_label(result), Refusal(SELF_VALIDATION)))
            elif result.id in critical:
                problems.append((_label(result), Refusal(CRITICAL_NOT_ACKNOWLEDGED)))
        _refuse_if(problems, BIOLOGICAL_REFUSED)
        for result in results:
            result.state = step.target
            result.bio_validated_at, result.bio_validated_by_id = now, by
        _store(keys, results, ["state", "bio_validated_at", "bio_validated_by_id"])
        sync_calculated(actor.lab_id, {r.order_id for r in results}, now)
        log.record(actor, "validate", {r.patient_id for r in results}, kind="results")
    return len(results)


def publish(actor: LabActor, order: Order, *, at: dt.datetime | None = None) -> int:
    """Release the order's biologically validated results (the report). A release after
    the first makes the next report a "compte rendu rectificatif" if it corrects one."""
    step = _require(actor, "publish")
    now = at or timezone.now()
    with transaction.atomic():
        ready = list(results_for(actor).select_for_update()
                     .filter(order_id=order.id, state__in=list(step.sources)))
        if not ready:
            raise WorkflowError(NOTHING_TO_PUBLISH)
        keys = PatientKeys(actor.lab_id)
        check_results(keys, ready)
        for result in ready:
            result.state, result.published_at = step.target, now
        _store(keys, ready, ["state", "published_at"])
        Order.unscoped.filter(pk=order.pk).update(report_count=F("report_count") + 1)
        log.record(actor, "publish", [order.patient_id], kind="results")
    return len(ready)


def invalidate(actor: LabActor, result_id: uuid.UUID, value: str, reason: str, *,
               at: dt.datetime | None = None) -> Result:
    """Correct a published result: the old row is kept (invalidated) and a new version
    replaces it, to be validated again; the next report is a "rectificatif"."""
    step = _require(actor, "correct")
    reason = " ".join(reason.split())
    if len(reason) < step.reason:
        raise WorkflowError(REASON_REQUIRED)
    now = at or timezone.now()
    with transaction.atomic():
        (old,), keys = _locked_results(actor, [result_id])
        if old.state not in step.sources:
            raise WorkflowError(NOT_PUBLISHED)
        test = catalogue.test(old.loinc)
        if test.calculated:
            raise WorkflowError(CALCULATED)
        try:
            value = catalogue.parse_value(test, value)
        except catalogue.InvalidResult as exc:
            refused = value_refusal(exc)
            raise WorkflowError(refused.reason, **refused.params) from None
        key = keys[old.patient_id]
        old.state = step.target
        bind_result(key, old)
        old.save(update_fields=["state", "mac"])
        new = _new_version(key, old, S.IN_ANALYSIS, source=old.source)
        person = demographics([old.patient_id])[old.patient_id]
        _write_value(new, key, person, value, reason, now, user_id(actor), "correction")
        new.state = S.TECH_VALIDATED
        new.tech_validated_at, new.tech_validated_by_id = now, user_id(actor)
        bind_result(key, new)
        new.save(update_fields=["state", "tech_validated_at", "tech_validated_by", "mac"])
        _reopen_calculated(key, old)
        sync_calculated(actor.lab_id, [old.order_id], now)
        log.record(actor, "update", [old.patient_id], kind="results")
    return new


def _new_version(key: Key, old: Result, state: str, *, source: str) -> Result:
    """A new version of a result (its values still to be written), tagged as created."""
    new = Result(lab_id=old.lab_id, patient_id=old.patient_id, order_id=old.order_id,
                 specimen=old.specimen, loinc=old.loinc, position=old.position, state=state,
                 version=old.version + 1, replaces=old, source=source, value=b"", flag=b"",
                 comment=b"")
    bind_result(key, new)
    new.save(force_insert=True)
    return new


def _reopen_calculated(key: Key, corrected: Result) -> None:
    """A published eGFR made from a corrected creatinine is corrected too."""
    calculated = list(Result.unscoped.select_for_update().filter(
        order_id=corrected.order_id, source="calculated", state=S.PUBLISHED))
    for result in calculated:
        if corrected.loinc in catalogue.test(result.loinc).inputs:
            check_result(key, result)
            result.state = S.INVALIDATED
            bind_result(key, result)
            result.save(update_fields=["state", "mac"])
            _new_version(key, result, S.RECEIVED, source="calculated")


def cancel(actor: LabActor, result_id: uuid.UUID, reason: str) -> Result:
    """Withdraw a test not yet validated by a biologist (asked by mistake...)."""
    step = _require(actor, "cancel")
    reason = " ".join(reason.split())
    if len(reason) < step.reason:
        raise WorkflowError(REASON_REQUIRED)
    with transaction.atomic():
        (result,), keys = _locked_results(actor, [result_id])
        if result.state not in step.sources:
            raise WorkflowError(CANNOT_BE_CANCELLED)
        key = keys[result.patient_id]
        result.comment = seal(key, "result", "comment", result.id, reason[:1000])
        result.state = step.target
        bind_result(key, result)
        result.save(update_fields=["comment", "state", "mac"])
        log.record(actor, "update", [result.patient_id], kind="results")
    return result


def acknowledge_critical(actor: LabActor, result_id: uuid.UUID, note: str) -> CriticalValue:
    """A person took charge of a critical value (the prescriber was called...)."""
    step = _require(actor, "acknowledge")
    note = " ".join(note.split())
    if len(note) < step.reason:
        raise WorkflowError(NOTE_REQUIRED)
    with transaction.atomic():
        (result,), keys = _locked_results(actor, [result_id])
        critical = CriticalValue.objects.select_for_update().filter(result=result).first()
        if critical is None:
            raise WorkflowError(NO_CRITICAL_VALUE)
        if critical.acknowledged_at is not None:
            raise WorkflowError(ALREADY_ACKNOWLEDGED)
        key = keys[result.patient_id]
        critical.note = seal(key, "critical", "note", result.id, note[:1000])
        critical.acknowledged_at = timezone.now()
        critical.acknowledged_by_id = user_id(actor)
        critical.save(update_fields=["note", "acknowledged_at", "acknowledged_by"])
        log.record(actor, "update", [result.patient_id], kind="results")
    return critical
