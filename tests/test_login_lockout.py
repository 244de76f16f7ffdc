"""Failed logins lock an account after 5 tries, an address after 20 (django-axes)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from coffre.accounts.locks import login_locks
from coffre.accounts.models import Membership, Role

PASSWORD = "Kx7#mPq2vL9w"
pytestmark = pytest.mark.django_db


@pytest.fixture
def people(lab_a):
    users = {}
    for name in ("alice", "bob"):
        users[name] = get_user_model().objects.create_user(name, password=PASSWORD)
        Membership.objects.create(user=users[name], lab=lab_a, role=Role.SECRETARY)
    return users


def attempt(username, password, address="10.0.0.1"):
    return Client(REMOTE_ADDR=address).post(
        "/connexion/", {"username": username, "password": password})


def test_five_wrong_passwords_lock_the_account_even_with_the_right_one(people, lab_a):
    for _ in range(4):
        assert attempt("alice", "wrong").status_code == 200  # the login form again
    assert attempt("alice", "wrong").status_code == 429
    refused = attempt("alice", PASSWORD)
    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Connexion bloquée" in page and "15 minutes" in page
    assert "_auth_user_id" not in refused.client.session
    # from another address too: the lock is the account's
    assert attempt("alice", PASSWORD, address="10.0.0.2").status_code == 429
    assert [lock.username for lock in login_locks(lab_a.id)] == ["alice"]
    assert login_locks(lab_a.id)[0].failures == 5


def test_another_account_from_the_same_address_is_locked_only_after_twenty_failures(
        people, lab_a):
    for _ in range(5):
        attempt("alice", "wrong")
    assert attempt("bob", PASSWORD).status_code == 302  # logged in: 5 < 20
    for index in range(14):
        attempt(f"nobody{index % 4}", "wrong")  # 19 failures from this address
    assert attempt("bob", PASSWORD).status_code == 302
    attempt("nobody9", "wrong")  # the 20th
    assert attempt("bob", PASSWORD).status_code == 429
    assert attempt("bob", PASSWORD, address="10.0.0.2").status_code == 302
    # bob's account itself is not locked; only the members' own locks are listed
    assert [lock.username for lock in login_locks(lab_a.id)] == ["alice"]


def test_login_locks_lists_only_the_labs_members(people, lab_a, lab_b):
    for _ in range(5):
        attempt("alice", "wrong")
    assert login_locks(lab_b.id) == []
    lock = login_locks(lab_a.id)[0]
    assert lock.locked_until > lock.last_failure


def test_failures_older_than_the_cool_off_no_longer_count(people, lab_a):
    from datetime import timedelta

    from axes.models import AccessAttempt

    for _ in range(5):
        attempt("alice", "wrong")
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time
                                 - timedelta(minutes=16))
    assert login_locks(lab_a.id) == []
    assert attempt("alice", PASSWORD).status_code == 302
