"""Coffre's password hasher: Argon2id with parameters measured on Coffre's hardware.

Django's Argon2PasswordHasher (time_cost 2, 100 MiB, 8 lanes) spreads 8 lanes over a
2-core server, so its parallelism buys nothing there. Coffre keeps the same memory,
uses as many lanes as cores and one more pass: an attacker pays 1.5x more per guess
(time × memory), a login about 120 ms on the reference 2-core machine (bench/login.py
measures both in one run; one verification must stay within 50-250 ms).

The algorithm name stays "argon2" and the parameters live in each hash, so existing
hashes still verify, and Django re-hashes a password with these parameters at the
next successful login (``must_update`` compares them).
"""

from django.contrib.auth.hashers import Argon2PasswordHasher


class CoffreArgon2Hasher(Argon2PasswordHasher):
    # Type is Argon2id (Django's params() always asks for Type.ID).
    time_cost = 3
    memory_cost = 102_400  # KiB (100 MiB)
    parallelism = 2


class CheapTestArgon2Hasher(CoffreArgon2Hasher):
    """Tests only (COFFRE_ARGON2_TEST_CHEAP=1, set by coffre/testing.py): same algorithm,
    minimal cost, so the suite's many accounts do not each cost a real login's time."""

    time_cost = 1
    memory_cost = 8
    parallelism = 1
