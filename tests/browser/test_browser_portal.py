"""The patient and prescriber portals in a real headless Chromium: a secretary prints the
receipt with the activation code, the patient activates their account and reads their
results, charts, report and access history; a doctor logs in with the second factor and
reads the orders they prescribed. Screenshots go to ``screenshots/portal-*.png``."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.utils import timezone

from coffre.audit.history import patient_history
from coffre.identity.access import create_patient
from coffre.labwork import catalogue
from coffre.labwork.models import Order, Specimen
from coffre.portal.models import PatientAccount
from coffre.portal.prescriber import add_prescriber
from tests.browser.helpers import inline_code, log_in, second_factor, shoot
from tests.conftest import make_nir, patient_row
from tests.lab_helpers import PRESCRIBER_RPPS, published, staff_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OTHER_RPPS = "10009999995"
CODE = re.compile(r"\b[0-9A-Z]{6}-[0-9A-Z]{10}\b")
PATIENT_LOGIN = "claire.m85"
PATIENT_PASSWORD = "Sept tulipes rouges au jardin !"
DOCTOR_PASSWORD = "Huit cerisiers en fleurs sur la colline"


def no_inline_code(page) -> None:
    found = inline_code(page)
    assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0)


def backdate(order: Order, days: int) -> None:
    """Move an order (and its specimens) into the past, for the charts."""
    at = timezone.now() - dt.timedelta(days=days)
    Order.unscoped.filter(pk=order.pk).update(created_at=at)
    Specimen.unscoped.filter(order_id=order.pk).update(collected_at=at, received_at=at)


def pdf_text(path) -> str:
    from pypdf import PdfReader

    with open(path, "rb") as pdf:
        content = pdf.read()
    assert content.startswith(b"%PDF-")
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages)


def download(page, locator):
    with page.expect_download() as info:
        locator.click()
    return info.value


def claires_orders(lab_a):
    staff = staff_of(lab_a)
    claire = create_patient(staff.secretary, patient_row())
    earlier = published(staff, claire.id, GLY="5.1", K="4.2")
    backdate(earlier, 90)
    latest = published(staff, claire.id, GLY="6.4", K="5.3")
    return staff, claire, earlier, latest


def print_receipt(page, staff, order) -> str:
    """The secretary prints the receipt from the order page; the activation code read
    back from the PDF."""
    log_in(page, staff.secretary.person)
    page.goto(f"/demandes/{order.id}/")
    receipt = download(page, page.get_by_role("button", name="Reçu patient (PDF)"))
    assert receipt.suggested_filename == f"recu-{order.number}.pdf"
    text = pdf_text(receipt.path())
    assert order.number in text
    found = CODE.search(text)
    assert found, text
    return found.group(0)


def activate(page, code: str, birth_date: str = "14/03/1985") -> None:
    page.goto("/portail/activation/")
    page.get_by_label("Code d'activation (sur votre reçu)").fill(code)
    page.get_by_label("Date de naissance").fill(birth_date)
    page.get_by_label("Identifiant de connexion à choisir").fill(PATIENT_LOGIN)
    page.get_by_label("Mot de passe à choisir").fill(PATIENT_PASSWORD)
    page.get_by_label("Mot de passe (encore)").fill(PATIENT_PASSWORD)
    page.get_by_role("button", name="Activer mon compte").click()
    page.wait_for_load_state()


def test_a_patient_activates_the_portal_with_the_receipt_and_reads_their_results(
        open_page, lab_a):
    staff, _claire, earlier, latest = claires_orders(lab_a)
    code = print_receipt(open_page(), staff, latest)

    # -- the patient, at home: activation ---------------------------------------------
    page = open_page()
    page.goto("/portail/activation/")
    assert page.get_by_role("heading", name="Activer mon compte patient").is_visible()
    no_inline_code(page)
    shoot(page, "portal-01-activation")

    activate(page, code, birth_date="15/03/1985")
    alert = page.get_by_role("alert")
    assert "Code ou date de naissance non reconnus" in alert.inner_text()
    assert "/portail/activation/" in page.url
    assert not PatientAccount.objects.exists()
    no_inline_code(page)
    shoot(page, "portal-02-activation-error")

    activate(page, code)
    page.wait_for_url("**/portail/")
    assert page.get_by_role("heading", name="Mes résultats", exact=True).is_visible()
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 2
    assert latest.number in rows.nth(0).inner_text()  # newest first
    assert earlier.number in rows.nth(1).inner_text()
    assert "Laboratoire A" in rows.nth(0).inner_text()
    no_inline_code(page)
    shoot(page, "portal-03-home")

    # -- an order: values, ranges, flags -----------------------------------------------
    rows.nth(0).get_by_role("link", name="Voir").click()
    page.wait_for_url(f"**/portail/demandes/{latest.id}/")
    assert page.get_by_role("heading", name=f"Dossier {latest.number}").is_visible()
    table = page.locator("table.list")
    glucose = table.locator("tbody tr", has_text="Glucose")
    potassium = table.locator("tbody tr", has_text="Potassium")
    assert "6,4" in glucose.inner_text() and "5,1" in glucose.inner_text()  # previous
    assert "mmol/L" in glucose.inner_text()
    assert re.search(r"\d+,\d+\s*[-–à]+\s*\d+,\d+", glucose.inner_text())  # a range
    assert glucose.locator("td.value.flag-out").count() == 1  # 6,4 is high
    assert glucose.locator(".flag").inner_text().strip() in ("H", "+", "↑")
    assert "5,3" in potassium.inner_text()
    assert potassium.locator("td.value.flag-out").count() == 1  # 5,3 is high
    no_inline_code(page)
    shoot(page, "portal-04-order")

    report = download(page, page.get_by_role("link",
                                             name="Télécharger le compte rendu (PDF)"))
    text = pdf_text(report.path())
    assert latest.number in text and "Glucose" in text

    # -- the glucose chart -------------------------------------------------------------
    glucose.get_by_role("link", name="Évolution").click()
    page.wait_for_url(f"**/portail/resultats/{catalogue.test('GLY').loinc}/")
    assert page.get_by_role("heading", name="Glucose").is_visible()
    assert page.locator("svg.chart").count() == 1
    assert page.locator("svg.chart circle").count() == 2
    assert page.locator("svg.chart circle.flag-out").count() == 1
    values = page.locator("table.list tbody td.value").all_inner_texts()
    assert values == ["6,40", "5,10"]  # newest first, to the test's precision
    no_inline_code(page)
    shoot(page, "portal-05-chart")

    # -- who has read my record --------------------------------------------------------
    page.get_by_role("link", name="Mes résultats", exact=True).click()
    page.wait_for_url("**/portail/")
    page.get_by_role("link", name="Qui a consulté mon dossier ?").click()
    page.wait_for_url("**/portail/acces/")
    log_text = page.locator("table.list").inner_text()
    assert staff.secretary.person in log_text
    assert staff.biologist.person in log_text
    assert PATIENT_LOGIN in log_text  # the patient's own reads are listed too
    no_inline_code(page)
    shoot(page, "portal-06-access-log")

    # -- the English switch ------------------------------------------------------------
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    page.goto("/portail/")
    assert page.get_by_role("heading", name="My results", exact=True).is_visible()
    assert page.get_by_role("link", name="Who has viewed my record?").is_visible()
    shoot(page, "portal-07-home-english")


def test_a_doctor_logs_in_with_the_second_factor_and_reads_their_prescriptions(
        open_page, lab_a):
    staff, claire, earlier, latest = claires_orders(lab_a)
    sophie = create_patient(staff.secretary, patient_row(
        nir=make_nir("F", 1990, 7), birth_name="Durand", used_name="", first_names="Sophie",
        birth_date="1990-07-02", email="sophie.durand@example.fr"))
    not_theirs = published(staff, sophie.id, rpps=OTHER_RPPS, GLY="4.9")
    _account, password = add_prescriber(PRESCRIBER_RPPS, "dr.bernard")

    page = open_page()
    page.goto("/connexion/")
    page.get_by_label("Identifiant").fill("dr.bernard")
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()
    # The temporary password first: no other page, not even the enrollment, before it.
    page.wait_for_url("**/compte/mot-de-passe/")
    assert page.locator("[data-temporary]").is_visible()
    no_inline_code(page)
    shoot(page, "portal-08a-prescriber-temporary-password")
    page.get_by_label("Ancien mot de passe").fill(password)
    page.get_by_label("Nouveau mot de passe", exact=True).fill(DOCTOR_PASSWORD)
    page.get_by_label("Confirmation du nouveau mot de passe").fill(DOCTOR_PASSWORD)
    page.get_by_role("button", name="Changer le mot de passe").click()
    second_factor(page, "dr.bernard")
    page.wait_for_url("**/prescripteur/")
    assert page.get_by_role("heading", name="Mes prescriptions").is_visible()
    listing = page.locator("table.list tbody")
    assert listing.locator("tr").count() == 2
    text = listing.inner_text()
    assert "MARTIN" in text and "Claire" in text
    assert latest.number in text and earlier.number in text
    assert not_theirs.number not in page.content()
    assert "Sophie" not in text and "DURAND" not in text
    no_inline_code(page)
    shoot(page, "portal-08-prescriber-home")

    listing.locator("tr", has_text=latest.number).get_by_role("link",
                                                               name="Résultats").click()
    page.wait_for_url(f"**/prescripteur/demandes/{latest.id}/")
    assert page.get_by_role("heading", name=f"Dossier {latest.number}").is_visible()
    main = page.locator("main").inner_text()
    assert "Claire" in main and "6,4" in main and "Potassium" in main
    assert page.locator("a", has_text="Évolution").count() == 0  # patient charts only
    no_inline_code(page)
    shoot(page, "portal-09-prescriber-order")

    report = download(page, page.get_by_role("link",
                                             name="Télécharger le compte rendu (PDF)"))
    assert latest.number in pdf_text(report.path())

    # Another doctor's order is a 404, exactly like an order that does not exist.
    response = page.goto(f"/prescripteur/demandes/{not_theirs.id}/")
    assert response.status == 404
    # The doctor's reads show in Claire's access history, none in Sophie's.
    readers = {(e.person, e.role) for e in patient_history(claire.id, limit=200)}
    assert ("dr.bernard", "prescriber") in readers
    assert "dr.bernard" not in {e.person for e in patient_history(sophie.id, limit=200)}
