"""A person who works for two labs: a manager of one lab cannot change their access to
the other. The second-factor reset (which ends every session), the login-lock release
and the reactivation are person-wide: each is made only once a manager of each of the
person's labs has asked for it; alone, it is a recorded request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from coffre.accounts import managing, mfa
from coffre.accounts.models import Membership, PersonWideRequest, Role, TotpDevice
from coffre.audit import log
from coffre.audit.models import AccessEvent
from coffre.tenancy.actors import Actor
from tests.conftest import STAFF_PASSWORD, member, second_factor_done
from tests.test_manager_pages import lock_login

pytestmark = pytest.mark.django_db
URL = "/laboratoire/comptes/"


@pytest.fixture
def people(lab_a, lab_b):
    """Léna works for lab A (secretary) and lab B (technician); each lab has a manager."""
    lena = member("lena.caradec", lab_a, Role.SECRETARY)
    Membership.objects.create(user=lena, lab=lab_b, role=Role.TECHNICIAN)
    return {"lena": lena,
            "manager_a": member("martine.leroux", lab_a, Role.LAB_MANAGER),
            "manager_b": member("yves.kerouac", lab_b, Role.LAB_MANAGER)}


@pytest.fixture
def managers(people, lab_a, lab_b) -> tuple[Actor, Actor]:
    return (Actor("martine.leroux", lab_a.id, Role.LAB_MANAGER, "web"),
            Actor("yves.kerouac", lab_b.id, Role.LAB_MANAGER, "web"))


def membership(user, lab) -> int:
    return Membership.objects.get(user=user, lab=lab).pk


def logged_in(user, lab=None) -> Client:
    client = Client()
    client.force_login(user)
    second_factor_done(client)
    if lab is not None:
        session = client.session
        session["acting_lab_id"] = lab.id
        session.save()
    return client


def test_lab_a_manager_alone_cannot_reset_the_second_factor_she_uses_in_lab_b(
        people, managers, lab_a, lab_b):
    """The attack: lab A's manager resets Léna's authenticator (and ends her sessions),
    so that whoever holds her password enrolls a new one and reads lab B's patients."""
    lena = people["lena"]
    mfa.enroll_confirmed(lena)
    in_lab_b = logged_in(lena, lab_b)
    manager_a, manager_b = managers

    assert managing.do_reset_second_factor(manager_a, membership(lena, lab_a)) is False
    assert TotpDevice.objects.filter(user=lena, confirmed=True).exists()
    assert in_lab_b.get("/patients/").status_code == 200  # her lab B session goes on
    entry = AccessEvent.objects.get(action="mfa_reset")
    assert (entry.person, entry.lab_id, entry.outcome) == ("martine.leroux", lab_a.id,
                                                           "pending")
    assert "lena.caradec" in log.open_text(entry.purpose, "purpose")

    # Lab B's manager asks too: now it is done, everywhere.
    assert managing.do_reset_second_factor(manager_b, membership(lena, lab_b)) is True
    assert not TotpDevice.objects.filter(user=lena).exists()
    assert in_lab_b.get("/patients/").status_code == 302
    assert not PersonWideRequest.objects.exists()
    assert AccessEvent.objects.filter(action="mfa_reset", outcome="ok",
                                      lab_id=lab_b.id).exists()


def test_the_page_says_the_request_waits_and_the_other_manager_sees_it(
        people, lab_a, lab_b):
    lena = people["lena"]
    mfa.enroll_confirmed(lena)
    page_a = logged_in(people["manager_a"]).post(
        f"{URL}{membership(lena, lab_a)}/", {"action": "reset_mfa"}, follow=True)
    body = page_a.content.decode()
    assert "Demande enregistrée" in body and "travaille aussi pour un autre" in body
    assert "En attente du responsable de ses autres laboratoires" in body
    assert "Laboratoire B" not in body  # the other lab is not named to lab A
    assert TotpDevice.objects.filter(user=lena).exists()

    page_b = logged_in(people["manager_b"]).get(URL).content.decode()
    assert "Demandé par le responsable d'un autre de ses laboratoires" in page_b
    assert "réinitialisation de la double authentification" in page_b
    done = logged_in(people["manager_b"]).post(
        f"{URL}{membership(lena, lab_b)}/", {"action": "reset_mfa"}, follow=True)
    assert "Double authentification réinitialisée" in done.content.decode()
    assert not TotpDevice.objects.filter(user=lena).exists()


def test_a_login_lock_is_lifted_only_with_both_managers(people, managers, lab_a, lab_b):
    lena = people["lena"]
    manager_a, manager_b = managers
    lock_login("lena.caradec")
    assert managing.do_clear_login_lock(manager_a, membership(lena, lab_a)) is False
    refused = Client().post("/connexion/", {"username": "lena.caradec",
                                            "password": STAFF_PASSWORD})
    assert refused.status_code == 429
    assert managing.do_clear_login_lock(manager_b, membership(lena, lab_b)) is True
    assert Client().post("/connexion/", {"username": "lena.caradec",
                                         "password": STAFF_PASSWORD}).status_code == 302


def test_a_lapsed_request_does_not_count(people, managers, lab_a, lab_b):
    lena = people["lena"]
    mfa.enroll_confirmed(lena)
    manager_a, manager_b = managers
    managing.do_reset_second_factor(manager_a, membership(lena, lab_a))
    PersonWideRequest.objects.update(at=timezone.now() - timedelta(hours=25))
    assert managing.do_reset_second_factor(manager_b, membership(lena, lab_b)) is False
    assert TotpDevice.objects.filter(user=lena).exists()
    # A login-lock request lapses with the lock it was about (the cool-off).
    lock_login("lena.caradec")
    managing.do_clear_login_lock(manager_a, membership(lena, lab_a))
    PersonWideRequest.objects.filter(action="login_unlock").update(
        at=timezone.now() - timedelta(minutes=16))
    assert managing.do_clear_login_lock(manager_b, membership(lena, lab_b)) is False


def test_reactivation_reaches_every_lab_and_needs_both_managers(
        people, managers, lab_a, lab_b):
    lena = people["lena"]
    manager_a, manager_b = managers
    get_user_model().objects.filter(pk=lena.pk).update(is_active=False)
    assert managing.do_reactivate(manager_a, membership(lena, lab_a)) is False
    assert not get_user_model().objects.get(pk=lena.pk).is_active
    assert managing.do_reactivate(manager_b, membership(lena, lab_b)) is True
    assert get_user_model().objects.get(pk=lena.pk).is_active


def test_a_person_of_one_lab_only_is_changed_at_once(people, managers, lab_a):
    sophie = member("sophie.morel", lab_a, Role.SECRETARY)
    mfa.enroll_confirmed(sophie)
    assert managing.do_reset_second_factor(managers[0], membership(sophie, lab_a)) is True
    assert not TotpDevice.objects.filter(user=sophie).exists()
    assert not PersonWideRequest.objects.exists()


def test_what_stays_within_the_lab_is_changed_at_once(people, managers, lab_a, lab_b):
    """A role and a membership are the lab's own: no other lab's agreement is needed,
    and the person keeps their access to lab B."""
    lena = people["lena"]
    manager_a, _ = managers
    managing.do_change_role(manager_a, membership(lena, lab_a), Role.BIOLOGIST)
    assert Membership.objects.get(user=lena, lab=lab_a).role == Role.BIOLOGIST
    in_lab_b = logged_in(lena, lab_b)
    managing.do_remove_membership(manager_a, membership(lena, lab_a))
    assert list(Membership.objects.filter(user=lena).values_list("lab_id", flat=True)) == [
        lab_b.id]
    assert in_lab_b.get("/patients/").status_code == 200
    with pytest.raises(managing.NoSuchMembership):
        managing.do_reset_second_factor(manager_a, membership(lena, lab_b))
