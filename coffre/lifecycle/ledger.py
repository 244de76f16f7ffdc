"""The erasure ledger: an append-only JSON-lines file outside the database.

Restoring an old backup brings back the data keys of patients erased since; the ledger
(``COFFRE_HOME/ledger/erasures.jsonl``, which a database restore does not touch) lists
them so that ``coffre.lifecycle.erasure.reapply_ledger`` erases them again.

One line per erasure: sequence number, patient id, lab id, time, cause, the previous
line's MAC and this line's MAC: HMAC-SHA256 over the line's other fields (canonical
JSON), so every MAC chains to the one before. Ids only, never a patient value.

The MAC key is derived (HKDF, own label) from the blind-index root installation key,
which ``coffre init`` creates: every backup has it, so the ledger verifies against any
restored database of the installation. (An ``installation_key("ledger")`` created on
first use would be missing from a backup taken before the first erasure.)

What the chain detects: a changed, inserted, removed or reordered line. It cannot see
the last lines cut off; keep the ledger in the backups' off-site copy for that.

A crash in the middle of ``append`` can leave a last line without its newline (a torn
write). That erasure was never acknowledged: ``append`` fsyncs the whole line before
the erasure's transaction commits, so the database still holds the patient. Reading
skips a torn tail and reports it (``torn_tail``); the next ``append`` cuts it off.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from coffre import config
from coffre.vault import mac_hex, same_digest

GENESIS = "0" * 64
_INFO = b"coffre/lifecycle/erasure-ledger/v1"
FILE_NAME = "erasures.jsonl"


class LedgerError(Exception):
    """The ledger does not verify; ``line`` is the first bad line (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    patient_id: uuid.UUID
    lab_id: int
    at: dt.datetime
    cause: str
    mac: str


def ledger_dir() -> Path:
    return config.home() / "ledger"


def ledger_path() -> Path:
    return ledger_dir() / FILE_NAME


def _mac_key() -> bytes:
    from coffre.keyring import services as keyring

    return keyring.installation_key(keyring.INDEX_ROOT).derive(_INFO)


def _mac(key: bytes, fields: dict) -> str:
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return mac_hex(key, body)


def _open_for_append() -> int:
    directory = ledger_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd = os.open(ledger_path(), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _last_line(fd: int) -> str:
    """The file's last non-empty line (read backwards, the ledger can grow long)."""
    size = os.fstat(fd).st_size
    chunk = b""
    position = size
    while position > 0:
        step = min(4096, position)
        position -= step
        chunk = os.pread(fd, step, position) + chunk
        lines = [line for line in chunk.split(b"\n") if line.strip()]
        if len(lines) > 1 or (lines and position == 0):
            return lines[-1].decode()
    return ""


def _torn_start(fd: int) -> int | None:
    """Where an unterminated last line (a torn write) starts, or None."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return None
    position = size
    while position > 0:
        step = min(4096, position)
        position -= step
        newline = os.pread(fd, step, position).rfind(b"\n")
        if newline >= 0:
            return position + newline + 1
    return 0


def torn_tail() -> int:
    """Bytes of a torn last line left by an interrupted append (0 when none)."""
    path = ledger_path()
    if not path.exists():
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        start = _torn_start(fd)
        return 0 if start is None else os.fstat(fd).st_size - start
    finally:
        os.close(fd)


def append(patient_id: uuid.UUID, lab_id: int, cause: str = "request",
           at: dt.datetime | None = None) -> LedgerEntry:
    """Append one erasure, durably (fsync) before returning. Concurrent writers are
    serialised by an exclusive lock on the file."""
    key = _mac_key()
    at = at or dt.datetime.now(dt.UTC)
    fd = _open_for_append()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        torn = _torn_start(fd)
        if torn is not None:  # an interrupted append, never acknowledged: drop it
            os.ftruncate(fd, torn)
        last = _last_line(fd)
        if last:
            previous = json.loads(last)
            seq, prev = int(previous["seq"]) + 1, str(previous["mac"])
        else:
            seq, prev = 1, GENESIS
        fields = {"seq": seq, "patient": str(patient_id), "lab": int(lab_id),
                  "at": at.isoformat(), "cause": cause, "prev": prev}
        mac = _mac(key, fields)
        line = json.dumps({**fields, "mac": mac}, sort_keys=True, separators=(",", ":"))
        os.write(fd, line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return LedgerEntry(seq, uuid.UUID(str(patient_id)), int(lab_id), at, cause, mac)


def entries() -> list[LedgerEntry]:
    """Every entry, after checking the whole chain; LedgerError names the first bad line."""
    path = ledger_path()
    if not path.exists():
        return []
    key = _mac_key()
    result: list[LedgerEntry] = []
    prev = GENESIS
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                break  # a torn last line (see the module doc): not an entry
            if not raw.strip():
                raise LedgerError(f"line {number} is empty", number)
            try:
                row = json.loads(raw)
                fields = {name: row[name] for name in
                          ("seq", "patient", "lab", "at", "cause", "prev")}
                mac = str(row["mac"])
                if set(row) != {*fields, "mac"}:
                    raise ValueError("unexpected fields")
                entry = LedgerEntry(int(fields["seq"]), uuid.UUID(fields["patient"]),
                                    int(fields["lab"]), dt.datetime.fromisoformat(fields["at"]),
                                    str(fields["cause"]), mac)
            except (ValueError, KeyError, TypeError):
                raise LedgerError(f"line {number} is not a ledger entry", number) from None
            if not same_digest(_mac(key, fields), mac):
                raise LedgerError(f"line {number}: MAC does not verify (altered line)", number)
            if fields["prev"] != prev or entry.seq != number:
                raise LedgerError(f"line {number}: chain broken (line removed, inserted or "
                                  "reordered)", number)
            prev = mac
            result.append(entry)
    return result
