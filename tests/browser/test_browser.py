"""The staff pages in a real headless Chromium: what a lab secretary sees and clicks.

The live server answers from another thread, so every test commits its data
(``transaction=True``). Screenshots of each step go to ``screenshots/`` at the repo root.
"""

from __future__ import annotations

import pytest

from coffre.accounts import mfa
from coffre.accounts.models import Role
from coffre.audit import alerts
from coffre.audit.models import Alert, AlertKind
from coffre.identity.access import create_patient
from coffre.tenancy.actors import Actor
from coffre.tenancy.models import LabGroup
from coffre.tenancy.services import add_lab
from tests.browser.helpers import (
    PASSWORD,
    SECRETS,
    SHOTS,
    inline_code,
    log_in,
    second_factor,
    shoot,
)
from tests.conftest import make_nir, member, patient_row

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What a page about patient Claire Lefèvre would show if it leaked her record.
NIR_SHOWN = "2 85 03 75 056 123 " + make_nir("F", 1985, 3)[13:]
CLAIRE_VALUES = ("Lefèvre", "LEFÈVRE", "Claire Anne", "claire.lefevre@example.fr",
                 "+33612345678", "06 12 34 56 78", "12 rue des Lilas",
                 make_nir("F", 1985, 3), NIR_SHOWN, "Grossesse")


@pytest.fixture
def secretary_a(lab_a):
    return member("alice", lab_a, Role.SECRETARY)


def test_a_secretary_finds_a_patient_by_name_and_birth_date_and_opens_the_record(
        page, secretary_a, actor_a):
    claire = create_patient(actor_a, patient_row())
    create_patient(actor_a, patient_row(nir=make_nir("F", 1990, 7), birth_name="Lefèvre",
                                        used_name="", first_names="Sophie",
                                        birth_date="1990-07-02", phone="06 98 76 54 32",
                                        email="sophie.lefevre@example.fr"))

    log_in(page, shot="01-login")
    assert page.get_by_role("heading", name="Rechercher un patient").is_visible()
    assert page.locator(".topbar .lab").inner_text() == "Laboratoire A"
    shoot(page, "02-search")

    page.get_by_label("Nom de naissance ou d'usage").fill("lefevre")
    page.get_by_label("Date de naissance").fill("1985-03-14")
    page.get_by_role("button", name="Rechercher").click()
    results = page.locator("table.list tbody tr")
    results.first.wait_for()
    assert results.count() == 1
    assert page.get_by_role("heading", name="1 patient trouvé").is_visible()
    assert "Claire Anne" in results.first.inner_text()
    assert "Sophie" not in page.content()
    shoot(page, "03-results")

    results.first.get_by_role("link").click()
    page.wait_for_url(f"**/patients/{claire.id}/")
    record = page.locator("main").inner_text()
    for value in ("LEFÈVRE", "Claire Anne", "MARTIN", NIR_SHOWN,
                  "06 12 34 56 78", "claire.lefevre@example.fr", "12 rue des Lilas",
                  "75011 Paris", "Dr Paul Bernard", "CPAM de Paris"):
        assert value in record, value
    shoot(page, "04-record")


def test_a_nir_with_a_wrong_check_key_is_refused_in_french(page, secretary_a, actor_a):
    create_patient(actor_a, patient_row())
    good = make_nir("F", 1985, 3)
    wrong = good[:13] + f"{(int(good[13:]) % 97) + 1:02d}"

    log_in(page)
    page.get_by_label("NIR / INS").fill(wrong)
    page.get_by_role("button", name="Rechercher").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    message = alert.inner_text()
    assert "NIR" in message and "clé de contrôle" in message
    assert wrong not in message
    assert page.locator("table.list").count() == 0
    shoot(page, "05-nir-error")


def test_a_patient_of_another_lab_is_neither_found_nor_opened(page, secretary_a, actor_b):
    theirs = create_patient(actor_b, patient_row())

    log_in(page)
    page.get_by_label("Courriel").fill("claire.lefevre@example.fr")
    page.get_by_role("button", name="Rechercher").click()
    page.get_by_role("heading", name="Aucun patient trouvé").wait_for()
    assert page.locator("table.list").count() == 0
    assert "Aucun patient de ce laboratoire ne correspond." in page.content()
    shoot(page, "06-other-lab-search")

    response = page.goto(f"/patients/{theirs.id}/")
    assert response.status == 404
    assert page.get_by_role("heading", name="Page introuvable").is_visible()
    shown = page.content()
    for value in CLAIRE_VALUES:
        assert value not in shown, value
    shoot(page, "07-other-lab-404")


def test_the_pages_are_french_by_default_and_the_button_switches_to_english(
        page, secretary_a):
    log_in(page)
    html = page.locator("html")
    assert html.get_attribute("lang") == "fr"
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert html.get_attribute("lang") == "en"
    assert page.url.endswith("/patients/")
    assert page.get_by_role("button", name="Français").is_visible()
    assert page.get_by_role("button", name="English").count() == 0
    shoot(page, "08-english")

    page.get_by_role("button", name="Français").click()
    page.wait_for_load_state()
    assert html.get_attribute("lang") == "fr"


def test_the_staff_pages_load_no_inline_code_and_nothing_from_elsewhere(
        page, live_server, secretary_a, actor_a):
    claire = create_patient(actor_a, patient_row())
    requested: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("response", lambda response: response.status < 400 or failed.append(response.url))

    log_in(page)
    inline = {}
    for step in ("search", "results", "record"):
        if step == "results":
            page.get_by_label("Téléphone").fill("06 12 34 56 78")
            page.get_by_role("button", name="Rechercher").click()
            page.locator("table.list").wait_for()
        if step == "record":
            page.goto(f"/patients/{claire.id}/")
        inline[step] = inline_code(page)
    for step, found in inline.items():
        assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0), step
        assert found["stylesheets"] == [f"{live_server.url}/static/coffre/coffre.css"], step

    assert requested and failed == []
    outside = [url for url in requested if not url.startswith(live_server.url + "/")]
    assert outside == []



def test_the_dpo_sees_an_alert_and_acknowledges_it_with_a_comment(page, lab_a):
    member("dora", lab_a, Role.DPO)
    alerts.raise_alert(lab_a.id, AlertKind.ACCOUNT_LOCKED, "eve",
                       "151 patients distincts lus en 10 minutes (limite 150)")
    alert = alerts.raise_alert(lab_a.id, AlertKind.MASS_READING, "eve",
                               "63 patients distincts lus en 10 minutes "
                               "(alerte à 60, verrouillage à 150)")

    log_in(page, "dora")
    link = page.locator(".topbar nav a", has_text="Alertes")
    assert link.locator(".count").inner_text() == "2"
    link.click()
    page.wait_for_url("**/alertes/")
    assert page.get_by_role("heading", name="2 alertes ouvertes").is_visible()
    item = page.locator(".alert-item", has_text="63 patients distincts")
    assert "Lecture massive" in item.inner_text() and "eve" in item.inner_text()
    assert page.get_by_role("button", name="Déverrouiller").count() == 0  # not the DPO's
    found = inline_code(page)
    assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0)
    shoot(page, "09-alerts")

    comment = "Campagne de rappel du service, vérifiée avec la responsable"
    item.get_by_label("Commentaire (obligatoire)").fill(comment)
    item.get_by_role("button", name="Acquitter").click()
    page.get_by_role("status").wait_for()
    assert "Alerte acquittée." in page.get_by_role("status").inner_text()
    assert page.locator(".topbar nav .count").inner_text() == "1"
    done = page.locator("section", has=page.get_by_role("heading", name="Alertes acquittées"))
    row = done.locator("tbody tr").first
    assert "dora" in row.inner_text() and comment in row.inner_text()
    alert.refresh_from_db()
    assert alert.acknowledged_by == "dora"
    assert Alert.objects.filter(acknowledged_at__isnull=True).count() == 1
    shoot(page, "10-alert-acknowledged")


REASON = "Patiente transférée aux urgences, résultats antérieurs nécessaires"


def test_a_break_the_glass_search_opens_a_group_record_under_a_red_banner(
        page, browser, live_server, secretary_a, lab_a, lab_b, actor_b):
    group = LabGroup.objects.create(name="Groupe Ouest")
    sister = add_lab("350000014", "Laboratoire Saint-Malo", "2 quai Duguay-Trouin")
    for lab in (lab_a, sister):
        lab.group = group
        lab.save()
    claire = create_patient(Actor("carol", sister.id, "secretary", "web"), patient_row())
    create_patient(actor_b, patient_row(email="claire.b@example.fr"))  # outside the group

    log_in(page)
    section = page.locator("#bris-de-glace")
    section.locator("summary").click()
    section.get_by_label("Motif").fill(REASON)
    section.get_by_label("Nom de naissance ou d'usage").fill("lefevre")
    section.get_by_label("Date de naissance").fill("1985-03-14")
    section.get_by_role("button", name="Rechercher dans le groupe").click()
    results = page.locator("#bris-de-glace table.list tbody tr")
    results.first.wait_for()
    assert results.count() == 1
    assert "Laboratoire Saint-Malo" in results.first.inner_text()
    shoot(page, "11-break-glass-search")

    results.first.get_by_role("link").click()
    page.wait_for_url(f"**/patients/{claire.id}/bris-de-glace/")
    banner = page.get_by_role("alert")
    assert "Accès exceptionnel (bris de glace)" in banner.inner_text()
    assert "LEFÈVRE" in page.locator("main").inner_text()
    found = inline_code(page)
    assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0)
    shoot(page, "12-break-glass-record")

    # The sister lab's DPO sees the access in the record's history, with the reason.
    member("sophie", sister, Role.DPO)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fr-FR",
                                  base_url=live_server.url)
    dpo = context.new_page()
    log_in(dpo, "sophie")
    dpo.goto(f"/patients/{claire.id}/")
    history = dpo.locator("section.history")
    row = history.locator("tr.break-glass").first
    assert "bris de glace" in row.inner_text() and "Laboratoire A" in row.inner_text()
    assert REASON in row.inner_text()
    history.screenshot(path=str(SHOTS / "13-access-history.png"))
    context.close()


def test_every_login_asks_for_the_second_factor_enrolled_at_the_first(page, secretary_a):
    log_in(page, enroll_shot="14-mfa-enroll")
    page.get_by_role("button", name="Se déconnecter", exact=True).click()
    page.wait_for_url("**/connexion/")

    page.get_by_label("Identifiant").fill("alice")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/connexion/code/**")
    assert page.get_by_role("heading", name="Code de connexion").is_visible()
    found = inline_code(page)
    assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0)
    shoot(page, "15-mfa-code")
    page.goto("/patients/")  # not before the code
    assert "/connexion/code/" in page.url

    page.get_by_label("Code").fill("000000" if mfa.current_code(SECRETS["alice"]) != "000000"
                                   else "111111")
    page.get_by_role("button", name="Valider").click()
    assert "Code incorrect ou déjà utilisé." in page.get_by_role("alert").inner_text()
    second_factor(page, "alice")
    page.wait_for_url("**/patients/")
    assert page.get_by_role("heading", name="Rechercher un patient").is_visible()
