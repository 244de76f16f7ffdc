"""Encrypted backups and verified restores: the stream format as plain functions, then
``coffre backup`` / ``coffre restore`` through the real command (SQLite, or PostgreSQL
when COFFRE_DATABASE_URL is set)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
import struct
import subprocess
import sys

import pytest

from coffre.identity.registry import CSV_COLUMNS
from coffre.identity.synthetic import generate_patients
from coffre.vault import DecryptionError, decrypt_stream, encrypt_stream
from coffre.vault.stream import MAGIC, TAG_BYTES
from tests.cli_helpers import drop_database, make_cli, printed_auditor_key

KEY = bytes(range(32))
CHUNK = 64

# ------------------------------------------------------------------ stream format


def seal(data: bytes, key: bytes = KEY, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key, {"what": "test"}, chunk_size=chunk)
    return out.getvalue()


def unseal(blob: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    header = decrypt_stream(io.BytesIO(blob), out, key)
    assert header["total"] == len(out.getvalue()) and header["what"] == "test"
    return out.getvalue()


def body_start(blob: bytes) -> int:
    (length,) = struct.unpack(">I", blob[len(MAGIC) + 1:len(MAGIC) + 5])
    return len(MAGIC) + 5 + length


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 7])
def test_stream_round_trip(size):
    data = os.urandom(size)
    blob = seal(data)
    assert unseal(blob) == data
    chunks = max(1, -(-size // CHUNK))
    assert len(blob) == body_start(blob) + size + chunks * TAG_BYTES
    # The plaintext does not appear in the body (below 16 bytes a random match is likely).
    assert size < 16 or data not in blob[body_start(blob):]


def test_stream_files_differ_for_the_same_input():
    data = b"x" * 200
    assert seal(data)[body_start(seal(data)):] != seal(data)[body_start(seal(data)):]


@pytest.mark.parametrize("keep", ["boundary", "mid-chunk", "header-only", "tag-cut"])
def test_stream_truncation_is_detected(keep):
    data = os.urandom(4 * CHUNK + 10)
    blob = seal(data)
    start, sealed = body_start(blob), CHUNK + TAG_BYTES
    cut = {"boundary": start + 2 * sealed, "mid-chunk": start + 2 * sealed + 20,
           "header-only": start, "tag-cut": len(blob) - 3}[keep]
    with pytest.raises(DecryptionError):
        unseal(blob[:cut])


def test_stream_truncation_of_an_exact_multiple_is_detected():
    blob = seal(os.urandom(4 * CHUNK))
    with pytest.raises(DecryptionError):
        unseal(blob[:body_start(blob) + 3 * (CHUNK + TAG_BYTES)])


def test_stream_reordered_chunks_are_detected():
    blob = seal(os.urandom(4 * CHUNK + 10))
    start, sealed = body_start(blob), CHUNK + TAG_BYTES
    chunks = [blob[start + i * sealed:start + (i + 1) * sealed] for i in range(4)]
    tail = blob[start + 4 * sealed:]
    swapped = blob[:start] + chunks[1] + chunks[0] + b"".join(chunks[2:]) + tail
    with pytest.raises(DecryptionError):
        unseal(swapped)


def test_stream_appended_or_duplicated_data_is_detected():
    blob = seal(os.urandom(2 * CHUNK + 10))
    start, sealed = body_start(blob), CHUNK + TAG_BYTES
    with pytest.raises(DecryptionError):
        unseal(blob + b"\x00" * 40)
    with pytest.raises(DecryptionError):  # a whole chunk replayed at the end
        unseal(blob + blob[start:start + sealed])


def test_stream_flipped_byte_anywhere_is_detected():
    blob = seal(os.urandom(3 * CHUNK))
    header_json = len(MAGIC) + 5 + 2  # inside the JSON header
    for position in (header_json, body_start(blob), body_start(blob) + CHUNK + 3, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        with pytest.raises(DecryptionError):
            unseal(bytes(damaged))


def test_stream_wrong_key_or_not_a_stream_is_refused():
    blob = seal(b"hello" * 50)
    with pytest.raises(DecryptionError):
        unseal(blob, key=bytes(32))
    with pytest.raises(DecryptionError):
        unseal(b"SQLite format 3\x00" + bytes(100))


# ------------------------------------------------------------------ the real command

FINESS = "750000010"


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def add_patients(cli, tmp_path, seed: int, count: int = 1) -> list[dict]:
    rows = list(generate_patients(count, seed=seed))
    cli.run("import", "patients", str(write_csv(tmp_path / f"p{seed}.csv", rows)),
            "--lab", FINESS)
    return rows


def found(cli, row: dict) -> bool:
    return bool(cli.json_lines("patient", "find", "--nir", row["nir"], "--lab", FINESS))


def clear_leftovers(cli) -> list[str]:
    """Clear temporary files (snapshot, restore, partial backup) anywhere in the home."""
    return [str(p) for p in cli.home.rglob("*")
            if p.name.startswith((".snapshot-", ".restore-")) or p.name.endswith(".part")]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    printed = cli.run("init").stdout
    # The auditor keeps the key `init` printed once, off the machine (here: outside home).
    cli.auditor_key = tmp_path_factory.mktemp("auditor") / "auditor.key"
    cli.auditor_key.write_text(printed_auditor_key(printed) + "\n")
    cli.run("lab", "add", "--finess", FINESS, "--name", "Laboratoire Test")
    add_patients(cli, tmp_path_factory.mktemp("csv"), seed=11, count=5)
    yield cli
    drop_database(database)


@pytest.fixture(scope="module")
def other_cli(tmp_path_factory):
    """Another installation: another master key."""
    cli, database = make_cli(tmp_path_factory.mktemp("other"))
    cli.run("init")
    yield cli
    drop_database(database)


def backup(cli, *args: str) -> dict:
    (summary,) = cli.json_lines("backup", *args)
    return summary


def refused(cli, path, *words: str) -> None:
    result = cli.run("restore", str(path), "--yes", check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "restore refused" in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert clear_leftovers(cli) == []


def test_backup_is_private_encrypted_and_leaves_no_clear_file(cli):
    summary = backup(cli)
    path = cli.home / "backups" / os.path.basename(summary["path"])
    assert path.exists() and path.name.startswith("coffre-") and path.suffix == ".cbk"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert summary["bytes"] == path.stat().st_size
    import hashlib

    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    expected = "postgresql" if "COFFRE_DATABASE_URL" in cli.env else "sqlite"
    assert summary["vendor"] == expected and summary["seconds"] >= 0
    assert [p.name for p in path.parent.iterdir()] == [path.name] or all(
        p.suffix == ".cbk" for p in path.parent.iterdir())
    assert clear_leftovers(cli) == []
    head = path.read_bytes()[:16]
    assert b"SQLite format" not in head and b"PGDMP" not in head
    result = cli.run("leakcheck", check=False)  # the backup is scanned with the rest
    assert result.returncode == 0, result.stdout
    assert "no patient value found" in result.stdout


def test_restore_brings_back_the_snapshot(cli, tmp_path):
    before = add_patients(cli, tmp_path, seed=21)[0]
    summary = backup(cli, "--out", str(tmp_path / "snap.cbk"))
    assert stat.S_IMODE(os.stat(summary["path"]).st_mode) == 0o600
    later = add_patients(cli, tmp_path, seed=22)[0]
    assert found(cli, before) and found(cli, later)
    (restored,) = cli.json_lines("restore", summary["path"], "--yes")
    assert restored["vendor"] == summary["vendor"] and restored["created"] == summary["created"]
    assert "erasures_reapplied" in restored
    assert found(cli, before) and not found(cli, later)
    assert clear_leftovers(cli) == []
    # the restored database is fully usable: a new import works
    assert found(cli, add_patients(cli, tmp_path, seed=23)[0])


def test_restore_refuses_while_another_process_uses_the_database(cli, tmp_path):
    """A running server (here: a process holding the database open) would keep writing
    into a database the restore replaces: the restore stops before changing anything."""
    summary = backup(cli)
    url = cli.env.get("COFFRE_DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url):
            refused(cli, summary["path"], "1 other session(s) are connected",
                    "stop `coffre serve`")
    else:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys, time; "
             "sqlite3.connect(sys.argv[1]).execute('SELECT 1'); print('open', flush=True); "
             "time.sleep(60)", str(cli.home / "coffre.sqlite3")],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "open"
            refused(cli, summary["path"], f"process(es) {holder.pid} have the database open")
        finally:
            holder.kill()
            holder.wait()
    (restored,) = cli.json_lines("restore", summary["path"], "--yes")  # alone: it runs
    assert restored["created"] == summary["created"]


def test_restore_asks_first_and_a_no_changes_nothing(cli, tmp_path):
    summary = backup(cli, "--out", str(tmp_path / "ask.cbk"))
    later = add_patients(cli, tmp_path, seed=31)[0]
    result = cli.run("restore", summary["path"], stdin="no\n", check=False)
    assert result.returncode == 2 and "cancelled" in result.stderr
    assert found(cli, later)
    result = cli.run("restore", summary["path"], stdin="yes\n")
    assert not found(cli, later)


def test_damaged_or_foreign_backups_are_refused_and_nothing_changes(cli, other_cli, tmp_path):
    good = tmp_path / "good.cbk"
    backup(cli, "--out", str(good))
    marker = add_patients(cli, tmp_path, seed=41)[0]  # would vanish if a restore ran
    blob = good.read_bytes()

    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    (tmp_path / "flipped.cbk").write_bytes(bytes(flipped))
    refused(cli, tmp_path / "flipped.cbk", "does not verify")

    (tmp_path / "truncated.cbk").write_bytes(blob[:-100])
    refused(cli, tmp_path / "truncated.cbk", "does not verify")

    (tmp_path / "header.cbk").write_bytes(blob[:20])
    refused(cli, tmp_path / "header.cbk")

    (tmp_path / "appended.cbk").write_bytes(blob + b"\x00" * 16)
    refused(cli, tmp_path / "appended.cbk", "does not verify")

    (tmp_path / "clear.cbk").write_bytes(b"SQLite format 3\x00" + bytes(4096))
    refused(cli, tmp_path / "clear.cbk", "not a Coffre backup")

    foreign = backup(other_cli, "--out", str(tmp_path / "foreign.cbk"))
    refused(cli, foreign["path"], "master key", "does not hold")

    assert found(cli, marker)


def test_a_backup_of_the_other_vendor_is_refused(cli, tmp_path):
    from coffre.backups.archive import write_archive
    from coffre.vault.master import read_key_file

    master = read_key_file(cli.home / "keys" / "master.key")
    other = "sqlite" if "COFFRE_DATABASE_URL" in cli.env else "postgresql"
    path = tmp_path / "vendor.cbk"
    with open(path, "wb") as out:
        write_archive(io.BytesIO(b"not a database"), out, master, other, 14)
    marker = add_patients(cli, tmp_path, seed=51)[0]
    refused(cli, path, f"backup of a {other} database")
    assert found(cli, marker)


def test_backup_list_reports_and_verifies(cli):
    good = backup(cli)
    backups = cli.home / "backups"
    damaged = backups / "coffre-damaged.cbk"
    shutil.copy(good["path"], damaged)
    with open(damaged, "r+b") as handle:
        handle.seek(-5, os.SEEK_END)
        handle.write(b"\xff\xff\xff\xff\xff")
    try:
        rows = {os.path.basename(r["path"]): r for r in cli.json_lines("backup", "list")}
        assert rows[os.path.basename(good["path"])]["verified"] is None
        assert rows["coffre-damaged.cbk"]["bytes"] == good["bytes"]
        assert rows["coffre-damaged.cbk"]["created"] == good["created"]
        rows = {os.path.basename(r["path"]): r
                for r in cli.json_lines("backup", "list", "--verify")}
        assert rows[os.path.basename(good["path"])]["verified"] is True
        assert rows["coffre-damaged.cbk"]["verified"] is False
        assert "does not verify" in rows["coffre-damaged.cbk"]["error"]
    finally:
        damaged.unlink()


def test_backup_refuses_to_overwrite(cli, tmp_path):
    out = tmp_path / "exists.cbk"
    out.write_bytes(b"keep me")
    result = cli.run("backup", "--out", str(out), check=False)
    assert result.returncode == 1 and "already exists" in result.stderr
    assert out.read_bytes() == b"keep me"
    assert clear_leftovers(cli) == []


def test_a_patient_erased_after_the_backup_stays_erased(cli, tmp_path):
    pytest.importorskip("coffre.lifecycle.erasure")
    row = add_patients(cli, tmp_path, seed=61)[0]
    (patient,) = cli.json_lines("patient", "find", "--nir", row["nir"], "--lab", FINESS)
    summary = backup(cli, "--out", str(tmp_path / "before-erasure.cbk"))
    cli.run("patient", "erase", "--id", patient["id"], "--lab", FINESS,
            "--reason", "demande du patient", "--yes")
    assert not found(cli, row)
    (restored,) = cli.json_lines("restore", summary["path"], "--yes")
    assert restored["erasures_reapplied"] >= 1, restored
    assert not found(cli, row)


def test_the_restored_sqlite_file_is_private(cli):
    if "COFFRE_DATABASE_URL" in cli.env:
        pytest.skip("SQLite only")
    database = cli.home / "coffre.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_a_failing_block_leaves_no_clear_temporary_file(tmp_path):
    from coffre.backups.service import clear_temp

    with pytest.raises(RuntimeError), clear_temp(tmp_path, ".snapshot-") as path:
        path.write_bytes(b"clear database pages")
        (tmp_path / f"{path.name}-wal").write_bytes(b"wal")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_disaster_recovery_with_only_the_key_file_and_the_backup(cli, tmp_path_factory):
    """The machine is lost: a new installation holding the same key file restores."""
    summary = backup(cli)
    expected = {r["nir"] for r in generate_patients(5, seed=11)}
    fresh, database = make_cli(tmp_path_factory.mktemp("recovered"))
    try:
        (fresh.home / "keys").mkdir(mode=0o700)
        shutil.copy2(cli.home / "keys" / "master.key", fresh.home / "keys" / "master.key")
        fresh.run("init")
        (restored,) = fresh.json_lines("restore", summary["path"], "--yes")
        assert restored["created"] == summary["created"]
        assert all(found(fresh, {"nir": nir}) for nir in expected)
    finally:
        drop_database(database)


def test_the_access_log_stays_verifiable_across_a_restore(cli, tmp_path):
    """The restore rewinds the log with the database; the signed restore marker lets
    `audit verify` follow the new timeline and report the rewind, not a truncation."""
    summary = backup(cli, "--out", str(tmp_path / "log.cbk"))
    add_patients(cli, tmp_path, seed=31)  # entries after the snapshot...
    cli.run("audit", "checkpoint")        # ...signed into a checkpoint
    cli.json_lines("restore", summary["path"], "--yes")
    add_patients(cli, tmp_path, seed=32)  # the new timeline reuses those entry numbers
    cli.run("audit", "checkpoint")
    result = cli.run("audit", "verify", "--auditor-key", str(cli.auditor_key), check=False)
    assert result.returncode == 0, result.stdout
    assert "database restore(s)" in result.stdout and "intact" in result.stdout
