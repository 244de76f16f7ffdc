"""The CNIL password rule and the Argon2id hasher."""

from __future__ import annotations

import math

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import Argon2PasswordHasher, check_password, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils import translation

from coffre.accounts.hashers import CoffreArgon2Hasher
from coffre.accounts.models import Membership, Role
from coffre.accounts.passwords import password_bits, password_problems

STRONG = "Kx7#mPq2vL9w"


@pytest.mark.parametrize(("password", "bits"), [
    ("motdepasse", 10 * math.log2(26)),             # 47.0
    ("Tr0ub4dor&3", 11 * math.log2(10 + 26 + 26 + 33)),  # 72.3
    ("12345678901234567", 17 * math.log2(10)),        # 56.5
    ("Kx7#mPq2vL9w", 12 * math.log2(95)),              # 78.8
    ("été", 3 * math.log2(26 + 29)),  # accented lowercase letters join the pool
])
def test_entropy_is_length_times_log2_of_the_pool_used(password, bits):
    assert password_bits(password) == pytest.approx(bits)


def test_a_long_enough_mixed_password_is_accepted():
    assert password_problems(STRONG, username="alice") == []
    assert password_problems("Été-à-Paris-42", username="alice") == []


def test_a_short_password_is_refused_for_its_entropy_in_french():
    problems = password_problems("motdepasse")
    assert len(problems) == 1
    assert "trop faible" in problems[0] and "47 bits" in problems[0]


def test_the_threshold_is_a_setting(settings):
    settings.COFFRE_PASSWORD_MIN_BITS = 80
    assert password_problems(STRONG)  # 78.8 bits: enough with lockout, not without
    assert password_problems("Kx7#mPq2vL9w%z") == []


@pytest.mark.parametrize(("password", "word"), [
    ("Xabcd#97Lmq!", "suite"),
    ("Q9!w8765#Lmz", "suite"),
    ("Pm#azerty!72", "suite"),
    ("Zu#QWERTY!72", "suite"),
    ("zzzzzzzzK9!x", "répété"),
    ("Xq#Alice1998!", "identifiant"),
    ("Xq#C0ffre98!k", "coffre"),
    ("Janvier2024!Qx", "mois"),
    ("Kp!2019-Août#", "mois"),
])
def test_predictable_shapes_are_refused_however_long(password, word):
    problems = password_problems(password, username="alice")
    assert len(problems) == 1, problems
    assert word in problems[0]


def test_the_lab_name_is_refused():
    problems = password_problems("Xq#Pasteur-97!", lab_names=["Laboratoire Pasteur"])
    assert problems == ["Ce mot de passe contient le nom de votre laboratoire."]


def test_messages_are_translated_to_english():
    with translation.override("en"):
        problems = password_problems("Pm#azerty!72")
    assert "sequence" in problems[0]


@pytest.mark.django_db
def test_django_validate_password_applies_the_rule_with_the_users_lab(lab_a):
    user = get_user_model().objects.create_user("bernard", password=STRONG)
    Membership.objects.create(user=user, lab=lab_a, role=Role.SECRETARY)
    validate_password(STRONG, user)
    with pytest.raises(ValidationError) as refused:
        validate_password("Xq#Bernard-97!", user)
    assert any("identifiant" in m for m in refused.value.messages)
    with pytest.raises(ValidationError) as refused:
        validate_password("Zw!Laboratoire-7", user)  # lab_a is "Laboratoire A"
    assert any("laboratoire" in m for m in refused.value.messages)
    with pytest.raises(ValidationError):
        validate_password("password1234")  # Django's common-password list still applies


PRODUCTION_HASHERS = ["coffre.accounts.hashers.CoffreArgon2Hasher"]


def test_the_test_run_uses_cheap_argon2_but_production_does_not():
    from coffre import settings as coffre_settings  # as read at start-up, env set

    assert coffre_settings.PASSWORD_HASHERS == [
        "coffre.accounts.hashers.CheapTestArgon2Hasher"]
    assert CoffreArgon2Hasher.time_cost == 3


def test_the_hasher_makes_argon2id_hashes_with_coffres_parameters(settings):
    settings.PASSWORD_HASHERS = PRODUCTION_HASHERS
    encoded = make_password("Kx7#mPq2vL9w")
    assert encoded.startswith("argon2$argon2id$v=19$m=102400,t=3,p=2$")
    assert check_password("Kx7#mPq2vL9w", encoded)
    assert not CoffreArgon2Hasher().must_update(encoded)


@pytest.mark.django_db
def test_an_old_default_parameter_hash_is_upgraded_at_the_next_check(settings):
    settings.PASSWORD_HASHERS = PRODUCTION_HASHERS
    user = get_user_model().objects.create_user("claire")
    old = Argon2PasswordHasher().encode("Kx7#mPq2vL9w", Argon2PasswordHasher().salt())
    assert "m=102400,t=2,p=8" in old
    user.password = old
    user.save()
    assert CoffreArgon2Hasher().must_update(old)
    assert user.check_password("Kx7#mPq2vL9w")
    user.refresh_from_db()
    assert "m=102400,t=3,p=2" in user.password
