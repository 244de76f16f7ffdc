"""The lab manager's accounts page: members, creation, role, removal, deactivation,
second-factor reset and login-lock clearing, all within the manager's own lab."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from coffre.accounts import managing, mfa, sessions
from coffre.accounts.models import Membership, RecoveryCode, Role, TotpDevice
from coffre.accounts.passwords import password_problems
from coffre.audit import log
from coffre.audit.models import AccessEvent, AccountLock
from coffre.tenancy.actors import Actor
from tests.conftest import STAFF_PASSWORD, member, second_factor_done

pytestmark = pytest.mark.django_db
URL = "/laboratoire/comptes/"


@pytest.fixture
def team(lab_a, lab_b):
    """A manager, a secretary and a biologist of lab A; a secretary of lab B."""
    return {"manager": member("martine.leroux", lab_a, Role.LAB_MANAGER),
            "secretary": member("sophie.morel", lab_a, Role.SECRETARY),
            "biologist": member("paul.girard", lab_a, Role.BIOLOGIST),
            "outsider": member("bernard.le-goff", lab_b, Role.SECRETARY)}


@pytest.fixture
def manager(team, lab_a) -> Actor:
    return Actor("martine.leroux", lab_a.id, Role.LAB_MANAGER, "web")


def membership_of(user) -> Membership:
    return Membership.objects.get(user=user)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    second_factor_done(client)
    return client


def account_entries() -> list[tuple[str, str, str]]:
    return [(e.action, e.person, log.open_text(e.purpose, "purpose"))
            for e in AccessEvent.objects.filter(kind="account")]


def lock_login(username: str, failures: int = 5) -> None:
    AccessAttempt.objects.create(username=username, ip_address="10.0.0.9", user_agent="t",
                                 failures_since_start=failures, attempt_time=timezone.now(),
                                 get_data="", post_data="", http_accept="", path_info="")


# --- the list ------------------------------------------------------------------------

def test_it_lists_the_labs_members_with_their_state(team, manager, lab_a):
    mfa.enroll_confirmed(team["biologist"])
    lock_login("sophie.morel")
    AccountLock.objects.create(person="paul.girard", lab_id=lab_a.id, reason="151 lus")
    rows = {row.username: row for row in managing.lab_members(manager)}
    assert set(rows) == {"martine.leroux", "sophie.morel", "paul.girard"}
    assert rows["paul.girard"].second_factor and not rows["sophie.morel"].second_factor
    assert rows["sophie.morel"].login_lock.failures == 5
    assert rows["paul.girard"].reading_lock is not None
    assert rows["martine.leroux"].login_lock is None and rows["martine.leroux"].active


def test_the_page_shows_members_and_locks_but_nothing_of_another_lab(team, lab_a, lab_b):
    lock_login("sophie.morel")
    lock = AccountLock.objects.create(person="paul.girard", lab_id=lab_a.id, reason="x")
    page = logged_in(team["manager"]).get(URL)
    assert page.status_code == 200
    body = page.content.decode()
    assert "sophie.morel" in body and "paul.girard" in body
    assert "Connexion bloquée" in body
    assert f"/alertes/verrous/{lock.pk}/deverrouiller/" in body
    assert "bernard.le-goff" not in body


def test_other_roles_are_refused_the_page(team):
    for who in ("secretary", "biologist"):
        assert logged_in(team[who]).get(URL).status_code == 403
    membership = membership_of(team["secretary"])
    response = logged_in(team["biologist"]).post(f"{URL}{membership.pk}/",
                                                 {"action": "deactivate"})
    assert response.status_code == 403
    assert get_user_model().objects.get(username="sophie.morel").is_active


def test_the_services_refuse_an_actor_who_is_not_a_manager(team, lab_a):
    secretary = Actor("sophie.morel", lab_a.id, Role.SECRETARY, "web")
    with pytest.raises(managing.NotAllowed):
        managing.lab_members(secretary)
    with pytest.raises(managing.NotAllowed):
        managing.do_create_account(secretary, "jean.dupont", "Jean", "Dupont",
                                   Role.SECRETARY)


# --- another lab, one's own account ---------------------------------------------------

def test_a_membership_of_another_lab_is_not_found(team, manager):
    other = membership_of(team["outsider"])
    for change in (managing.do_deactivate, managing.do_remove_membership,
                   managing.do_reset_second_factor, managing.do_clear_login_lock):
        with pytest.raises(managing.NoSuchMembership):
            change(manager, other.pk)
    with pytest.raises(managing.NoSuchMembership):
        managing.do_change_role(manager, other.pk, Role.BIOLOGIST)
    client = logged_in(team["manager"])
    for action in ("deactivate", "remove", "reset_mfa", "clear_login_lock", "role"):
        response = client.post(f"{URL}{other.pk}/", {"action": action, "role": "biologist"})
        assert response.status_code == 404
        assert "bernard.le-goff" not in response.content.decode()
    other.refresh_from_db()
    assert other.role == Role.SECRETARY and other.user.is_active


def test_a_manager_cannot_change_their_own_account(team, manager):
    own = membership_of(team["manager"])
    for change in (managing.do_deactivate, managing.do_remove_membership,
                   managing.do_reset_second_factor):
        with pytest.raises(managing.OwnAccount):
            change(manager, own.pk)
    with pytest.raises(managing.OwnAccount):
        managing.do_change_role(manager, own.pk, Role.SECRETARY)
    response = logged_in(team["manager"]).post(f"{URL}{own.pk}/", {"action": "deactivate"},
                                               follow=True)
    assert "votre propre compte" in response.content.decode()
    assert get_user_model().objects.get(username="martine.leroux").is_active


def test_a_platform_administrator_is_out_of_a_managers_reach(team, manager, lab_a):
    admin = member("adele.admin-plateforme", lab_a, Role.PLATFORM_ADMIN)
    with pytest.raises(managing.NotAllowed):
        managing.do_deactivate(manager, membership_of(admin).pk)
    with pytest.raises(managing.BadRole):
        managing.do_change_role(manager, membership_of(team["secretary"]).pk,
                                Role.PLATFORM_ADMIN)


# --- creation --------------------------------------------------------------------------

def test_creating_an_account_gives_a_temporary_password_meeting_the_cnil_rule(
        team, manager, lab_a):
    created = managing.do_create_account(manager, "jean.dupont", "Jean", "Dupont",
                                         Role.TECHNICIAN)
    user = created.membership.user
    assert created.membership.lab_id == lab_a.id and created.membership.role == "technician"
    assert (user.first_name, user.last_name) == ("Jean", "Dupont")
    assert len(created.password) == 16
    assert password_problems(created.password, "jean.dupont", [lab_a.name]) == []
    assert user.check_password(created.password)
    assert not mfa.is_enrolled(user)  # enrolled at the first login
    assert ("account_create", "martine.leroux", "compte jean.dupont ; rôle technician") in \
        account_entries()


def test_temporary_passwords_differ_and_all_meet_the_rule():
    passwords = {managing.new_temporary_password("jean.dupont") for _ in range(50)}
    assert len(passwords) == 50
    assert all(password_problems(p, "jean.dupont") == [] for p in passwords)


def test_the_page_shows_the_password_once_and_logs_no_password(team):
    client = logged_in(team["manager"])
    response = client.post(URL, {"username": "jean.dupont", "first_name": "Jean",
                                 "last_name": "Dupont", "role": "secretary"})
    assert response.status_code == 200
    password = response.context["created"].password
    assert password in response.content.decode()
    assert password not in client.get(URL).content.decode()
    assert all(password not in str(entry) for entry in account_entries())
    raw = AccessEvent.objects.filter(kind="account").values_list("purpose", flat=True)
    assert all(password.encode() not in bytes(blob) for blob in raw)


def test_the_new_person_logs_in_replaces_the_password_and_must_enroll_the_second_factor(
        team, manager):
    created = managing.do_create_account(manager, "jean.dupont", "Jean", "Dupont",
                                         Role.SECRETARY)
    client = Client()
    response = client.post("/connexion/", {"username": "jean.dupont",
                                           "password": created.password}, follow=True)
    assert response.redirect_chain[-1][0] == "/compte/mot-de-passe/"
    own = "une phrase de passe bien à moi 2026"
    response = client.post("/compte/mot-de-passe/", {
        "old_password": created.password, "new_password1": own, "new_password2": own},
        follow=True)
    assert response.redirect_chain[-1][0].startswith("/connexion/activation-2fa/")


@pytest.mark.parametrize("username", ["accueil", "Labo", "secretariat", "admin", "test",
                                      "stagiaire", "accueil2", "labo.nord",
                                      "secrétariat-nuit", "stagiaire_2024"])
def test_a_generic_username_is_refused(team, manager, username):
    with pytest.raises(managing.GenericUsername):
        managing.do_create_account(manager, username, "Jean", "Dupont", Role.SECRETARY)
    assert not get_user_model().objects.filter(username=username).exists()


def test_the_page_refuses_a_generic_username_with_a_message(team):
    response = logged_in(team["manager"]).post(URL, {
        "username": "accueil", "first_name": "Jean", "last_name": "Dupont",
        "role": "secretary"})
    assert response.status_code == 400
    assert "Un compte par personne" in response.content.decode()
    assert not get_user_model().objects.filter(username="accueil").exists()


def test_a_personal_username_with_a_generic_looking_part_of_a_name_is_accepted(manager):
    created = managing.do_create_account(manager, "anne.testard", "Anne", "Testard",
                                         Role.SECRETARY)
    assert created.password


def test_names_and_role_are_checked(team, manager):
    with pytest.raises(ValidationError):
        managing.do_create_account(manager, "jean.dupont", "", "Dupont", Role.SECRETARY)
    with pytest.raises(managing.BadRole):
        managing.do_create_account(manager, "jean.dupont", "Jean", "Dupont",
                                   Role.PLATFORM_ADMIN)
    created = managing.do_create_account(manager, "jean.dupont", "Jean", "Dupont",
                                         Role.LAB_MANAGER)
    assert created.membership.role == Role.LAB_MANAGER


def test_a_person_of_a_sister_lab_gets_a_membership_not_a_second_account(
        team, manager, lab_a, sister_lab):
    nurse = member("lena.caradec", sister_lab, Role.TECHNICIAN)
    nurse.first_name, nurse.last_name = "Léna", "Caradec"
    nurse.save()
    created = managing.do_create_account(manager, "lena.caradec", "Lena", "Caradec",
                                         Role.SECRETARY)
    assert created.password is None
    assert created.membership.user == nurse and created.membership.lab_id == lab_a.id
    assert nurse.check_password(STAFF_PASSWORD)  # her password is unchanged
    assert Membership.objects.filter(user=nurse).count() == 2
    assert ("membership_add", "martine.leroux", "compte lena.caradec ; rôle secretary") in \
        account_entries()


def test_a_username_of_another_group_or_already_here_is_taken(team, manager, sister_lab):
    with pytest.raises(managing.UsernameTaken):  # lab B is outside lab A's group
        managing.do_create_account(manager, "bernard.le-goff", "Bernard", "Le Goff",
                                   Role.SECRETARY)
    with pytest.raises(managing.UsernameTaken):
        managing.do_create_account(manager, "Sophie.Morel", "Sophie", "Morel",
                                   Role.SECRETARY)
    member("lena.caradec", sister_lab, Role.TECHNICIAN)  # no names: not the same person
    with pytest.raises(managing.UsernameTaken):
        managing.do_create_account(manager, "lena.caradec", "Léna", "Caradec",
                                   Role.SECRETARY)
    assert not Membership.objects.filter(user__username="bernard.le-goff",
                                         lab_id=manager.lab_id).exists()


# --- changes ---------------------------------------------------------------------------

def test_changing_a_role(team, manager):
    membership = membership_of(team["secretary"])
    response = logged_in(team["manager"]).post(f"{URL}{membership.pk}/",
                                               {"action": "role", "role": "technician"})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.TECHNICIAN
    assert ("role_change", "martine.leroux", "compte sophie.morel ; secretary -> technician") \
        in account_entries()


def test_removing_a_member_who_works_nowhere_else_deactivates_the_account(team, manager):
    membership = membership_of(team["secretary"])
    client = logged_in(team["secretary"])
    managing.do_remove_membership(manager, membership.pk)
    assert not Membership.objects.filter(pk=membership.pk).exists()
    user = get_user_model().objects.get(username="sophie.morel")
    assert not user.is_active
    assert client.get("/patients/").status_code == 302  # her session is over
    assert ("membership_remove", "martine.leroux", "compte sophie.morel") in account_entries()


def test_removing_a_member_of_two_labs_keeps_the_other(team, manager, lab_a, sister_lab):
    both = member("lena.caradec", sister_lab, Role.TECHNICIAN)
    here = Membership.objects.create(user=both, lab=lab_a, role=Role.SECRETARY)
    managing.do_remove_membership(manager, here.pk)
    both.refresh_from_db()
    assert both.is_active and Membership.objects.filter(user=both).count() == 1


def test_deactivating_ends_the_sessions_and_the_logins(team, manager):
    membership = membership_of(team["secretary"])
    client = logged_in(team["secretary"])
    assert client.get("/patients/").status_code == 200
    logged_in(team["manager"]).post(f"{URL}{membership.pk}/", {"action": "deactivate"})
    assert not get_user_model().objects.get(username="sophie.morel").is_active
    assert client.get("/patients/").status_code == 302
    assert "_auth_user_id" not in Client().post(
        "/connexion/", {"username": "sophie.morel", "password": STAFF_PASSWORD}).client.session
    assert ("account_deactivate", "martine.leroux", "compte sophie.morel") in \
        account_entries()
    managing.do_reactivate(manager, membership.pk)
    assert get_user_model().objects.get(username="sophie.morel").is_active


def test_a_person_working_for_another_lab_is_removed_not_deactivated(
        team, manager, lab_a, sister_lab):
    both = member("lena.caradec", sister_lab, Role.TECHNICIAN)
    here = Membership.objects.create(user=both, lab=lab_a, role=Role.SECRETARY)
    with pytest.raises(managing.WorksElsewhere):
        managing.do_deactivate(manager, here.pk)
    assert get_user_model().objects.get(username="lena.caradec").is_active


def test_resetting_the_second_factor(team, manager):
    user = team["biologist"]
    mfa.enroll_confirmed(user)
    mfa._new_recovery_codes(user)
    client = logged_in(user)
    membership = membership_of(user)
    response = logged_in(team["manager"]).post(f"{URL}{membership.pk}/",
                                               {"action": "reset_mfa"})
    assert response.status_code == 302
    assert not TotpDevice.objects.filter(user=user).exists()
    assert not RecoveryCode.objects.filter(user=user).exists()
    assert client.get("/patients/").status_code == 302  # logged out everywhere
    assert sessions.current_epoch(user) == 1
    assert ("mfa_reset", "martine.leroux", "compte paul.girard") in account_entries()
    # the next login enrolls a new authenticator
    response = Client().post("/connexion/", {"username": "paul.girard",
                                             "password": STAFF_PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0].startswith("/connexion/activation-2fa/")


def test_clearing_a_login_lock(team, manager, lab_a):
    lock_login("sophie.morel")
    lock_login("bernard.le-goff")
    membership = membership_of(team["secretary"])
    response = logged_in(team["manager"]).post(f"{URL}{membership.pk}/",
                                               {"action": "clear_login_lock"})
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username="sophie.morel").exists()
    assert AccessAttempt.objects.filter(username="bernard.le-goff").exists()
    assert [row.login_lock for row in managing.lab_members(manager)] == [None] * 3
    assert ("login_unlock", "martine.leroux", "compte sophie.morel") in account_entries()


def test_a_locked_login_works_again_once_cleared(team, manager):
    for _ in range(5):
        Client(REMOTE_ADDR="10.0.0.1").post("/connexion/", {"username": "sophie.morel",
                                                            "password": "wrong"})
    locked = Client().post("/connexion/", {"username": "sophie.morel",
                                           "password": STAFF_PASSWORD})
    assert locked.status_code == 429
    managing.do_clear_login_lock(manager, membership_of(team["secretary"]).pk)
    assert Client().post("/connexion/", {"username": "sophie.morel",
                                         "password": STAFF_PASSWORD}).status_code == 302


def test_an_unknown_action_is_a_bad_request(team):
    membership = membership_of(team["secretary"])
    response = logged_in(team["manager"]).post(f"{URL}{membership.pk}/", {"action": "x"})
    assert response.status_code == 400


def test_the_nav_links_the_page_for_the_manager_only(team):
    assert URL in logged_in(team["manager"]).get("/patients/").content.decode()
    assert URL not in logged_in(team["secretary"]).get("/patients/").content.decode()


def test_lifting_a_mass_reading_lock_does_not_undo_a_managers_deactivation(lab_a):
    from django.contrib.auth import get_user_model

    from coffre.accounts import managing
    from coffre.accounts.models import Membership
    from coffre.audit import detection
    from coffre.audit.models import AccountLock
    from coffre.tenancy.actors import Actor
    from tests.conftest import member

    member("claire.manager", lab_a, "lab_manager")
    reader = member("paul.reader", lab_a, "secretary")
    manager = Actor("claire.manager", lab_a.id, "lab_manager", "web")
    AccountLock.objects.create(person="paul.reader", lab_id=lab_a.id, reason="test")
    managing.do_deactivate(manager, Membership.objects.get(user=reader).id)
    detection.unlock("paul.reader", manager, lab_a.id)
    assert not get_user_model().objects.get(pk=reader.pk).is_active
