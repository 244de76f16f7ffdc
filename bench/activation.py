"""Patient portal activation: the answer's time for an unknown code and for a known code
with a wrong secret must be the same (docs/portals.md), with Coffre's Argon2id.

    .venv/bin/python bench/activation.py             # median of 20 attempts each
    .venv/bin/python bench/activation.py --rounds 50

In a private COFFRE_HOME (SQLite WAL), one lab and one patient with a code. Each kind of
refused attempt goes through ``activation.activate`` (the form's work without the page):

- unknown: a public part that was never issued (or expired, or used);
- wrong secret: the patient's public part, a wrong secret;
- wrong birth date: the right code, a wrong birth date (a fresh code every 4 tries, so
  none burns).

Baseline, same run: one ``check_password`` (one Argon2id verification) alone. The
ratio unknown / wrong secret must be close to 1: before the fix it was about 0.03
(0.01 s against 0.3-0.6 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _median_ms(attempt, rounds: int) -> float:
    times = []
    for n in range(rounds):
        started = time.perf_counter()
        attempt(n)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(rounds: int) -> dict[str, float]:
    from django.contrib.auth.hashers import check_password, make_password

    from bench.lab import _lab, _patients, _staff
    from coffre.portal import activation

    lab = _lab(3, "Laboratoire Portail")
    secretary = _staff(lab)["secretary"][0]
    patient_id, _key, _sex, birth, *_ = _patients(lab, 1, seed=21)[0]
    wrong_birth = f"{birth[8:10]}/{birth[5:7]}/{int(birth[:4]) - 1}"
    code = activation.issue_code(secretary, patient_id)
    public, secret = code.split("-")
    wrong_secret = next(f"{n:010d}" for n in range(10) if f"{n:010d}" != secret)
    unknown = next(p for p in ("ZZZZZZ", "YYYYYY") if p != public)
    fresh = {"code": code}

    def refused(typed: str, birth_date: str) -> None:
        try:
            activation.activate(activation.Activation(typed, birth_date, "bench.patient",
                                                      "Kx7#mPq2vL9w-bench"))
        except activation.ActivationRefused:
            return
        raise AssertionError("an attempt that should fail was accepted")

    def wrong_birth_date(n: int) -> None:
        if n % 4 == 0:
            fresh["code"] = activation.issue_code(secretary, patient_id)
        refused(fresh["code"], wrong_birth)

    encoded = make_password(secret)
    figures = {
        "unknown": _median_ms(lambda n: refused(f"{unknown}-{secret}", "01/01/1980"), rounds),
        "wrong secret": _median_ms(lambda n: refused(f"{public}-{wrong_secret}",
                                                     "01/01/1980"), rounds),
        "wrong birth date": _median_ms(wrong_birth_date, rounds),
        "check_password": _median_ms(lambda n: check_password(secret, encoded), rounds),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    os.environ.pop("COFFRE_ARGON2_TEST_CHEAP", None)  # the production parameters
    with tempfile.TemporaryDirectory(prefix="coffre-bench-activation-") as home:
        from bench.lab import setup

        setup(home)
        figures = measure(args.rounds)
    base = figures["check_password"]
    print(f"CPUs: {os.cpu_count()}, median of {args.rounds} attempts each")
    for name, ms in figures.items():
        print(f"{name:>17}: {ms:7.1f} ms  ({ms / base:.2f} x one check_password)")
    print(f"ratio unknown / wrong secret: {figures['unknown'] / figures['wrong secret']:.2f}")


if __name__ == "__main__":
    main()
