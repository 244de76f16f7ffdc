"""The lab workflow's staff pages: who may open each, what each does, what none shows."""

from __future__ import annotations

import pytest
from django.test import Client

from coffre.identity.access import create_patient
from coffre.labwork import workflow
from coffre.labwork.models import LabWorkflowSettings, Order, ResultState
from coffre.tenancy import rls
from tests.conftest import make_nir, patient_row, second_factor_done
from tests.lab_helpers import enter, order_for, receive_all, result, staff_of

S = ResultState




def client_for(actor) -> Client:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username=actor.person))
    second_factor_done(client)
    return client


@pytest.fixture
def as_role(staff):
    clients = {}

    def get(role: str) -> Client:
        if role not in clients:
            clients[role] = client_for(getattr(staff, role))
        return clients[role]

    return get


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# -- who may open what ----------------------------------------------------------------

@pytest.mark.parametrize(("url", "allowed", "refused"), [
    ("/reception/", "secretary", "manager"),
    ("/paillasses/", "secretary", None),
    ("/saisie/", "technician", "secretary"),
    ("/validation/", "biologist", "secretary"),
    ("/validation/", "biologist", "technician"),
    ("/laboratoire/reglages/", "manager", "biologist"),
])
def test_each_lab_page_opens_for_its_roles_and_is_forbidden_to_the_others(
        as_role, url, allowed, refused):
    page(as_role(allowed).get(url))
    if refused:
        assert as_role(refused).get(url).status_code == 403


def test_the_order_pages_open_for_the_readers(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "NFS")
    for url in (f"/patients/{patient.id}/demandes/nouvelle/", f"/demandes/{order.id}/",
                f"/demandes/{order.id}/apercu/"):
        assert "Lefèvre".upper() in page(as_role("secretary").get(url))
    assert as_role("manager").get(f"/patients/{patient.id}/demandes/nouvelle/"
                                  ).status_code == 403


def test_a_technician_may_not_validate_biologically(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.1")
    workflow.validate_technically(staff.technician, [result(order, "K").id])
    response = as_role("technician").post("/validation/", {
        "action": "validate", "result": [str(result(order, "K").id)]})
    assert response.status_code == 403
    assert result(order, "K").state == S.TECH_VALIDATED


def test_a_secretary_may_not_publish_from_the_order_page(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    response = as_role("secretary").post(f"/demandes/{order.id}/action/",
                                         {"action": "publish"})
    assert response.status_code == 403


def test_another_labs_order_and_patient_are_a_plain_404(as_role, lab_b, actor_b):
    theirs = create_patient(actor_b, patient_row(
        nir=make_nir("M", 1970, 1), birth_name="Kerbrat", used_name="", sex="M",
        birth_date="1970-01-05", first_names="Yann"))
    staff_b = staff_of(lab_b, "b")
    order = order_for(staff_b.secretary, theirs.id, "NFS")
    specimen = order.specimens.get()
    client = as_role("biologist")
    for url in (f"/demandes/{order.id}/", f"/demandes/{order.id}/apercu/",
                f"/demandes/{order.id}/compte-rendu.pdf",
                f"/demandes/{order.id}/etiquettes.pdf",
                f"/patients/{theirs.id}/demandes/nouvelle/",
                f"/patients/{theirs.id}/resultats/718-7/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "KERBRAT" not in response.content.decode().upper()
    response = client.post(f"/demandes/{order.id}/action/", {"action": "publish"})
    assert response.status_code == 404
    shown = page(as_role("secretary").post("/reception/", {"barcode": specimen.barcode},
                                           follow=True))
    assert "Aucun échantillon de ce laboratoire" in shown
    rls.open_all()  # the test reads lab B's row itself: the pages limited it to lab A
    specimen.refresh_from_db()
    assert specimen.state == "registered"


# -- the workflow through the pages ---------------------------------------------------

def test_an_order_is_created_from_quick_codes_boxes_and_panels(as_role, patient):
    response = as_role("secretary").post(f"/patients/{patient.id}/demandes/nouvelle/", {
        "quick_codes": "iono crp", "panels": ["THYROIDE"], "tests": ["718-7"],
        "prescriber_rpps": "10003456786", "prescriber_name": "Paul Bernard",
        "clinical_info": "Fatigue", "urgent": "on"})
    assert response.status_code == 302
    order = Order.unscoped.get(patient_id=patient.id)
    assert response["Location"] == f"/demandes/{order.id}/"
    assert order.urgent
    codes = {r.loinc for r in order.results.all()}
    assert {"718-7", "2823-3", "3016-3"} <= codes  # Hb, K (iono), TSH
    shown = page(as_role("secretary").get(response["Location"]))
    assert "Paul Bernard" in shown and "Fatigue" in shown and "URGENT" in shown


def test_an_unknown_code_is_shown_on_the_form_and_nothing_is_created(as_role, patient):
    shown = page(as_role("secretary").post(f"/patients/{patient.id}/demandes/nouvelle/",
                                           {"quick_codes": "NFS ZZZ"}))
    assert "Code d&#x27;analyse inconnu : ZZZ" in shown
    assert not Order.unscoped.filter(patient_id=patient.id).exists()


def test_a_scanned_barcode_is_received_and_listed(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "NFS", "K")
    barcode = order.specimens.order_by("barcode").first().barcode
    shown = page(as_role("secretary").post("/reception/", {"barcode": barcode},
                                           follow=True))
    assert f"Échantillon {barcode} réceptionné" in shown
    assert f'<li class="mono">{barcode}</li>' in shown
    assert order.specimens.get(barcode=barcode).state == "received"
    again = page(as_role("secretary").post("/reception/", {"barcode": barcode},
                                           follow=True))
    assert "ne peut plus être réceptionné" in again


def test_the_order_page_collects_rejects_and_cancels(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "NFS", "K")
    edta, serum = order.specimens.order_by("barcode")
    client = as_role("technician")
    url = f"/demandes/{order.id}/action/"
    client.post(url, {"action": "collect", "specimen": str(edta.id)})
    edta.refresh_from_db()
    assert edta.state == "collected"
    shown = page(client.post(url, {"action": "reject", "specimen": str(serum.id),
                                   "reason": "hémolysé", "detail": "tube 2"}, follow=True))
    assert "hémolysé — tube 2" in shown
    refused = page(client.post(url, {"action": "cancel", "result": str(
        result(order, "HB").id), "reason": ""}, follow=True))
    assert "un motif est obligatoire" in refused
    client.post(url, {"action": "cancel", "result": str(result(order, "HB").id),
                      "reason": "demandé par erreur"})
    assert result(order, "HB").state == S.CANCELLED


def test_a_grid_value_is_saved_validated_and_shown_on_the_order_page(as_role, staff,
                                                                      patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    client = as_role("technician")
    grid = page(client.get("/saisie/?paillasse=BIOCHIMIE"))
    k, na = result(order, "K"), result(order, "NA")
    assert f'name="value-{k.id}"' in grid and "Potassium" in grid
    response = client.post("/saisie/?paillasse=BIOCHIMIE", {
        f"value-{k.id}": "4,2", f"value-{na.id}": "", "validate": [str(k.id)]})
    assert response.status_code == 302
    assert result(order, "K").state == S.TECH_VALIDATED
    assert result(order, "NA").state == S.RECEIVED
    shown = page(client.get(f"/demandes/{order.id}/"))
    assert "4,2" in shown and "Validé techniquement" in shown


def test_a_bad_grid_value_is_shown_next_to_its_row_and_nothing_is_saved(as_role, staff,
                                                                         patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    k, na = result(order, "K"), result(order, "NA")
    shown = page(as_role("technician").post("/saisie/", {
        f"value-{k.id}": "4,2", f"value-{na.id}": "beaucoup"}))
    assert "la valeur saisie n&#x27;est pas un nombre" in shown
    assert 'value="beaucoup"' in shown  # what was typed stays in the grid
    assert result(order, "K").state == S.RECEIVED


def test_a_biologist_validates_and_publishes_then_downloads_the_report(as_role, staff,
                                                                        patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.2", NA="141")
    ids = [result(order, "K").id, result(order, "NA").id]
    workflow.validate_technically(staff.technician, ids)
    client = as_role("biologist")
    queue = page(client.get("/validation/"))
    assert order.number in queue and "4,2" in queue and "Valider et diffuser" in queue
    shown = page(client.post("/validation/", {"action": "publish",
                                              "result": [str(i) for i in ids]}, follow=True))
    assert "2 résultat(s) validé(s) biologiquement." in shown
    assert "1 demande(s) diffusée(s)." in shown
    assert {result(order, "K").state, result(order, "NA").state} == {S.PUBLISHED}

    report = client.get(f"/demandes/{order.id}/compte-rendu.pdf")
    assert report.status_code == 200
    assert report["Content-Type"] == "application/pdf"
    assert "no-store" in report["Cache-Control"]
    assert report["Content-Disposition"].startswith("attachment;")
    assert report.content.startswith(b"%PDF")
    labels = client.get(f"/demandes/{order.id}/etiquettes.pdf")
    assert labels.content.startswith(b"%PDF") and "no-store" in labels["Cache-Control"]


def test_validate_only_leaves_the_order_unpublished_and_the_page_publishes_it(
        as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.2")
    workflow.validate_technically(staff.technician, [result(order, "K").id])
    client = as_role("biologist")
    client.post("/validation/", {"action": "validate", "result": [str(result(order, "K").id)]})
    assert result(order, "K").state == S.BIO_VALIDATED
    assert "Diffuser les résultats validés" in page(client.get(f"/demandes/{order.id}/"))
    client.post(f"/demandes/{order.id}/action/", {"action": "publish"})
    assert result(order, "K").state == S.PUBLISHED


def test_self_validation_is_refused_with_a_readable_reason(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.biologist, order, K="4.2")
    workflow.validate_technically(staff.technician, [result(order, "K").id])
    shown = page(as_role("biologist").post("/validation/", {
        "action": "validate", "result": [str(result(order, "K").id)]}, follow=True))
    assert "auto-validation" in shown
    assert result(order, "K").state == S.TECH_VALIDATED


def test_a_critical_value_is_unticked_until_acknowledged(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="7.5")
    k = result(order, "K")
    workflow.validate_technically(staff.technician, [k.id])
    client = as_role("biologist")
    queue = page(client.get("/validation/"))
    assert "CRITIQUE" in queue
    assert f'value="{k.id}" form="validate-form" aria-label="Potassium">' in queue
    client.post("/validation/", {"action": "acknowledge", "result": str(k.id),
                                 "note": "Dr Bernard appelé à 10h12"})
    queue = page(client.get("/validation/"))
    assert f'value="{k.id}" form="validate-form" aria-label="Potassium" checked>' in queue


def test_a_published_result_is_corrected_from_the_order_page(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.2")
    workflow.validate_technically(staff.technician, [result(order, "K").id])
    workflow.validate_biologically(staff.biologist, [result(order, "K").id])
    workflow.publish(staff.biologist, order)
    old = result(order, "K")
    as_role("other_biologist").post(f"/demandes/{order.id}/action/", {
        "action": "correct", "result": str(old.id), "value": "4,4",
        "reason": "erreur de transcription"})
    assert result(order, "K").version == 2
    assert "corrigé" in page(as_role("biologist").get(f"/demandes/{order.id}/"))


def test_the_worklist_shows_no_patient_name_and_counts_its_rows(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "NFS", "K", urgent=True)
    receive_all(staff.secretary, order)
    shown = page(as_role("technician").get("/paillasses/?paillasse=HEMATO"))
    assert order.number in shown and "1 échantillon" in shown and "URGENT" in shown
    for value in ("Lefèvre", "LEFÈVRE", "Claire", "Martin", "MARTIN", "Bernard"):
        assert value not in shown, value
    assert "0 échantillon" in page(as_role("technician").get(
        "/paillasses/?etat=bio_validated"))


def test_the_preview_says_partial_while_tests_are_pending(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.2")
    workflow.validate_technically(staff.technician, [result(order, "K").id])
    workflow.validate_biologically(staff.biologist, [result(order, "K").id])
    shown = page(as_role("secretary").get(f"/demandes/{order.id}/apercu/"))
    assert "RÉSULTAT(S) PARTIEL(S)" in shown and "Potassium" in shown
    assert "Sodium" not in shown
    assert f'href="/demandes/{order.id}/compte-rendu.pdf"' in shown


def test_the_patient_page_lists_orders_and_links_charts(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "HB")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, HB="13.1")
    workflow.validate_technically(staff.technician, [result(order, "HB").id])
    workflow.validate_biologically(staff.biologist, [result(order, "HB").id])
    workflow.publish(staff.biologist, order)
    shown = page(as_role("secretary").get(f"/patients/{patient.id}/"))
    assert f'href="/demandes/{order.id}/"' in shown and "Nouvelle demande" in shown
    assert f'href="/patients/{patient.id}/resultats/718-7/"' in shown
    chart = page(as_role("secretary").get(f"/patients/{patient.id}/resultats/718-7/"))
    assert "<svg" in chart and "<circle" in chart and "13,1" in chart
    assert as_role("secretary").get(
        f"/patients/{patient.id}/resultats/nope/").status_code == 404


def test_the_manager_turns_self_validation_on(as_role, lab_a):
    as_role("manager").post("/laboratoire/reglages/", {"allow_self_validation": "on"})
    assert LabWorkflowSettings.objects.get(lab=lab_a).allow_self_validation
    as_role("manager").post("/laboratoire/reglages/", {})
    assert not LabWorkflowSettings.objects.get(lab=lab_a).allow_self_validation


def test_no_lab_page_puts_a_patient_value_in_a_form_action_or_link(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    shown = page(as_role("secretary").get(f"/demandes/{order.id}/"))
    assert 'method="get"' not in shown
    assert "10003456786" not in "".join(
        part.split('"')[0] for part in shown.split('href="')[1:])


def test_values_are_kept_when_the_ticked_validation_is_refused(as_role, staff, patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    k, na = result(order, "K"), result(order, "NA")
    shown = page(as_role("technician").post("/saisie/", {
        f"value-{k.id}": "4,2", "validate": [str(k.id), str(na.id)]}, follow=True))
    assert "Validation technique refusée" in shown
    assert "1 résultat(s) enregistré(s), 0 validé(s) techniquement." in shown
    assert result(order, "K").state == S.IN_ANALYSIS
    assert 'value="4,2"' in shown  # prefilled with the value entered, in French


def test_an_order_action_only_reaches_the_orders_own_specimens(as_role, staff, patient):
    mine = order_for(staff.secretary, patient.id, "K")
    other = order_for(staff.secretary, patient.id, "HB")
    specimen = other.specimens.get()
    response = as_role("secretary").post(f"/demandes/{mine.id}/action/", {
        "action": "collect", "specimen": str(specimen.id)})
    assert response.status_code == 404
    specimen.refresh_from_db()
    assert specimen.state == "registered"
