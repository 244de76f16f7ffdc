"""The compte rendu and the specimen labels, built on demand from sealed data.

Only biologically validated (or published) results appear; a report with tests still
pending says "résultat(s) partiel(s)", one that follows a correction says "compte
rendu rectificatif". The PDF exists only in memory and in the answer: never stored.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from django.contrib.auth import get_user_model
from django.utils import timezone

from coffre.audit import log
from coffre.identity.registry import PatientRecord
from coffre.labwork import catalogue, pdf
from coffre.labwork.access import OrderView, ResultView, access_order
from coffre.labwork.models import ResultState
from coffre.tenancy.actors import LabActor
from coffre.tenancy.models import Lab

S = ResultState
REPORTED = frozenset({S.BIO_VALIDATED, S.PUBLISHED})


def _date(moment: dt.datetime | None, with_time: bool = True) -> str:
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return local.strftime("%d/%m/%Y %H:%M" if with_time else "%d/%m/%Y")


def patient_name(patient: PatientRecord) -> str:
    """"DUPONT Marie", or "MARTIN Marie (née DUPONT)" when a used name differs."""
    used = patient.used_name or patient.birth_name or ""
    name = f"{used.upper()} {patient.first_names or ''}".strip()
    if patient.used_name and patient.birth_name and patient.used_name != patient.birth_name:
        born = "née" if patient.sex == "F" else "né"
        name += f" ({born} {patient.birth_name.upper()})"
    return name


def _iso_to_french(iso_date: str | None) -> str:
    return dt.date.fromisoformat(iso_date).strftime("%d/%m/%Y") if iso_date else ""


def _line(view: ResultView) -> pdf.ReportLine:
    previous = ""
    if view.previous:
        previous = f"{view.display_previous} ({_date(view.previous.at, with_time=False)})"
    return pdf.ReportLine(
        label=view.test.label, value=view.display_value, unit=view.test.unit,
        reference=view.reference, flag=view.flag, previous=previous, comment=view.comment,
        corrected=view.corrected)


def _biologists(views: list[ResultView]) -> list[str]:
    ids = {v.result.bio_validated_by_id for v in views if v.result.bio_validated_by_id}
    people = get_user_model().objects.filter(id__in=ids).order_by("last_name")
    return [f"Dr {p.get_full_name() or p.username}" for p in people]


def report_data(view: OrderView, *, now: dt.datetime | None = None) -> pdf.ReportData:
    order, patient = view.order, view.patient
    lab = Lab.objects.get(pk=order.lab_id)
    shown = [v for v in view.results if v.state in REPORTED]
    taken = min((s.collected_at for s in view.specimens if s.collected_at), default=None)
    sections: dict[str, pdf.ReportSection] = {}
    for result in shown:
        bench = result.test.bench
        section = sections.setdefault(bench, pdf.ReportSection(
            catalogue.BENCHES.get(bench, bench), []))
        section.lines.append(_line(result))
    corrected = [v for v in shown if v.corrected]
    prescriber = view.prescriber_name and f"Dr {view.prescriber_name}"
    if view.prescriber_rpps:
        prescriber = f"{prescriber or 'Prescripteur'} (RPPS {view.prescriber_rpps})"
    return pdf.ReportData(
        lab_name=lab.name, lab_finess=lab.finess, lab_address=lab.address,
        order_number=order.number, patient_name=patient_name(patient),
        patient_birth_date=_iso_to_french(patient.birth_date),
        patient_sex=patient.sex or "", patient_nir=patient.nir or "",
        prescriber=prescriber or "", collected_at=_date(taken),
        received_at=_date(min((s.received_at for s in view.specimens if s.received_at),
                              default=None)),
        printed_at=_date(now or timezone.now()),
        sections=list(sections.values()), validated_by=_biologists(shown),
        partial=view.pending,
        amended=bool(corrected) and order.report_count > 1,
        amendment_note="; ".join(f"{v.test.label} : {v.comment}" for v in corrected
                                 if v.comment),
        reference=f"{order.number}-{secrets.token_hex(4)}")


def report_pdf(actor: LabActor, order_id: uuid.UUID | str, *, published_only: bool = False,
               prescribed_by: str | None = None) -> tuple[str, bytes]:
    """(file name, PDF bytes) of an order's report; the print is logged. Portals pass
    ``published_only`` and ``prescribed_by`` as to ``access.access_order``."""
    view = access_order(actor, order_id, published_only=published_only,
                        prescribed_by=prescribed_by)
    data = report_data(view)
    content = pdf.render_report(data)
    log.record(actor, "print", [view.order.patient_id], kind="report")
    return f"compte-rendu-{view.order.number}.pdf", content


def has_reportable_results(view: OrderView) -> bool:
    return any(v.state in REPORTED for v in view.results)


def labels_pdf(actor: LabActor, order_id: uuid.UUID | str) -> tuple[str, bytes]:
    """Tube labels of an order's specimens (identity on the tube is a quality rule)."""
    view = access_order(actor, order_id)
    patient = view.patient
    short = (f"{(patient.used_name or patient.birth_name or '').upper()} "
             f"{(patient.first_names or ' ')[0]}. {_iso_to_french(patient.birth_date)}")
    labels = [pdf.Label(barcode=s.barcode, order_number=view.order.number,
                        patient_line=short,
                        specimen=catalogue.SPECIMEN_TYPES.get(s.specimen_type,
                                                              s.specimen_type),
                        collected_at=_date(s.collected_at))
              for s in view.specimens]
    log.record(actor, "print", [view.order.patient_id], kind="labels")
    return f"etiquettes-{view.order.number}.pdf", pdf.render_labels(labels)
