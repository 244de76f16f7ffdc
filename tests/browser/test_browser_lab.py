"""A day at the lab in a real headless Chromium: a secretary registers and receives an
order, a technician types and validates the results, a biologist validates, releases and
downloads the report. Screenshots of every page go to ``screenshots/lab-*.png``."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from coffre.identity.access import create_patient
from coffre.labwork import catalogue, workflow
from coffre.labwork.models import Order, ResultState
from tests.browser.helpers import inline_code, log_in, shoot
from tests.conftest import patient_row
from tests.lab_helpers import order_for, result, staff_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = ResultState


def no_inline_code(page) -> None:
    found = inline_code(page)
    assert (found["styles"], found["handlers"]) == (0, 0)
    scripts = page.evaluate("() => [...document.scripts].map(s => s.src)")
    assert all(src.endswith("/static/coffre/lab.js") for src in scripts), scripts


def history(staff, patient_id, values: list[str]) -> None:
    """Earlier released potassium results, a month apart, for the chart."""
    for months, value in zip(range(len(values), 0, -1), values, strict=True):
        at = timezone.now() - dt.timedelta(days=30 * months)
        order = order_for(staff.secretary, patient_id, "K")
        Order.unscoped.filter(pk=order.pk).update(created_at=at)
        for specimen in order.specimens.all():
            workflow.receive(staff.secretary, specimen.barcode, at=at)
        workflow.enter_results(staff.technician, [workflow.Entry(result(order, "K").id,
                                                                 value)])
        workflow.validate_technically(staff.technician, [result(order, "K").id])
        workflow.validate_biologically(staff.biologist, [result(order, "K").id])
        workflow.publish(staff.biologist, order)


def test_a_day_at_the_lab_from_order_to_report(open_page, lab_a):
    staff = staff_of(lab_a)
    claire = create_patient(staff.secretary, patient_row())
    history(staff, claire.id, ["3.9", "4.4", "5.3", "4.6"])

    # -- the secretary: find the patient, order, receive --------------------------------
    page = open_page()
    log_in(page, staff.secretary.person)
    page.get_by_label("Nom de naissance ou d'usage").fill("lefevre")
    page.get_by_label("Date de naissance").fill("1985-03-14")
    page.get_by_role("button", name="Rechercher").click()
    page.locator("table.list tbody tr").first.get_by_role("link").click()
    page.wait_for_url(f"**/patients/{claire.id}/")
    assert page.locator("a", has_text="Nouvelle demande").is_visible()
    no_inline_code(page)
    shoot(page, "lab-01-patient")

    page.get_by_role("link", name="Nouvelle demande").click()
    page.wait_for_url("**/demandes/nouvelle/")
    page.get_by_label("Codes rapides").fill("NFS K CREA")
    page.get_by_label("RPPS du prescripteur").fill("10003456786")
    page.get_by_label("Nom du prescripteur").fill("Paul Bernard")
    page.get_by_label("Renseignements cliniques").fill("Asthénie, contrôle sous IEC")
    page.locator("input[name=urgent]").check()
    page.locator("input[name=panels][value=THYROIDE]").check()
    no_inline_code(page)
    shoot(page, "lab-02-order-new")
    page.get_by_role("button", name="Enregistrer la demande").click()
    page.wait_for_url(re.compile(r".*/demandes/[0-9a-f-]{36}/$"))
    order = Order.unscoped.filter(patient_id=claire.id).order_by("-created_at").first()
    assert order.urgent
    assert f"Demande {order.number} enregistrée." in page.get_by_role("status").inner_text()
    assert page.locator("table.results tbody tr").count() == order.results.count()
    no_inline_code(page)
    shoot(page, "lab-03-order")

    page.get_by_role("link", name="Réception").click()
    barcodes = list(order.specimens.order_by("barcode").values_list("barcode", flat=True))
    for barcode in barcodes:
        field = page.get_by_label("Code-barres")
        assert field.evaluate("el => el === document.activeElement")  # autofocus
        field.fill(barcode)
        field.press("Enter")
        page.get_by_text(f"Échantillon {barcode} réceptionné").wait_for()
    assert page.locator("ol.barcodes li").count() == len(barcodes)
    assert set(order.specimens.values_list("state", flat=True)) == {"received"}
    no_inline_code(page)
    shoot(page, "lab-04-reception")

    page.get_by_role("link", name="Paillasses").click()
    page.locator("select[name=paillasse]").select_option("BIOCHIMIE")
    page.get_by_role("button", name="Filtrer").click()
    page.wait_for_url("**/paillasses/?paillasse=BIOCHIMIE**")
    worklist = page.locator("main").inner_text()
    assert order.number in worklist and "URGENT" in worklist
    for value in ("Lefèvre", "LEFÈVRE", "Claire", "MARTIN"):
        assert value not in worklist
    no_inline_code(page)
    shoot(page, "lab-05-worklist")

    # -- the technician: the entry grid, keyboard only ---------------------------------
    page = open_page()
    log_in(page, staff.technician.person)
    page.goto("/saisie/?paillasse=BIOCHIMIE")
    k, crea = result(order, "K"), result(order, "CREA")
    first = page.locator(f"#v-{k.id}")
    assert first.evaluate("el => el === document.activeElement")
    first.type("4,8")
    first.press("Enter")  # the grid's Enter moves to the next value, it does not submit
    second = page.locator(f"#v-{crea.id}")
    assert second.evaluate("el => el === document.activeElement")
    second.type("92")
    for row in (k, crea):
        page.locator(f"input[name=validate][value='{row.id}']").check()
    no_inline_code(page)
    shoot(page, "lab-06-entry-grid")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("2 résultat(s) enregistré(s), 2 validé(s) techniquement.").wait_for()
    assert result(order, "K").state == S.TECH_VALIDATED

    page.goto("/saisie/?paillasse=HEMATO")
    hb, plq = result(order, "HB"), result(order, "PLQ")
    page.locator(f"#v-{hb.id}").fill("6,1")  # a critical haemoglobin
    page.locator(f"#v-{plq.id}").fill("beaucoup")
    page.locator(f"input[name=validate][value='{hb.id}']").check()
    page.get_by_role("button", name="Enregistrer").click()
    page.locator("tr.has-error .row-error").wait_for()
    assert "la valeur saisie n'est pas un nombre" in page.locator("tr.has-error").inner_text()
    assert result(order, "HB").state == S.RECEIVED  # all or nothing
    shoot(page, "lab-07-entry-error")
    page.locator(f"#v-{plq.id}").fill("")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("1 résultat(s) enregistré(s), 1 validé(s) techniquement.").wait_for()

    # -- the biologist: acknowledge, validate, release, report --------------------------
    page = open_page()
    log_in(page, staff.biologist.person)
    page.get_by_role("link", name="Validation").click()
    page.wait_for_url("**/validation/")
    group = page.locator("section.queue-order", has_text=order.number)
    assert "CRITIQUE" in group.inner_text()
    assert not group.locator(f"input[type=checkbox][value='{hb.id}']").is_checked()
    assert group.locator(f"input[type=checkbox][value='{k.id}']").is_checked()
    assert group.locator("td.value.flag-crit").count() == 1
    no_inline_code(page)
    shoot(page, "lab-08-validation")
    group.locator("input[name=note]").fill("Dr Bernard prévenu par téléphone à 10h12")
    group.get_by_role("button", name="Acquitter").click()
    page.get_by_text("Valeur critique acquittée.").wait_for()
    group = page.locator("section.queue-order", has_text=order.number)
    assert group.locator(f"input[type=checkbox][value='{hb.id}']").is_checked()
    page.get_by_role("button", name="Valider et diffuser").click()
    page.get_by_text("3 résultat(s) validé(s) biologiquement.").wait_for()
    # The blood count is not complete: the order waits; the order page releases it.
    assert result(order, "K").state == S.BIO_VALIDATED
    page.goto(f"/demandes/{order.id}/")
    page.get_by_role("button", name="Diffuser les résultats validés").click()
    page.get_by_text("résultat(s) diffusé(s).").wait_for()
    assert result(order, "K").state == S.PUBLISHED
    no_inline_code(page)
    shoot(page, "lab-09-order-released")

    page.get_by_role("link", name="Aperçu du compte rendu").click()
    page.wait_for_url("**/apercu/")
    preview = page.locator("article.report").inner_text()
    assert "RÉSULTAT(S) PARTIEL(S)" in preview and "Potassium" in preview
    assert "Dr Paul Bernard" in preview
    no_inline_code(page)
    shoot(page, "lab-10-report-preview")
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger le PDF").click()
    path = download.value.path()
    with open(path, "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"
    assert download.value.suggested_filename == f"compte-rendu-{order.number}.pdf"

    page.goto(f"/patients/{claire.id}/")
    page.locator(".chart-links a", has_text="K").click()
    page.wait_for_url(f"**/resultats/{catalogue.test('K').loinc}/")
    assert page.locator("svg.chart circle").count() == 5
    assert page.locator("svg.chart circle.flag-out").count() == 1  # 5,3 is high
    no_inline_code(page)
    shoot(page, "lab-11-chart")

    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    page.goto(f"/demandes/{order.id}/")
    assert page.get_by_role("heading", name=f"Order {order.number}").is_visible()
    assert "Reference range" in page.content()
    shoot(page, "lab-12-order-english")
    page.goto("/validation/")
    page.get_by_text("Nothing to validate for now.").wait_for()

    # -- the manager: the lab's settings -------------------------------------------------
    page = open_page()
    log_in(page, staff.manager.person)
    page.get_by_role("link", name="Réglages").click()
    page.get_by_label("Autoriser un biologiste").check()
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("Réglages enregistrés.").wait_for()
    assert workflow.self_validation_allowed(lab_a.id)
    no_inline_code(page)
    shoot(page, "lab-13-settings")
