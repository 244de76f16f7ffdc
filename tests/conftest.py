"""Fixtures: two labs, a person of each, and a fresh keyring for every test."""

from __future__ import annotations

import pytest

from coffre import config
from coffre.identity.french import nir_key
from coffre.keyring import services as keyring
from coffre.tenancy.actors import Actor


@pytest.fixture(scope="session", autouse=True)
def _worker_database_names(django_db_modify_db_settings):
    """Under pytest-xdist, pytest-django names each worker's test database after the
    worker (``test_coffre_gw0``, ``…/test.sqlite3_gw0``) when a test first asks for the
    database. Done first instead, before any fixture: the application role is named after
    the test database (tests/app_role.py), and a module fixture making a CLI's own
    database (tests/cli_helpers.py) can come before the first database test; without
    this, two workers would share one role and reset each other's password."""
    yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """On PostgreSQL, the suite connects as the application role once pytest-django has
    created and migrated the test database as the superuser (tests/app_role.py): row-level
    security binds every test, as it binds production's server."""
    if not config.database_url():
        yield
        return
    from tests.app_role import suite_as_app_role

    with django_db_blocker.unblock():
        undo = suite_as_app_role()
    yield
    with django_db_blocker.unblock():
        undo()


@pytest.fixture(autouse=True)
def _each_test_starts_unlimited(django_db_blocker):
    """On PostgreSQL a test starts as a new connection does: not limited to any lab.
    Without this, a test that limited its connection (rls.limit_to) hands the next one
    either that scope (committed by a transactional test) or, after the rollback, an
    empty setting (PostgreSQL keeps a placeholder once set), which the policy reads as
    "no lab". Web requests reset it the same way (rls.ScopeResetMiddleware)."""
    from tests import app_role

    if app_role.SUITE_CONNECTED:
        from coffre.tenancy import rls

        with django_db_blocker.unblock():
            rls.open_all()
    yield


def pytest_sessionfinish(session):
    if config.database_url():
        from tests.app_role import drop_app_role

        drop_app_role()


@pytest.fixture(autouse=True)
def _fresh_keyring():
    """Unwrapped keys and canary ids are cached per process; the test database is new
    each time."""
    from coffre.audit import canaries, detection

    keyring.clear_caches()
    canaries.clear_cache()
    detection.clear_caches()
    yield
    keyring.clear_caches()
    canaries.clear_cache()


@pytest.fixture(autouse=True)
def _empty_cache():
    """Rate-limit and failure counters (API calls, portal activation attempts) live in
    Django's cache, per process in tests: a test must not inherit another's counts."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _default_language():
    """Every test starts in the default language (French). A request through the test
    client leaves the language it negotiated (LocaleMiddleware activates it) active in
    the thread, so a test asking for English would turn the next test's messages, drafts
    and labels built outside a request into English."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture
def vault(db):
    keyring.initialise(expected_patients=1_000)
    return keyring


@pytest.fixture
def lab_a(vault):
    from coffre.tenancy.services import add_lab

    return add_lab("750000010", "Laboratoire A")


@pytest.fixture
def lab_b(vault):
    from coffre.tenancy.services import add_lab

    return add_lab("690000013", "Laboratoire B")


@pytest.fixture
def actor_a(lab_a) -> Actor:
    return Actor(person="alice", lab_id=lab_a.id, role="secretary", channel="web")


@pytest.fixture
def actor_b(lab_b) -> Actor:
    return Actor(person="bob", lab_id=lab_b.id, role="secretary", channel="web")


@pytest.fixture
def sister_lab(lab_a):
    """Lab A and a sister lab form a group (break-the-glass reaches it); lab B stays
    outside."""
    from coffre.tenancy.models import LabGroup
    from coffre.tenancy.services import add_lab

    group = LabGroup.objects.create(name="Groupe Ouest")
    lab_a.group = group
    lab_a.save()
    sister = add_lab("350000014", "Laboratoire Sœur")
    sister.group = group
    sister.save()
    return sister


@pytest.fixture
def sister_patient(sister_lab):
    from coffre.identity.access import create_patient

    return create_patient(Actor("carol", sister_lab.id, "secretary", "web"), patient_row())


STAFF_PASSWORD = "correct horse battery staple 42"


def member(username: str, lab, role: str):
    """A staff account (one person) with a role in a lab."""
    from django.contrib.auth import get_user_model

    from coffre.accounts.models import Membership

    user = get_user_model().objects.create_user(username, password=STAFF_PASSWORD)
    Membership.objects.create(user=user, lab=lab, role=role)
    return user


_RECOVERY_CODES: dict[bytes, list[str]] = {}  # by sealed TOTP secret: unique per device


def sign(username: str):
    """Step-up credentials of a staff account (coffre.accounts.stepup): its password and
    one of its recovery codes not used yet. An authenticator is confirmed for the account
    the first time, through the real enrollment."""
    from django.contrib.auth import get_user_model

    from coffre.accounts import mfa, stepup
    from coffre.accounts.models import TotpDevice

    user = get_user_model().objects.get(username=username)
    device = TotpDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        secret, _ = mfa.enroll(user)
        codes = mfa.confirm(user, mfa.current_code(secret))
        device = TotpDevice.objects.get(user=user)
        _RECOVERY_CODES[bytes(device.secret)] = codes
    return stepup.Credentials(username, STAFF_PASSWORD,
                              _RECOVERY_CODES[bytes(device.secret)].pop())


def own_password(user, password: str = STAFF_PASSWORD) -> None:
    """The person has replaced the temporary password they were given (a prescriber made
    by ``add_prescriber``, a manager's new account) with a password of their own."""
    from coffre.accounts.models import TemporaryPassword

    user.set_password(password)
    user.save()
    TemporaryPassword.objects.filter(user=user).delete()


def second_factor_done(client) -> None:
    """Mark a test client's logged-in session as past the second factor (the tests log
    in with ``client.login`` / ``force_login``, not through the code page)."""
    from coffre.accounts import mfa

    session = client.session
    mfa.mark_verified(session)
    session.save()


def make_nir(sex: str, year: int, month: int, place: str = "75056", serial: str = "123") -> str:
    body = f"{1 if sex == 'M' else 2}{year % 100:02d}{month:02d}{place}{serial}"
    return body + nir_key(body)


def patient_row(**overrides: str) -> dict[str, str]:
    row = {
        "nir": make_nir("F", 1985, 3), "birth_name": "Lefèvre", "used_name": "Martin",
        "first_names": "Claire Anne", "sex": "F", "birth_date": "1985-03-14",
        "birth_place": "75056", "address": "12 rue des Lilas", "postal_code": "75011",
        "city": "Paris", "phone": "06 12 34 56 78", "email": "claire.lefevre@example.fr",
        "blood_group": "A+", "doctor_rpps": "10003456786", "doctor_name": "Dr Paul Bernard",
        "insurer": "CPAM de Paris", "notes": "Grossesse en cours, 2e trimestre",
    }
    row.update(overrides)
    return row


@pytest.fixture
def staff(lab_a):
    """Lab A's people, one account each: secretary, technician, two biologists, manager."""
    from tests.lab_helpers import staff_of

    return staff_of(lab_a)


@pytest.fixture
def patient(staff):
    """A patient of lab A (the synthetic Claire Martin née Lefèvre of ``patient_row``)."""
    from coffre.identity.access import create_patient

    return create_patient(staff.secretary, patient_row())


@pytest.fixture
def keys():
    """An export recipient's X25519 key pair: (identity, recipient)."""
    from coffre.vault import new_recipient_identity

    return new_recipient_identity()
