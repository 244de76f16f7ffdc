"""The sample receipt handed to the patient at the desk, with a fresh portal activation
code when the patient has no account yet. The code exists in clear only in this PDF."""

from __future__ import annotations

import uuid

from django.utils import timezone

from coffre.audit import log
from coffre.labwork import catalogue, pdf
from coffre.labwork.access import access_order
from coffre.labwork.reports import patient_name
from coffre.portal.activation import has_account, issue_code
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import require
from coffre.tenancy.models import Lab


def receipt_pdf(actor: LabActor, order_id: uuid.UUID | str, portal_url: str
                ) -> tuple[str, bytes]:
    require(actor, "specimen.receive")  # before any read: nothing shown
    view = access_order(actor, order_id)
    order = view.order
    code = "" if has_account(order.patient_id) else issue_code(actor, order.patient_id)
    taken = min((s.collected_at for s in view.specimens if s.collected_at),
                default=order.created_at)
    lab = Lab.objects.get(pk=order.lab_id)
    tests = [catalogue.test(v.result.loinc).label for v in view.results
             if v.result.source != "calculated"]
    receipt = pdf.Receipt(
        lab_name=lab.name, lab_address=lab.address, order_number=order.number,
        patient_name=patient_name(view.patient),
        collected_at=timezone.localtime(taken).strftime("%d/%m/%Y %H:%M"),
        tests=tests, portal_url=portal_url, activation_code=code)
    log.record(actor, "print", [order.patient_id], kind="receipt")
    return f"recu-{order.number}.pdf", pdf.render_receipt(receipt)
