"""Guessing the second factor: someone who has the password tries codes. Wrong codes and
wrong recovery codes are failed authentications of the account, across sessions, and
from the address: they lock the logins exactly as wrong passwords do, are in the access
log, and alert the data-protection officer of each of the person's labs."""

from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt
from django.core import mail
from django.test import Client

from coffre.accounts import managing, mfa
from coffre.accounts.locks import login_locks
from coffre.accounts.models import Membership, Role
from coffre.audit.models import AccessEvent, Alert, AlertKind
from coffre.tenancy.actors import Actor
from tests.conftest import STAFF_PASSWORD, member

pytestmark = pytest.mark.django_db
ADDRESS = "10.0.0.7"


@pytest.fixture
def alice(lab_a):
    user = member("alice", lab_a, Role.SECRETARY)
    user.secret = mfa.enroll_confirmed(user)
    return user


@pytest.fixture
def dpo_a(lab_a):
    user = member("dpo.a", lab_a, Role.DPO)
    user.email = "dpo.a@example.org"
    user.save()
    return user


def password_login(username: str, address: str = ADDRESS) -> Client:
    """A new session past the password, second factor pending."""
    client = Client(REMOTE_ADDR=address)
    response = client.post("/connexion/", {"username": username, "password": STAFF_PASSWORD})
    assert response.status_code == 302, response.status_code
    return client


def wrong(secret: str, offset: int = 0) -> str:
    """A code that is none of the three the server accepts now (previous, current, next
    step)."""
    accepted = {mfa.current_code(secret, at) for at in _steps()}
    candidate = int(mfa.current_code(secret)) + 7 + offset
    while f"{candidate % 10**6:06d}" in accepted:
        candidate += 1
    return f"{candidate % 10**6:06d}"


def _steps() -> list[float]:
    import time

    now = time.time()
    return [now - 30, now, now + 30]


def test_codes_guessed_over_several_sessions_lock_the_account(alice, dpo_a, lab_a):
    """The attack: two guesses per session, a fresh password login for the next two.
    Before, each session started a new count and nothing ever locked."""
    tries = 0
    early = password_login("alice")  # a pending session opened before the lock
    for _ in range(2):
        client = password_login("alice")
        for _ in range(2):
            page = client.post("/connexion/code/", {"code": wrong(alice.secret, tries)})
            tries += 1
            assert page.status_code == 200 and "Code incorrect" in page.content.decode()
    client = password_login("alice")
    locked = client.post("/connexion/code/", {"code": wrong(alice.secret, tries)})
    assert locked.status_code == 429
    assert "Connexion bloquée" in locked.content.decode()
    assert "_auth_user_id" not in client.session  # the session is over

    # The right password no longer logs in, from any address: the account's lock.
    assert Client(REMOTE_ADDR=ADDRESS).post("/connexion/", {
        "username": "alice", "password": STAFF_PASSWORD}).status_code == 429
    assert Client(REMOTE_ADDR="10.9.9.9").post("/connexion/", {
        "username": "alice", "password": STAFF_PASSWORD}).status_code == 429
    # A session opened before the lock gets no more tries, not even the right code.
    refused = early.post("/connexion/code/", {"code": mfa.current_code(alice.secret)})
    assert refused.status_code == 429 and "_auth_user_id" not in early.session
    assert early.get("/patients/").status_code == 302

    # The manager sees the lock in the same list as a password lock.
    assert [(lock.username, lock.failures) for lock in login_locks(lab_a.id)] == [
        ("alice", 5)]
    # The access log has each wrong code and the lock, in alice's lab.
    entries = list(AccessEvent.objects.filter(person="alice", kind="account")
                   .values_list("action", "outcome", "lab_id", "address"))
    assert entries == [("second_factor", "wrong_code", lab_a.id, ADDRESS)] * 5 + [
        ("login_locked", "locked", lab_a.id, ADDRESS)]
    # The lab's DPO is alerted, on the alerts page and by mail.
    alert = Alert.objects.get(kind=AlertKind.SECOND_FACTOR)
    assert (alert.lab_id, alert.person) == (lab_a.id, "alice")
    assert ADDRESS in alert.summary
    assert [message.to for message in mail.outbox] == [["dpo.a@example.org"]]
    # No code typed is kept in axes' records of the attempts.
    kept = "".join(AccessAttempt.objects.values_list("post_data", flat=True))
    assert "code=" in kept and not re.search(r"\d{6}", kept)


def test_wrong_recovery_codes_count_the_same_way(alice, lab_a):
    mfa._new_recovery_codes(alice)
    client = password_login("alice")
    for attempt in range(4):
        page = client.post("/connexion/code/", {"code": f"abcde-fghj{attempt + 2}"})
        assert page.status_code == 200
    client = password_login("alice")
    assert client.post("/connexion/code/", {"code": "zzzzz-zzzzz"}).status_code == 429
    assert [lock.username for lock in login_locks(lab_a.id)] == ["alice"]


def test_wrong_codes_and_wrong_passwords_share_the_account_count(alice):
    for _ in range(3):
        Client(REMOTE_ADDR=ADDRESS).post("/connexion/", {"username": "alice",
                                                         "password": "wrong"})
    client = password_login("alice")
    assert client.post("/connexion/code/", {"code": wrong(alice.secret)}).status_code == 200
    assert client.post("/connexion/code/", {"code": wrong(alice.secret, 1)}).status_code == 429


def test_one_address_guessing_codes_of_many_accounts_is_locked(lab_a):
    """Four wrong codes on each of five accounts (below each account's limit) reach the
    address's limit of 20: that address is locked out, others are not."""
    people = {f"agent{n}": member(f"agent{n}", lab_a, Role.SECRETARY) for n in range(6)}
    secrets = {name: mfa.enroll_confirmed(user) for name, user in people.items()}
    statuses = []
    for name in list(people)[:5]:
        client = password_login(name)
        for attempt in range(4):
            statuses.append(client.post("/connexion/code/", {
                "code": wrong(secrets[name], attempt)}).status_code)
    assert statuses == [200] * 19 + [429]
    assert Client(REMOTE_ADDR=ADDRESS).post("/connexion/", {
        "username": "agent5", "password": STAFF_PASSWORD}).status_code == 429
    elsewhere = password_login("agent5", address="10.0.0.8")
    assert elsewhere.post("/connexion/code/", {
        "code": mfa.current_code(secrets["agent5"])}).status_code == 302


def test_the_dpo_of_each_of_the_persons_labs_is_alerted(alice, dpo_a, lab_a, lab_b):
    Membership.objects.create(user=alice, lab=lab_b, role=Role.TECHNICIAN)
    dpo_b = member("dpo.b", lab_b, Role.DPO)
    dpo_b.email = "dpo.b@example.org"
    dpo_b.save()
    client = password_login("alice")
    for attempt in range(5):
        client.post("/connexion/code/", {"code": wrong(alice.secret, attempt)})
    assert set(Alert.objects.filter(kind=AlertKind.SECOND_FACTOR, person="alice")
               .values_list("lab_id", flat=True)) == {lab_a.id, lab_b.id}
    assert sorted(message.to[0] for message in mail.outbox) == [
        "dpo.a@example.org", "dpo.b@example.org"]
    assert set(AccessEvent.objects.filter(person="alice", action="login_locked")
               .values_list("lab_id", flat=True)) == {lab_a.id, lab_b.id}


def test_the_manager_releases_the_lock_and_the_right_code_works_again(alice, lab_a):
    member("martine.leroux", lab_a, Role.LAB_MANAGER)
    manager = Actor("martine.leroux", lab_a.id, Role.LAB_MANAGER, "web")
    client = password_login("alice")
    for attempt in range(5):
        client.post("/connexion/code/", {"code": wrong(alice.secret, attempt)})
    rows = {row.username: row for row in managing.lab_members(manager)}
    assert rows["alice"].login_lock is not None
    managing.do_clear_login_lock(manager, Membership.objects.get(user=alice).pk)
    client = password_login("alice")
    assert client.post("/connexion/code/", {
        "code": mfa.current_code(alice.secret)}).status_code == 302
    assert client.get("/patients/").status_code == 200


def test_a_right_code_after_a_few_wrong_ones_passes(alice):
    client = password_login("alice")
    for attempt in range(3):
        assert client.post("/connexion/code/", {
            "code": wrong(alice.secret, attempt)}).status_code == 200
    assert client.post("/connexion/code/", {
        "code": mfa.current_code(alice.secret)}).status_code == 302


def test_a_prescribers_codes_lock_the_account_too(db):
    from coffre.portal import prescriber
    from tests.conftest import own_password
    from tests.lab_helpers import PRESCRIBER_RPPS

    account, _ = prescriber.add_prescriber(PRESCRIBER_RPPS, "dr.bernard")
    own_password(account.user)
    secret = mfa.enroll_confirmed(account.user)
    client = password_login("dr.bernard")
    statuses = [client.post("/connexion/code/", {"code": wrong(secret, n)}).status_code
                for n in range(5)]
    assert statuses == [200] * 4 + [429]
    assert Client(REMOTE_ADDR="10.9.9.9").post("/connexion/", {
        "username": "dr.bernard", "password": STAFF_PASSWORD}).status_code == 429
    alert = Alert.objects.get(kind=AlertKind.SECOND_FACTOR)
    assert (alert.person, alert.lab_id) == ("dr.bernard", None)
    assert AccessEvent.objects.filter(person="dr.bernard", action="second_factor",
                                      role="prescriber").count() == 5


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_parallel_guesses_gets_no_more_tries_than_the_limit(lab_a):
    """The attack, in parallel: 16 sessions past the password each send a wrong code at
    the same moment, hoping to all pass the lock check before the failures are counted.
    Attempts of one person run one at a time: 4 are answered "wrong", the 5th locks, the
    rest are refused without being checked."""
    import threading

    from django.db import connection

    user = member("alice", lab_a, Role.SECRETARY)
    secret = mfa.enroll_confirmed(user)
    clients = [password_login("alice") for _ in range(16)]
    start = threading.Barrier(len(clients))
    statuses: list[int] = []

    def guess(client: Client, n: int) -> None:
        try:
            start.wait()
            statuses.append(client.post("/connexion/code/", {
                "code": wrong(secret, n)}).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(client, n))
               for n, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * 4 + [429] * 12
    assert sum(AccessAttempt.objects.values_list("failures_since_start", flat=True)) == 5
