"""The command kit's owner-only files: 0600, atomic, and never over a file when told not to."""

import os
import stat

import pytest

from coffre.cmdkit import BadInput, private_file, write_output, write_private


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_is_readable_by_its_owner_only_whatever_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        write_private(tmp_path / "secret", "value")
    finally:
        os.umask(umask)
    assert (tmp_path / "secret").read_text() == "value"
    assert mode(tmp_path / "secret") == 0o600


def test_it_replaces_a_file_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "key.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.json"]


def test_without_replace_an_existing_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "backup.cbk"
    path.write_text("first")
    with pytest.raises(FileExistsError):
        write_private(path, "second", replace=False)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.cbk"]


def test_a_failure_while_writing_leaves_the_old_file_or_none(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("complete")
    with pytest.raises(RuntimeError), private_file(path) as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), private_file(tmp_path / "new.csv") as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    assert path.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]


def test_an_output_file_is_replaced_only_with_force(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(b"old")
    with pytest.raises(BadInput, match="exists: use --force to replace it"):
        write_output(path, b"new", force=False)
    write_output(path, b"new", force=True)
    assert path.read_bytes() == b"new" and mode(path) == 0o600
    with pytest.raises(BadInput, match="is a directory"):
        write_output(tmp_path, b"x", force=True)
    with pytest.raises(BadInput, match="is not a directory"):
        write_output(tmp_path / "missing" / "report.pdf", b"x", force=False)
