"""The ``coffre`` command end to end, as an administrator runs it."""

import csv
import json
import os

import pytest

from coffre.identity.registry import CSV_COLUMNS
from coffre.identity.synthetic import generate_patients
from tests.cli_helpers import drop_database, free_port, make_cli, printed_auditor_key
from tests.conftest import make_nir, patient_row

FINESS = "750000010"


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    printed = cli.run("init").stdout
    # The auditor keeps the key `init` printed once, off the machine (here: outside home).
    cli.auditor_key = tmp_path_factory.mktemp("auditor") / "auditor.key"
    cli.auditor_key.write_text(printed_auditor_key(printed) + "\n")
    cli.run("lab", "add", "--finess", FINESS, "--name", "Laboratoire Test")
    cli.run("lab", "add", "--finess", "690000013", "--name", "Laboratoire Autre")
    yield cli
    drop_database(database)


def access_log_entries(cli, count: int) -> None:
    """At least ``count`` entries in the access log, whatever ran before: CLI searches,
    one entry each (an empty search too)."""
    missing = count - cli.sql_rows("SELECT COUNT(*) FROM audit_accessevent")[0][0]
    for _ in range(missing):
        cli.run("patient", "find", "--email", "personne@example.org", "--lab", FINESS)


def write_csv(path, rows, columns=CSV_COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_lab_list_prints_one_json_object_per_lab(cli):
    labs = cli.json_lines("lab", "list")
    assert {(lab["finess"], lab["name"]) for lab in labs} >= {
        (FINESS, "Laboratoire Test"), ("690000013", "Laboratoire Autre")}


def test_a_lab_with_a_bad_finess_is_refused_clearly(cli):
    result = cli.run("lab", "add", "--finess", "750000011", "--name", "X", check=False)
    assert result.returncode == 1
    assert "FINESS" in result.stderr and "Traceback" not in result.stderr


def test_import_then_find_by_every_trait(cli, tmp_path):
    rows = [patient_row(), *list(generate_patients(20, seed=7))]
    result = cli.run("import", "patients", str(write_csv(tmp_path / "p.csv", rows)),
                     "--lab", FINESS)
    assert "imported 21 patients" in result.stdout
    nir = make_nir("F", 1985, 3)
    for args in (["--nir", nir], ["--name", "LEFEVRE", "--birth-date", "1985-03-14"],
                 ["--phone", "06 12 34 56 78"], ["--email", "claire.lefevre@example.fr"]):
        found = cli.json_lines("patient", "find", *args, "--lab", FINESS)
        assert len(found) == 1, args
        assert set(found[0]) >= {*CSV_COLUMNS, "id", "lab"}
        assert found[0]["nir"] == nir and found[0]["lab"] == FINESS
        assert found[0]["phone"] == "+33612345678"
    assert cli.json_lines("patient", "find", "--nir", nir, "--lab", "690000013") == []


def test_an_invalid_file_lists_every_bad_row_and_imports_nothing(cli, tmp_path):
    rows = [patient_row(nir=make_nir("M", 1990, 1, serial="501"), sex="M",
                        birth_date="1990-01-09"),
            patient_row(nir="190017505650199", sex="M", birth_date="1990-01-09"),
            patient_row(nir="", first_names="", birth_date="31/12/1990"),
            patient_row(nir="", email="nobody", blood_group="C+")]
    path = write_csv(tmp_path / "bad.csv", rows)
    before = cli.json_lines("patient", "find", "--email", "claire.lefevre@example.fr",
                            "--lab", "690000013")
    result = cli.run("import", "patients", str(path), "--lab", "690000013", check=False)
    assert result.returncode == 1
    assert "line 3, column nir" in result.stderr
    assert "line 4, column first_names" in result.stderr
    assert "line 4, column birth_date" in result.stderr
    assert "line 5, column email" in result.stderr
    assert "line 5, column blood_group" in result.stderr
    assert "nothing was imported" in result.stderr
    assert "190017505650199" not in result.stderr
    after = cli.json_lines("patient", "find", "--nir", make_nir("M", 1990, 1, serial="501"),
                           "--lab", "690000013")
    assert before == [] and after == []


def test_skip_invalid_imports_only_the_good_rows(cli, tmp_path):
    rows = [patient_row(nir=make_nir("M", 1991, 2, serial="601"), sex="M",
                        birth_date="1991-02-03", email="good@example.org"),
            patient_row(nir="", sex="Z")]
    path = write_csv(tmp_path / "mixed.csv", rows)
    result = cli.run("import", "patients", str(path), "--lab", "690000013", "--skip-invalid")
    assert "imported 1 patients" in result.stdout
    assert "line 3, column sex" in result.stderr
    assert len(cli.json_lines("patient", "find", "--email", "good@example.org",
                              "--lab", "690000013")) == 1


def test_a_duplicate_nir_in_the_lab_or_the_file_is_refused(cli, tmp_path):
    nir = make_nir("F", 1985, 3, serial="888")
    known = patient_row(nir=nir, birth_name="Durand", used_name="", phone="06 98 76 54 32",
                        email="doublon@example.org")
    cli.run("import", "patients", str(write_csv(tmp_path / "one.csv", [known])),
            "--lab", FINESS)
    path = write_csv(tmp_path / "dup.csv", [known, patient_row(
        nir=make_nir("F", 1985, 3, serial="777"))] * 2)
    result = cli.run("import", "patients", str(path), "--lab", FINESS, check=False)
    assert result.returncode == 1
    assert "line 2, column nir: a patient with this NIR already exists" in result.stderr
    assert "line 5, column nir: same NIR as line 3" in result.stderr
    assert nir not in result.stderr


def test_a_file_with_a_bad_header_is_refused_before_anything(cli, tmp_path):
    path = write_csv(tmp_path / "h.csv", [patient_row()], columns=CSV_COLUMNS[:-1])
    result = cli.run("import", "patients", str(path), "--lab", FINESS, check=False)
    assert result.returncode == 1 and "missing columns: notes" in result.stderr


def test_a_file_that_is_not_utf8_is_refused(cli, tmp_path):
    path = write_csv(tmp_path / "latin.csv", [patient_row()])
    path.write_bytes(path.read_bytes().decode().encode("latin-1"))
    result = cli.run("import", "patients", str(path), "--lab", FINESS, check=False)
    assert result.returncode == 1 and "not valid UTF-8" in result.stderr


def test_a_cli_search_is_recorded_with_the_operating_system_user(cli):
    from coffre.tenancy.actors import os_user

    cli.run("patient", "find", "--email", "claire.lefevre@example.fr", "--lab", FINESS)
    result = cli.run("leakcheck")  # also proves the log holds no readable value
    assert result.returncode == 0
    searchers = cli.sql_rows("SELECT person FROM audit_accessevent WHERE action = 'search'")
    assert (os_user(),) in searchers


def test_generate_is_deterministic_and_valid(cli):
    result = cli.run("generate", "--patients", "60", "--labs", "2", "--seed", "5")
    assert "generated 60 patients in 2 laboratories" in result.stdout
    assert len(cli.json_lines("lab", "list")) >= 4


def test_every_command_stops_clearly_without_its_key(cli):
    key = cli.home / "keys" / "master.key"
    hidden = key.with_name("elsewhere")
    key.rename(hidden)
    try:
        for args in (["lab", "list"], ["patient", "find", "--nir", "1", "--lab", FINESS],
                     ["leakcheck"], ["serve", "--port", str(free_port())]):
            result = cli.run(*args, check=False)
            assert result.returncode == 2, args
            assert "does not exist" in result.stderr and "Traceback" not in result.stderr
        result = cli.run("init", check=False)
        assert result.returncode == 2 and "restore it" in result.stderr
        assert not key.exists()
    finally:
        hidden.rename(key)


def test_a_wrong_key_is_named_and_refused(cli, tmp_path):
    from coffre.vault import create_key_file

    other = create_key_file(tmp_path / "other.key")
    result = cli.run("lab", "list", check=False,
                     extra_env={"COFFRE_KEY_FILE": str(tmp_path / "other.key")})
    assert result.returncode == 2
    assert "wrong key file" in result.stderr and other.current.hex_id in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_or_malformed_environment_key_is_refused(cli):
    result = cli.run("lab", "list", check=False, extra_env={"COFFRE_MASTER_KEY": "garbage!"})
    assert result.returncode == 2 and "COFFRE_MASTER_KEY is not base64" in result.stderr


def test_a_key_file_open_to_others_stops_every_command(cli):
    key = cli.home / "keys" / "master.key"
    os.chmod(key, 0o640)
    try:
        result = cli.run("lab", "list", check=False)
        assert result.returncode == 2 and "chmod 600" in result.stderr
    finally:
        os.chmod(key, 0o600)


def test_lab_list_output_is_json(cli):
    for line in cli.run("lab", "list").stdout.splitlines():
        assert isinstance(json.loads(line), dict)


def test_the_wsgi_application_refuses_to_start_with_a_wrong_key(cli, tmp_path):
    """What a production server (gunicorn) imports: it must fail closed too."""
    import subprocess
    import sys

    from coffre.vault import create_key_file

    create_key_file(tmp_path / "wrong.key")
    env = {**cli.env, "COFFRE_KEY_FILE": str(tmp_path / "wrong.key")}
    result = subprocess.run([sys.executable, "-c", "import coffre.wsgi"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 3  # gunicorn's "worker failed to boot": it stops
    assert "refusing to start" in result.stderr and "wrong key file" in result.stderr
    assert "Traceback" not in result.stderr


def test_files_under_coffre_home_are_readable_by_their_owner_only(cli):
    for path in cli.home.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path


def test_audit_verify_passes_then_names_a_changed_entry(cli):
    access_log_entries(cli, 3)
    key = ("--auditor-key", str(cli.auditor_key))
    result = cli.run("audit", "verify", *key)
    assert "the access log is intact" in result.stdout
    [(person,)] = cli.sql_rows("SELECT person FROM audit_accessevent WHERE seq = 3")
    cli.sql("UPDATE audit_accessevent SET person = 'mallory' WHERE seq = 3")
    try:
        result = cli.run("audit", "verify", *key, check=False)
        assert result.returncode == 1
        assert "PROBLEM: entry 3 has been changed" in result.stdout
    finally:
        # The value this test read from the same row (an account name, no quote).
        cli.sql(f"UPDATE audit_accessevent SET person = '{person}' WHERE seq = 3")  # noqa: S608
    assert cli.run("audit", "verify", *key).returncode == 0


def test_canaries_are_planted_counted_and_never_listed_with_values(cli):
    result = cli.run("canary", "plant", "--per-lab", "2", "--lab", FINESS)
    assert "planted 2 canaries" in result.stdout
    counts = {row["finess"]: row["canaries"] for row in cli.json_lines("canary", "list")}
    assert counts[FINESS] == 2
    assert set(cli.json_lines("canary", "list")[0]) == {"finess", "canaries"}


def test_an_unknown_person_cannot_be_unlocked(cli):
    result = cli.run("audit", "unlock", "nobody", check=False)
    assert result.returncode == 1 and "0 lock(s) lifted" in result.stdout


def test_init_prints_the_auditor_key_once_and_leaves_it_nowhere_under_home(cli):
    access_log_entries(cli, 1)
    private = cli.auditor_key.read_text().strip()
    assert not (cli.home / "audit" / "auditor-private.key").exists()
    for path in cli.home.rglob("*"):
        if path.is_file():
            assert private.encode() not in path.read_bytes(), path
    result = cli.run("audit", "verify", check=False)
    assert result.returncode == 1 and "--auditor-key" in result.stderr
    result = cli.run("audit", "verify", "--auditor-key", str(cli.auditor_key))
    assert "the access log is intact" in result.stdout
    result = cli.run("audit", "verify", "--auditor-key", "-", stdin=private + "\n")
    assert "the access log is intact" in result.stdout


def test_the_auditor_key_is_refused_inside_home_and_written_outside_it(tmp_path):
    fresh, database = make_cli(tmp_path / "home")
    try:
        inside = fresh.home / "audit" / "auditor-private.key"
        result = fresh.run("init", "--auditor-key-out", str(inside), check=False)
        assert result.returncode == 2 and "inside COFFRE_HOME" in result.stderr
        assert not inside.exists() and "Traceback" not in result.stderr
        outside = tmp_path / "usb" / "auditor.key"
        result = fresh.run("init", "--auditor-key-out", str(outside))
        assert outside.stat().st_mode & 0o777 == 0o600
        assert outside.read_text().strip() not in result.stdout  # written, not printed
        assert not inside.exists()
        result = fresh.run("audit", "auditor-key", "--out", str(inside), check=False)
        assert result.returncode != 0 and "inside COFFRE_HOME" in result.stderr
        assert not inside.exists()
    finally:
        drop_database(database)


def test_a_full_disk_mid_command_is_one_clear_line_not_a_traceback(monkeypatch, capsys):
    import errno

    from coffre import cli

    cli.parser()  # registers every handler, the capabilities' too

    def fills_the_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/srv/coffre/backups/b.cbk")

    monkeypatch.setattr(cli, "open_vault", lambda **_: None)
    monkeypatch.setitem(cli.COMMANDS, "backup", fills_the_disk)
    umask = os.umask(0o022)
    try:
        assert cli.main(["backup"]) == 1
    finally:
        os.umask(umask)  # main() sets 077 for the whole process: give the tests theirs
    err = capsys.readouterr().err
    assert err.startswith("coffre: no space left on the disk holding /srv/coffre/backups")
    assert "Traceback" not in err


# --- a damaged lab key stops every start ----------------------------------------------

@pytest.fixture
def damaged(tmp_path):
    """An installation with two labs whose second lab's wrapped key has one byte
    changed in the database (a disk fault, or someone editing the table)."""
    cli, database = make_cli(tmp_path / "home")
    cli.run("init")
    cli.run("lab", "add", "--finess", FINESS, "--name", "Laboratoire Test")
    cli.run("lab", "add", "--finess", "690000013", "--name", "Laboratoire Autre")
    select = ("SELECT k.id, k.wrapped FROM keyring_labkey k JOIN labs_lab l "
              "ON l.id = k.lab_id WHERE l.finess = '690000013'")
    if cli.owner_url:
        import psycopg

        with psycopg.connect(cli.owner_url) as db:
            key_id, wrapped = db.execute(select).fetchone()
            db.execute("UPDATE keyring_labkey SET wrapped = %s WHERE id = %s",
                       [_flip(bytes(wrapped)), key_id])
    else:
        import sqlite3

        with sqlite3.connect(cli.home / "coffre.sqlite3") as db:
            key_id, wrapped = db.execute(select).fetchone()
            db.execute("UPDATE keyring_labkey SET wrapped = ? WHERE id = ?",
                       [_flip(bytes(wrapped)), key_id])
    yield cli
    drop_database(database)


def _flip(wrapped: bytes) -> bytes:
    """One bit of the ciphertext changed (after the 17-byte header)."""
    return wrapped[:30] + bytes([wrapped[30] ^ 1]) + wrapped[31:]


def test_a_damaged_lab_key_stops_every_command_naming_the_lab(damaged):
    """Every command of the parser (each subcommand, with the least arguments it takes)
    run against the installation: each stops before doing anything, exit code 2, with
    the lab's FINESS and name."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from tests.cli_helpers import "
                           "run_every_command; run_every_command()"], capture_output=True,
                          text=True, env=damaged.env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) > 50 and ["init"] in [r["argv"] for r in results]
    wrong = [r for r in results if r["code"] != 2 or "key problem: lab 690000013 "
             "(Laboratoire Autre): the key of lab" not in r["stderr"]
             or "does not open" not in r["stderr"] or "Traceback" in r["stderr"]]
    assert wrong == []


def test_a_damaged_lab_key_stops_the_server_naming_the_lab(damaged):
    """What gunicorn's workers import (coffre.wsgi), and gunicorn itself: it does not
    serve with a worker that fails to boot."""
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run([sys.executable, "-c", "import coffre.wsgi"], capture_output=True,
                            text=True, env=damaged.env, timeout=120)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "refusing to start: lab 690000013 (Laboratoire Autre)" in result.stderr
    server = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "coffre.wsgi:application", "-b",
         f"127.0.0.1:{free_port()}", "-w", "1"], capture_output=True, text=True,
        env=damaged.env, timeout=60)
    assert server.returncode == 3 and "Worker failed to boot" in server.stderr
    assert "refusing to start: lab 690000013 (Laboratoire Autre)" in server.stderr
