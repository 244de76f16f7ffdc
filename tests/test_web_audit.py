"""The audit pages: a locked account, a patient's access history, the alerts page,
unlocking, and break-the-glass. Each test says who must not see what."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.http import HttpRequest
from django.test import Client

from coffre.accounts.models import Role
from coffre.audit import alerts, canaries, detection
from coffre.audit.history import patient_history
from coffre.audit.models import AccessEvent, AccountLock, Alert, AlertKind, AuditSettings
from coffre.breach import planting
from coffre.identity import grants
from coffre.identity.access import break_glass_access, create_patient
from tests.conftest import STAFF_PASSWORD, make_nir, member, patient_row, second_factor_done

PASSWORD = STAFF_PASSWORD
REASON = "Patiente transférée aux urgences, résultats antérieurs nécessaires"
CLAIRE = ("Lefèvre", "LEFÈVRE", "Claire Anne", "claire.lefevre@example.fr", "Grossesse")



def client_for(username: str) -> Client:
    client = Client()
    # django-axes needs a request to authenticate (its documented test recipe).
    assert client.login(request=HttpRequest(), username=username, password=PASSWORD)
    second_factor_done(client)
    return client


@pytest.fixture
def people(lab_a, lab_b):
    """A secretary, a DPO and a manager of lab A; a DPO and a manager of lab B."""
    member("alice", lab_a, Role.SECRETARY)
    member("dora", lab_a, Role.DPO)
    member("marc", lab_a, Role.LAB_MANAGER)
    member("bruno", lab_b, Role.DPO)
    member("berthe", lab_b, Role.LAB_MANAGER)


def text(response) -> str:
    return response.content.decode().replace("&#x27;", "'")


# --- a locked account ------------------------------------------------------------------

def test_a_reader_locked_mid_request_is_logged_out_and_shown_why(people, lab_a, actor_a):
    limit = detection.CHECK_EVERY  # the detection counts in the database every N reads
    AuditSettings.objects.create(lab=lab_a, hard_per_10_minutes=limit)
    patients = [create_patient(actor_a, patient_row(nir=make_nir("F", 1985, 3, "75056",
                                                                 f"{i:03d}")))
                for i in range(1, limit + 2)]
    alice = client_for("alice")
    statuses = [alice.get(f"/patients/{p.id}/").status_code for p in patients[:limit - 1]]
    assert set(statuses) == {200}

    response = alice.get(f"/patients/{patients[limit - 1].id}/")
    assert response.status_code == 403
    page = text(response)
    assert "Compte verrouillé" in page and "protection des données" in page
    for value in CLAIRE:
        assert value not in page, value
    assert "_auth_user_id" not in alice.session
    assert alice.get(f"/patients/{patients[limit].id}/")["Location"].startswith("/connexion/")
    assert AccountLock.objects.filter(person="alice", unlocked_at__isnull=True).exists()


def test_an_account_with_an_open_lock_is_stopped_on_any_staff_page(people, lab_a):
    alice = client_for("alice")
    AccountLock.objects.create(person="alice", lab_id=lab_a.id, reason="test")
    response = alice.get("/patients/")
    assert response.status_code == 403 and "Compte verrouillé" in text(response)
    assert "_auth_user_id" not in alice.session


# --- the access history on the record --------------------------------------------------

def test_the_record_shows_its_access_history_in_french(people, actor_a):
    patient = create_patient(actor_a, patient_row())
    alice = client_for("alice")
    alice.post("/patients/", {"email": "claire.lefevre@example.fr"})
    page = text(alice.get(f"/patients/{patient.id}/"))
    history = page.split("Journal des accès", 1)[1]
    for label in ("consultation", "recherche", "création", "Secrétaire", "Laboratoire A"):
        assert label in history, label
    assert re.search(r"\d\d/\d\d/\d{4} \d\d:\d\d", history)
    assert "bris de glace" not in history


def test_showing_the_history_adds_only_the_read_of_the_page(people, actor_a):
    patient = create_patient(actor_a, patient_row())
    alice = client_for("alice")
    for _ in range(3):
        alice.get(f"/patients/{patient.id}/")
    before = AccessEvent.objects.count()
    alice.get(f"/patients/{patient.id}/")
    assert AccessEvent.objects.count() == before + 1
    assert len(patient_history(patient.id)) == 5  # created, then four reads


def test_the_history_is_newest_first_limited_and_leaves_out_failed_attempts(
        actor_a, actor_b):
    from coffre.identity.access import PatientNotFound, access_patient

    patient = create_patient(actor_a, patient_row())
    for _ in range(4):
        access_patient(actor_a, patient.id)
    with pytest.raises(PatientNotFound):
        access_patient(actor_b, patient.id)
    entries = patient_history(patient.id, limit=3)
    assert [e.action for e in entries] == ["read", "read", "read"]
    assert all(e.person == "alice" for e in patient_history(patient.id))
    assert patient_history(patient.id)[-1].action_label == "création"


def test_break_glass_reasons_are_shown_to_the_dpo_only(people, actor_a, sister_lab,
                                                       sister_patient):
    member("carol", sister_lab, Role.SECRETARY)
    member("sophie", sister_lab, Role.DPO)
    break_glass_access(actor_a, sister_patient.id, REASON)

    secretary_page = text(client_for("carol").get(f"/patients/{sister_patient.id}/"))
    history = secretary_page.split("Journal des accès", 1)[1]
    assert "bris de glace" in history and "Laboratoire A" in history
    assert REASON not in secretary_page

    dpo_page = text(client_for("sophie").get(f"/patients/{sister_patient.id}/"))
    assert REASON in dpo_page.split("Journal des accès", 1)[1]


# --- the alerts page: who sees it ------------------------------------------------------

@pytest.fixture
def alert_a(lab_a):
    return alerts.raise_alert(lab_a.id, AlertKind.MASS_READING, "eve",
                              "72 patients distincts lus en 10 minutes")


def test_the_alerts_page_needs_a_login(client, alert_a):
    response = client.get("/alertes/")
    assert response.status_code == 302 and "/connexion/" in response["Location"]


@pytest.mark.parametrize("role", [Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST])
def test_staff_of_the_same_lab_who_do_not_review_alerts_are_refused(lab_a, alert_a, role):
    member("paul", lab_a, role)
    response = client_for("paul").get("/alertes/")
    assert response.status_code == 403 and "eve" not in text(response)
    assert "Accès refusé" in text(response)


def test_the_dpo_sees_the_open_alerts_of_the_lab_and_a_count_in_the_menu(people, alert_a):
    page = text(client_for("dora").get("/alertes/"))
    assert "Lecture massive" in page and "eve" in page and "72 patients distincts" in page
    assert re.search(r'class="nav-alerts">Alertes <span class="count"[^>]*>1</span>', page)
    assert 'name="comment"' in page


def test_a_secretary_has_no_alerts_link(people, alert_a):
    assert "/alertes/" not in text(client_for("alice").get("/patients/"))


def test_the_dpo_of_another_lab_does_not_see_these_alerts(people, alert_a):
    page = text(client_for("bruno").get("/alertes/"))
    assert "eve" not in page and "Aucune alerte ouverte" in page


def test_the_dpo_of_another_lab_cannot_acknowledge_them(people, alert_a):
    response = client_for("bruno").post(f"/alertes/{alert_a.pk}/acquitter/",
                                        {"comment": "vu"})
    assert response.status_code == 404
    alert_a.refresh_from_db()
    assert alert_a.is_open


def test_a_lab_manager_sees_the_alerts_but_does_not_acknowledge_them(people, alert_a):
    marc = client_for("marc")
    page = text(marc.get("/alertes/"))
    assert "eve" in page and 'name="comment"' not in page
    response = marc.post(f"/alertes/{alert_a.pk}/acquitter/", {"comment": "vu"})
    assert response.status_code == 403
    alert_a.refresh_from_db()
    assert alert_a.is_open


# --- acknowledging ---------------------------------------------------------------------

def test_acknowledging_needs_a_comment(people, alert_a):
    dora = client_for("dora")
    response = dora.post(f"/alertes/{alert_a.pk}/acquitter/", {"comment": "   "},
                         follow=True)
    assert "Un commentaire est obligatoire" in text(response)
    alert_a.refresh_from_db()
    assert alert_a.is_open


def test_the_dpo_acknowledges_with_a_sealed_comment_shown_to_the_dpo_only(people, alert_a):
    comment = "Campagne de rappel vaccinal validée par le responsable"
    dora = client_for("dora")
    page = text(dora.post(f"/alertes/{alert_a.pk}/acquitter/", {"comment": comment},
                          follow=True))
    alert_a.refresh_from_db()
    assert alert_a.acknowledged_by == "dora" and not alert_a.is_open
    assert comment.encode() not in bytes(alert_a.comment)
    assert "Alerte acquittée" in page
    acknowledged = page.split("Alertes acquittées", 1)[1]
    assert "dora" in acknowledged and comment in acknowledged
    assert "Aucune alerte ouverte" in page

    manager_page = text(client_for("marc").get("/alertes/"))
    assert "dora" in manager_page and comment not in manager_page


def test_an_alert_links_to_the_record_only_for_a_patient_of_this_lab(
        people, lab_a, actor_a, actor_b):
    ours = create_patient(actor_a, patient_row())
    theirs = create_patient(actor_b, patient_row(email="b@example.org"))
    canary_count = planting.plant(lab_a.id, 1, actor_a)
    assert canary_count == 1
    canary = next(iter(canaries.canary_ids()))
    for pid in (ours.id, theirs.id, canary):
        alerts.raise_alert(lab_a.id, AlertKind.CANARY, "eve", "test", patient_id=pid)
    page = text(client_for("dora").get("/alertes/"))
    assert f"/patients/{ours.id}/" in page
    assert f"/patients/{theirs.id}/" not in page
    assert f"/patients/{canary}/" not in page


# --- unlocking -------------------------------------------------------------------------

@pytest.fixture
def eve_locked(lab_a):
    eve = member("eve", lab_a, Role.SECRETARY)
    eve.is_active = False
    eve.save()
    return AccountLock.objects.create(person="eve", lab_id=lab_a.id,
                                      reason="151 patients distincts lus en 10 minutes")


def test_a_lab_manager_unlocks_a_locked_account(people, eve_locked):
    marc = client_for("marc")
    page = text(marc.get("/alertes/"))
    assert "Comptes verrouillés" in page and "Déverrouiller" in page
    page = text(marc.post(f"/alertes/verrous/{eve_locked.pk}/deverrouiller/", follow=True))
    eve_locked.refresh_from_db()
    assert eve_locked.unlocked_by == "marc" and eve_locked.unlocked_at is not None
    assert get_user_model().objects.get(username="eve").is_active
    assert "Aucun compte verrouillé" in page
    assert client_for("eve").get("/patients/").status_code == 200


def test_the_dpo_cannot_unlock_an_account(people, eve_locked):
    dora = client_for("dora")
    assert "Déverrouiller" not in text(dora.get("/alertes/"))
    response = dora.post(f"/alertes/verrous/{eve_locked.pk}/deverrouiller/")
    assert response.status_code == 403
    eve_locked.refresh_from_db()
    assert eve_locked.unlocked_at is None
    assert not get_user_model().objects.get(username="eve").is_active


def test_a_manager_of_another_lab_cannot_unlock_it(people, eve_locked):
    response = client_for("berthe").post(f"/alertes/verrous/{eve_locked.pk}/deverrouiller/")
    assert response.status_code == 404
    eve_locked.refresh_from_db()
    assert eve_locked.unlocked_at is None


# --- break-the-glass -------------------------------------------------------------------

def break_glass_search(client: Client, reason: str = REASON, **criteria: str):
    data = {f"bg-{name}": value for name, value in criteria.items()}
    return client.post("/patients/bris-de-glace/", {"bg-reason": reason, **data})


def test_the_break_glass_section_is_offered_only_to_a_lab_of_a_group(people, sister_lab):
    assert "bris de glace" in text(client_for("alice").get("/patients/"))
    assert "bris de glace" not in text(client_for("bruno").get("/patients/"))


def test_break_glass_needs_a_written_reason(people, sister_patient):
    alice = client_for("alice")
    for reason in ("", "urgent"):
        page = text(break_glass_search(alice, reason, email="claire.lefevre@example.fr"))
        assert "motif" in page.lower()
        assert f"/patients/{sister_patient.id}/bris-de-glace/" not in page
    assert not AccessEvent.objects.filter(outcome="break_glass").exists()
    assert alice.get(f"/patients/{sister_patient.id}/bris-de-glace/").status_code == 404


def test_a_break_glass_search_finds_a_group_patient_and_opens_it_with_a_banner(
        people, sister_patient):
    alice = client_for("alice")
    page = text(break_glass_search(alice, email="claire.lefevre@example.fr"))
    link = f"/patients/{sister_patient.id}/bris-de-glace/"
    assert link in page and "Laboratoire Sœur" in page

    for _ in range(2):
        record = text(alice.get(link))
        assert "Accès exceptionnel (bris de glace)" in record and "LEFÈVRE" in record
    reads = AccessEvent.objects.filter(patient_id=sister_patient.id, action="read",
                                       outcome="break_glass")
    assert reads.count() == 2
    assert Alert.objects.filter(kind=AlertKind.BREAK_GLASS,
                                patient_id=sister_patient.id).count() == 3


def test_a_patient_of_a_lab_outside_the_group_is_never_reachable(
        people, sister_patient, actor_b, lab_a):
    theirs = create_patient(actor_b, patient_row(email="b@example.org"))
    alice = client_for("alice")
    page = text(break_glass_search(alice, email="b@example.org"))
    assert str(theirs.id) not in page and "Aucun patient trouvé dans le groupe" in page
    assert alice.get(f"/patients/{theirs.id}/bris-de-glace/").status_code == 404

    # Even a grant written into the session by hand does not open it.
    session = alice.session
    grants.grant(session, lab_a.id, [theirs.id], REASON)
    session.save()
    assert alice.get(f"/patients/{theirs.id}/bris-de-glace/").status_code == 404


def test_a_grant_expires_after_fifteen_minutes_and_belongs_to_its_lab(lab_a, sister_patient):
    session: dict = {}
    now = time.time()
    grants.grant(session, lab_a.id, [sister_patient.id], REASON, now=now)
    assert grants.granted_reason(session, lab_a.id, sister_patient.id, now=now) == REASON
    assert grants.granted_reason(session, lab_a.id + 1, sister_patient.id, now=now) is None
    later = now + grants.GRANT_SECONDS + 1
    assert grants.granted_reason(session, lab_a.id, sister_patient.id, now=later) is None


def test_the_reason_is_not_kept_in_clear_in_the_session_table(people, sister_patient):
    alice = client_for("alice")
    break_glass_search(alice, email="claire.lefevre@example.fr")
    stored = " ".join(s.session_data for s in Session.objects.all())
    decoded = " ".join(str(s.get_decoded()) for s in Session.objects.all())
    assert "urgences" not in stored and "urgences" not in decoded


def test_the_alerts_page_and_the_history_are_available_in_english(people, alert_a, actor_a):
    dora = client_for("dora")
    page = text(dora.get("/alertes/", HTTP_ACCEPT_LANGUAGE="en"))
    assert "Mass reading" in page and "Acknowledge" in page and "Acquitter" not in page
    patient = create_patient(actor_a, patient_row())
    record = text(dora.get(f"/patients/{patient.id}/", HTTP_ACCEPT_LANGUAGE="en"))
    assert "Access log" in record and "creation" in record
