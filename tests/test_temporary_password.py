"""Temporary passwords (a manager's new account, a prescriber's account): the first
login must set a password of one's own before any other page, the second-factor
enrollment included; only a change the password policy accepts clears the mark."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from coffre.accounts import managing, mfa, temporary
from coffre.accounts.models import Role, TemporaryPassword, TotpDevice
from coffre.tenancy.actors import Actor
from tests.conftest import STAFF_PASSWORD, member

pytestmark = pytest.mark.django_db
CHANGE = "/compte/mot-de-passe/"
OWN = "une phrase de passe bien à moi 2026"


@pytest.fixture
def manager(lab_a) -> Actor:
    member("martine.leroux", lab_a, Role.LAB_MANAGER)
    return Actor("martine.leroux", lab_a.id, Role.LAB_MANAGER, "web")


@pytest.fixture
def newcomer(manager):
    """A staff account a manager just made: (username, temporary password)."""
    created = managing.do_create_account(manager, "jean.dupont", "Jean", "Dupont",
                                         Role.SECRETARY)
    return created.membership.user.username, created.password


def login(username: str, password: str) -> Client:
    client = Client()
    response = client.post("/connexion/", {"username": username, "password": password})
    assert response.status_code == 302
    return client


def change(client: Client, old: str, new: str):
    return client.post(CHANGE, {"old_password": old, "new_password1": new,
                                "new_password2": new})


def test_the_temporary_password_must_be_replaced_before_anything_else(newcomer):
    """The attack: the manager (or whoever saw the password on the screen) logs in with
    it and enrolls their own authenticator, or simply goes on using it."""
    username, password = newcomer
    client = login(username, password)
    assert client.get("/", follow=True).redirect_chain[-1][0] == CHANGE
    for url in ("/patients/", "/laboratoire/", "/connexion/activation-2fa/",
                "/laboratoire/comptes/", "/prescripteur/", "/portail/"):
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, CHANGE), url
    # The enrollment cannot be confirmed with the temporary password alone.
    enrolled = client.post("/connexion/activation-2fa/", {"code": "123456"})
    assert enrolled["Location"] == CHANGE
    assert not TotpDevice.objects.exists()
    page = client.get(CHANGE)
    assert page.status_code == 200 and "provisoire" in page.content.decode()

    # The same password again, or a weak one, is refused and the mark stays.
    same = change(client, password, password)
    assert same.status_code == 200 and "différent" in same.content.decode()
    weak = change(client, password, "azerty123")
    assert weak.status_code == 200
    assert client.get("/patients/")["Location"] == CHANGE
    assert TemporaryPassword.objects.filter(user__username=username).exists()
    # Logging in again does not shake it off.
    client = login(username, password)
    assert client.get("/patients/")["Location"] == CHANGE

    done = change(client, password, OWN)
    assert done.status_code == 302
    assert not TemporaryPassword.objects.exists()
    # Now the second factor: enrollment comes next.
    assert client.get("/patients/")["Location"].startswith("/connexion/activation-2fa/")
    assert login(username, OWN).get("/patients/")["Location"].startswith(
        "/connexion/activation-2fa/")


def test_the_mark_is_set_with_the_account_and_names_who_issued_it(newcomer):
    username, _ = newcomer
    mark = TemporaryPassword.objects.get(user__username=username)
    assert mark.issued_by == "martine.leroux"


def test_a_prescribers_temporary_password_is_replaced_first_too(db):
    from coffre.portal import prescriber
    from tests.lab_helpers import PRESCRIBER_RPPS

    account, password = prescriber.add_prescriber(PRESCRIBER_RPPS, "dr.bernard")
    assert temporary.is_marked(account.user)
    client = login("dr.bernard", password)
    for url in ("/prescripteur/", "/connexion/activation-2fa/"):
        assert client.get(url)["Location"] == CHANGE
    assert change(client, password, OWN).status_code == 302
    assert client.get("/prescripteur/")["Location"].startswith("/connexion/activation-2fa/")


def test_an_enrolled_person_types_the_code_before_replacing_the_password(lab_a):
    """A password handed out again to someone who has an authenticator: the temporary
    password alone neither opens a page nor changes the password."""
    user = member("anne.reset", lab_a, Role.SECRETARY)
    secret = mfa.enroll_confirmed(user)
    temporary.mark(user, issued_by="martine.leroux")
    client = login("anne.reset", STAFF_PASSWORD)
    assert client.get("/patients/")["Location"] == CHANGE
    refused = change(client, STAFF_PASSWORD, OWN)
    assert refused["Location"].startswith("/connexion/code/")
    assert get_user_model().objects.get(pk=user.pk).check_password(STAFF_PASSWORD)
    assert client.post("/connexion/code/", {"code": mfa.current_code(secret),
                                            "next": CHANGE})["Location"] == CHANGE
    assert client.get("/patients/")["Location"] == CHANGE  # code done, password not yet
    assert change(client, STAFF_PASSWORD, OWN).status_code == 302
    assert client.get("/patients/").status_code == 200


def test_logout_stays_open_to_a_session_with_a_temporary_password(newcomer):
    username, password = newcomer
    client = login(username, password)
    assert client.post("/deconnexion/").status_code == 302
    assert "_auth_user_id" not in client.session


def test_an_account_of_ones_own_choice_is_never_marked(lab_a, client):
    client.force_login(member("alice", lab_a, Role.SECRETARY))
    assert client.get("/patients/")["Location"].startswith("/connexion/activation-2fa/")


def test_the_demo_logins_are_not_forced_to_change_but_a_new_prescriber_is(
        tmp_path_factory):
    from tests.cli_helpers import demo_installation
    from tests.test_lab_cli import query

    with demo_installation(tmp_path_factory) as cli:
        assert re.search(r"prescriber portal: dr\.bernard / \S+", cli.demo_output)
        assert query(cli, "SELECT COUNT(*) FROM accounts_temporarypassword") == [(0,)]
        assert query(cli, "SELECT COUNT(*) FROM auth_user")[0][0] >= 7
        cli.run("prescriber", "add", "--rpps", "10000000108", "--username", "dr.neuf")
        assert query(cli, "SELECT u.username FROM accounts_temporarypassword t "
                          "JOIN auth_user u ON u.id = t.user_id") == [("dr.neuf",)]


def test_the_migration_marks_handed_passwords_never_used(lab_a):
    """Accounts made before the mark existed: a staff or prescriber account that never
    logged in still has the password someone else chose; one that did log in, or a
    patient's own account, does not."""
    import importlib

    from django.apps import apps
    from django.utils import timezone

    from coffre.portal import prescriber
    from tests.lab_helpers import PRESCRIBER_RPPS

    migration = importlib.import_module("coffre.accounts.migrations.0005_temporary_password")
    unused = member("jean.unused", lab_a, Role.SECRETARY)
    used = member("anne.used", lab_a, Role.SECRETARY)
    used.last_login = timezone.now()
    used.save()
    doctor, _ = prescriber.add_prescriber(PRESCRIBER_RPPS, "dr.unused")
    get_user_model().objects.create_user("claire.patient", password=STAFF_PASSWORD)
    TemporaryPassword.objects.all().delete()
    migration.mark_unused_handed_passwords(apps, None)
    assert set(TemporaryPassword.objects.values_list("user__username", flat=True)) == {
        "jean.unused", "dr.unused"}
    assert not temporary.is_marked(used) and temporary.is_marked(unused)
    assert temporary.is_marked(doctor.user)
