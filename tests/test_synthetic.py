"""Synthetic patients: deterministic, valid, and close to the intended mix.

Plain Python (runs with -p no:django). No timing assertions: throughput is
measured by hand and written at the top of coffre/identity/synthetic.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from coffre.identity import french
from coffre.identity.synthetic import COLUMNS, generate_finess, generate_patients, lab_name

SEED = 20210223


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return list(generate_patients(5000, SEED))


def share(rows: list[dict[str, str]], predicate: Callable[[dict[str, str]], bool]) -> float:
    return sum(1 for row in rows if predicate(row)) / len(rows)


# --- determinism -------------------------------------------------------------------

def test_the_same_seed_gives_the_same_rows() -> None:
    assert list(generate_patients(200, 7)) == list(generate_patients(200, 7))


def test_different_seeds_give_different_rows() -> None:
    first, second = list(generate_patients(50, 7)), list(generate_patients(50, 8))
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_a_run_from_start_index_equals_the_same_slice_of_a_full_run() -> None:
    full = list(generate_patients(300, 7))
    assert list(generate_patients(100, 7, start_index=150)) == full[150:250]
    assert list(generate_patients(1, 7, start_index=299)) == full[299:]


def test_rows_are_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import json; from coffre.identity.synthetic import generate_patients; "
        "print(json.dumps(list(generate_patients(20, 7, start_index=1000))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert json.loads(out) == list(generate_patients(20, 7, start_index=1000))


def test_negative_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        next(generate_patients(1, -1))
    with pytest.raises(ValueError):
        next(generate_patients(-1, 1))


# --- every row is valid ------------------------------------------------------------

def test_rows_have_exactly_the_registry_columns_as_strings(rows: list[dict[str, str]]) -> None:
    assert COLUMNS == (
        "nir", "birth_name", "used_name", "first_names", "sex", "birth_date", "birth_place",
        "address", "postal_code", "city", "phone", "email", "blood_group", "doctor_rpps",
        "doctor_name", "insurer", "notes",
    )
    for row in rows:
        assert tuple(row) == COLUMNS
        assert all(isinstance(value, str) for value in row.values())


def test_every_row_passes_the_french_validators(rows: list[dict[str, str]]) -> None:
    for row in rows:
        birth = french.clean_birth_date(row["birth_date"])
        assert dt.date(1920, 1, 1) <= birth <= dt.date(2020, 12, 31)
        assert french.clean_sex(row["sex"]) == row["sex"]
        assert french.clean_insee_place(row["birth_place"]) == row["birth_place"]
        assert french.clean_postal_code(row["postal_code"]) == row["postal_code"]
        assert french.clean_blood_group(row["blood_group"]) == row["blood_group"]
        if row["nir"]:
            assert french.clean_nir(row["nir"]) == row["nir"]
            french.check_nir_matches(row["nir"], row["sex"], birth)
            assert row["nir"][5:10] == row["birth_place"]
        if row["phone"]:
            assert french.clean_phone(row["phone"]) == row["phone"]
        if row["email"]:
            assert french.clean_email(row["email"]) == row["email"]
        if row["doctor_rpps"]:
            assert french.clean_rpps(row["doctor_rpps"]) == row["doctor_rpps"]
            assert row["doctor_name"].startswith("Dr ")
        assert row["birth_name"] and row["first_names"] and row["address"] and row["city"]


def test_first_names_are_one_to_three_names_separated_by_spaces(
    rows: list[dict[str, str]],
) -> None:
    counts = {len(row["first_names"].split(" ")) for row in rows}
    assert counts == {1, 2, 3}


def test_nirs_and_emails_are_unique() -> None:
    many = list(generate_patients(20_000, SEED))
    nirs = [row["nir"] for row in many if row["nir"]]
    emails = [row["email"] for row in many if row["email"]]
    assert len(set(nirs)) == len(nirs)
    assert len(set(emails)) == len(emails)


# --- the mix -----------------------------------------------------------------------

def test_about_52_percent_of_patients_are_women(rows: list[dict[str, str]]) -> None:
    assert 0.48 <= share(rows, lambda r: r["sex"] == "F") <= 0.56


def test_about_3_percent_have_no_nir(rows: list[dict[str, str]]) -> None:
    assert 0.015 <= share(rows, lambda r: not r["nir"]) <= 0.05


def test_about_5_percent_were_born_abroad(rows: list[dict[str, str]]) -> None:
    assert 0.03 <= share(rows, lambda r: r["birth_place"].startswith("99")) <= 0.07
    assert share(rows, lambda r: r["birth_place"][:2] in ("2A", "2B")) > 0
    assert share(rows, lambda r: r["birth_place"][:2] in ("97", "98")) > 0


def test_about_8_percent_have_notes(rows: list[dict[str, str]]) -> None:
    assert 0.05 <= share(rows, lambda r: bool(r["notes"])) <= 0.11


def test_about_70_percent_have_an_email(rows: list[dict[str, str]]) -> None:
    assert 0.65 <= share(rows, lambda r: bool(r["email"])) <= 0.75


def test_about_a_quarter_have_no_blood_group_and_o_and_a_positive_lead(
    rows: list[dict[str, str]],
) -> None:
    assert 0.21 <= share(rows, lambda r: not r["blood_group"]) <= 0.29
    assert 0.22 <= share(rows, lambda r: r["blood_group"] == "A+") <= 0.33
    assert share(rows, lambda r: r["blood_group"] == "AB-") < 0.02


def test_about_30_percent_of_adult_women_use_another_name(rows: list[dict[str, str]]) -> None:
    adult_women = [r for r in rows if r["sex"] == "F" and r["birth_date"] <= "2002-12-31"]
    assert 0.25 <= share(adult_women, lambda r: bool(r["used_name"])) <= 0.35
    others = [r for r in rows if r not in adult_women]
    assert not any(r["used_name"] for r in others)
    assert all(r["used_name"] != r["birth_name"] for r in adult_women)


def test_emails_only_use_reserved_example_domains(rows: list[dict[str, str]]) -> None:
    domains = {row["email"].rsplit("@", 1)[1] for row in rows if row["email"]}
    assert domains <= {"example.com", "example.org", "example.net"}


def test_phones_only_use_the_blocks_reserved_for_fiction(rows: list[dict[str, str]]) -> None:
    prefixes = {row["phone"][:8] for row in rows if row["phone"]}
    assert prefixes <= {"+3319900", "+3326191", "+3335301", "+3346571", "+3353649"}


# --- laboratories ------------------------------------------------------------------

def test_synthetic_finess_numbers_are_valid_and_distinct() -> None:
    numbers = [generate_finess(index, SEED) for index in range(1000)]
    assert all(french.clean_finess(number) == number for number in numbers)
    assert len(set(numbers)) == len(numbers)
    assert generate_finess(3, SEED) == generate_finess(3, SEED)


def test_lab_names_name_a_town() -> None:
    name = lab_name(4, SEED)
    assert name.startswith("Laboratoire d'analyses de ")
    assert name == lab_name(4, SEED)
