"""`coffre leakcheck` on generated data: clean installations pass, clear copies are
caught, on SQLite files and on a PostgreSQL pg_dump."""

import csv
import shutil
import sqlite3
import subprocess

import pytest

from coffre.identity.synthetic import generate_patients
from tests.cli_helpers import drop_database, make_cli

SEED = 11


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    cli, database = make_cli(tmp_path_factory.mktemp("leak"))
    cli.run("init")
    cli.run("generate", "--patients", "300", "--labs", "2", "--seed", str(SEED))
    first = next(generate_patients(1, seed=SEED))
    cli.run("patient", "find", "--email", first["email"] or "x@example.com", "--lab",
            cli.json_lines("lab", "list")[0]["finess"])
    yield cli
    drop_database(database)


@pytest.fixture
def someone():
    return next(row for row in generate_patients(50, seed=SEED) if row["email"] and row["nir"])


def test_a_fresh_installation_with_generated_patients_passes(cli):
    result = cli.run("leakcheck")
    assert "no patient value found in clear" in result.stdout
    assert "Checked" in result.stdout


def test_a_value_written_in_a_log_is_found_and_shown_masked(cli, someone):
    log = cli.home / "logs" / "app.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(f"2026-11-28 INFO lookup for {someone['email'].upper()} done\n")
    try:
        result = cli.run("leakcheck", check=False)
    finally:
        log.unlink()
    assert result.returncode == 1
    assert "HIT logs/app.log" in result.stdout and "field email" in result.stdout
    assert someone["email"] not in result.stdout
    assert someone["email"].upper() not in result.stdout


def test_a_nir_written_with_spaces_in_a_backup_is_found(cli, someone):
    nir = someone["nir"]
    spaced = f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
    backup = cli.home / "backups" / "old.bin"
    backup.parent.mkdir(exist_ok=True)
    backup.write_bytes(b"\x00\x17binary" + spaced.encode() + b"\x00\xff")
    try:
        result = cli.run("leakcheck", check=False)
    finally:
        backup.unlink()
    assert result.returncode == 1 and "field nir" in result.stdout


def test_a_plaintext_database_like_the_2021_one_is_caught(cli, tmp_path):
    rows = list(generate_patients(300, seed=SEED))[:40]
    path = cli.home / "exports" / "legacy.sqlite3"
    path.parent.mkdir(exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE patients (nom TEXT, prenom TEXT, tel TEXT, mail TEXT)")
        db.executemany("INSERT INTO patients VALUES (?, ?, ?, ?)",
                       [(r["birth_name"], r["first_names"], r["phone"], r["email"]) for r in rows])
    try:
        result = cli.run("leakcheck", check=False)
    finally:
        path.unlink()
    assert result.returncode == 1
    assert result.stdout.count("HIT exports/legacy.sqlite3") >= 40


def test_a_clear_csv_export_is_caught(cli):
    rows = list(generate_patients(5, seed=SEED))
    path = cli.home / "exports" / "extraction.csv"
    path.parent.mkdir(exist_ok=True)
    with open(path, "w", newline="", encoding="latin-1", errors="replace") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerows([[r["birth_name"], r["first_names"], r["notes"]] for r in rows])
    try:
        result = cli.run("leakcheck", check=False)
    finally:
        path.unlink()
    assert result.returncode == 1 and "HIT exports/extraction.csv" in result.stdout


@pytest.mark.postgres
def test_a_postgresql_dump_holds_no_patient_value(cli):
    url = cli.owner_url  # pg_dump must bypass row-level security: the owner's (deploy.md)
    if not url:
        pytest.skip("runs in the PostgreSQL pass of the suite (COFFRE_DATABASE_URL)")
    assert shutil.which("pg_dump"), "pg_dump is needed for this test"
    dump = cli.home / "backups" / "dump.sql"
    dump.parent.mkdir(exist_ok=True)
    subprocess.run(["pg_dump", "--no-owner", "-f", str(dump), url], check=True)
    try:
        assert dump.stat().st_size > 100_000
        result = cli.run("leakcheck")
        assert "no patient value found in clear" in result.stdout
        assert "backups/dump.sql" not in result.stdout
    finally:
        dump.unlink()


def test_an_authenticator_secret_written_in_clear_is_found(cli):
    output = cli.run("demo").stdout
    line = next(line for line in output.splitlines() if "TOTP key" in line)
    secret = line.split("page): ")[1].split("  ")[0].replace(" ", "")
    assert len(secret) >= 26 and secret.isalnum()
    log = cli.home / "logs" / "debug.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(f"enrolled with secret {secret}\n")
    try:
        result = cli.run("leakcheck", check=False)
    finally:
        log.unlink()
    assert result.returncode == 1 and "field totp_secret" in result.stdout
    assert secret not in result.stdout
    assert cli.run("leakcheck").returncode == 0


def _dump_if_postgresql(cli):
    """On PostgreSQL the database is not under COFFRE_HOME: a pg_dump put there is."""
    url = cli.env.get("COFFRE_DATABASE_URL")
    if not url:
        return None
    dump = cli.home / "backups" / "export-dump.sql"
    dump.parent.mkdir(exist_ok=True)
    subprocess.run(["pg_dump", "--no-owner", "-f", str(dump), cli.owner_url], check=True)
    return dump


def test_an_export_purpose_naming_a_patient_is_not_in_clear(cli, someone):
    """People write who and why in an export's purpose and recipient ("dossier de Mme X,
    suivi VIH"): both are sealed, so the leak check finds neither in the database."""
    from coffre.vault import new_recipient_identity

    finess = cli.json_lines("lab", "list")[0]["finess"]
    name = f"{someone['first_names']} {someone['birth_name']}"
    cli.run("export", "request", "--lab", finess, "--purpose",
            f"Dossier de {name} ({someone['email']}), suivi VIH", "--recipient",
            f"Dr Morvan pour {name}", "--recipient-key", new_recipient_identity()[1],
            "--fields", "birth_name", "--from", "2000-01-01", "--to", "2000-01-02")
    dump = _dump_if_postgresql(cli)
    try:
        result = cli.run("leakcheck", check=False)
    finally:
        if dump:
            dump.unlink()
    assert result.returncode == 0, result.stdout
    assert "no patient value found in clear" in result.stdout
    # The operator still reads them, opened, in the listing.
    listed = cli.json_lines("export", "list", "--lab", finess)[-1]
    assert name in listed["purpose"] and listed["recipient"] == f"Dr Morvan pour {name}"


def test_the_report_gives_the_share_of_values_too_short_to_search_by_field(cli):
    result = cli.run("leakcheck")
    line = next(line for line in result.stdout.splitlines() if "too short to search" in line)
    share = float(line.split("(")[1].split("%")[0])
    assert 0 < share < 40 and "birth_name" in line and " of " in line


def test_values_hidden_by_padding_the_disk_with_text_are_named_not_passed_over(
        cli, someone):
    """A clear list of phone numbers beside 20 MB of random text: against that much
    text a 10-digit number can no longer be told from chance, so the check cannot see
    the list. It says so by name; and above the bound on the share of values it could
    not search it fails as inconclusive instead of reporting a clean disk."""
    import base64
    import os

    logs = cli.home / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "phones.txt").write_text(someone["phone"] + "\n")
    with open(logs / "padding.log", "w") as handle:
        for _ in range(20):
            handle.write(base64.b64encode(os.urandom(768 * 1024)).decode() + "\n")
    try:
        result = cli.run("leakcheck", check=False)
        bounded = cli.run("leakcheck", "--max-unsearched", "5", check=False)
        from_env = cli.run("leakcheck", check=False,
                           extra_env={"COFFRE_LEAKCHECK_MAX_UNSEARCHED": "5"})
    finally:
        (logs / "phones.txt").unlink()
        (logs / "padding.log").unlink()
    assert "HIT" not in result.stdout  # the list went unseen...
    assert "WARNING: 100% of the phone values" in result.stdout  # ...and that is said
    assert "a leak of them alone would go unseen" in result.stdout
    assert bounded.returncode == 1 and from_env.returncode == 1
    assert "Verdict: inconclusive, no patient value found but" in bounded.stdout
    assert "(more than 5%)" in bounded.stdout
    bad = cli.run("leakcheck", "--max-unsearched", "140", check=False)
    assert bad.returncode == 2 and "percentage" in bad.stderr
