"""Appending to and verifying the forward-secure access log (see coffre.vault.chain).

The chain's first key k_0 is random and sealed to the auditor's X25519 public key
(`coffre init` makes the pair and prints the private key once: it never stays on the
machine), so the running server forgets it after the first entry. The current key k_i
lives in ChainHead sealed under the installation's "audit" key (wrapped by the master
key): a copy of the database cannot recompute any MAC, and a compromised server only
later ones. Without
an auditor key, k_0 is sealed under the audit key instead: then only a copy of the
database, not a compromised server, is kept from rewriting the log.

Checkpoints (seq, MAC, time, Ed25519 signature) are appended to
COFFRE_HOME/audit/checkpoints.jsonl (and to syslog when COFFRE_AUDIT_SYSLOG is set)
after commit, at most every COFFRE_AUDIT_CHECKPOINT_SECONDS: truncating the table or
rewriting its tail is then caught against a copy the database does not hold.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import logging
import logging.handlers
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone

from coffre import config
from coffre.audit.models import AccessEvent, ChainHead
from coffre.bulk import bulk_insert
from coffre.files import write_private
from coffre.keyring import services as keyring
from coffre.vault import Key, context
from coffre.vault.chain import (
    GENESIS,
    CheckpointSigner,
    auditor_public_of,
    chain_mac,
    digest,
    new_auditor_keypair,
    next_key,
    open_as_auditor,
    same_mac,
    seal_for_auditor,
    signature_valid,
)

AUDIT_KEY = "audit"
_HEAD_AD = context("audit", "chain-head")
FIELDS = ("seq", "at", "person", "role", "channel", "lab_id", "patient_id", "action", "kind",
          "address", "outcome")


def audit_key() -> keyring.KeyVersions:
    return keyring.installation_key(AUDIT_KEY)


_FIRST_AD = context("audit", "chain-first-key")


class VerifyError(Exception):
    """Verification cannot start (e.g. the auditor key is needed); nothing was checked."""


def auditor_public_key_file() -> Path:
    return config.home() / "audit" / "auditor.pub"


def default_auditor_private_file() -> Path:
    """Where `coffre init` used to leave the auditor's private key (before it was
    printed once instead): `coffre check --production` fails while a file lies there."""
    return config.home() / "audit" / "auditor-private.key"


def auditor_public_key() -> bytes | None:
    value = os.environ.get("COFFRE_AUDITOR_PUBLIC_KEY")
    path = auditor_public_key_file()
    if not value and path.exists():
        value = path.read_text().strip()
    return base64.b64decode(value) if value else None


def create_auditor_key(private_file: Path | None = None) -> str:
    """A new auditor key pair; returns the private key in base64.

    The public key goes under COFFRE_HOME. The private key never does: a server that
    holds it could rewrite the log from its first entry, and every copy of the data
    directory would carry it. It is written to ``private_file`` (0600, refused inside
    COFFRE_HOME: removable media, or the auditor's machine over a mount) or, without a
    file, only returned for the caller to show once. Only before the first entry: k_0
    is sealed when the chain starts."""
    if private_file is not None and config.inside_home(private_file):
        raise VerifyError(f"{private_file} is inside COFFRE_HOME ({config.home()}): the "
                          "auditor's private key must not stay with the data; give a path "
                          "outside it (removable media), or no file to have it printed once")
    if ChainHead.objects.exists():
        raise VerifyError("the access log has started: its first key is already sealed")
    private, public = new_auditor_keypair()
    text = base64.b64encode(private).decode()
    if private_file is not None:
        private_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            write_private(private_file, text + "\n", replace=False)
        except FileExistsError:
            raise VerifyError(f"{private_file} already exists; not overwriting") from None
    config.subdir("audit")
    auditor_public_key_file().write_text(base64.b64encode(public).decode() + "\n")
    return text


def read_auditor_private(text: str) -> bytes:
    """The raw private key from what the auditor kept (the base64 line, spaces and line
    breaks allowed); ValueError if it is not one."""
    raw = base64.b64decode("".join(text.split()), validate=True)
    if len(raw) != 32 or auditor_public_of(raw) is None:
        raise ValueError("not an auditor private key")
    return raw


# A private key file is one base64 line of 32 bytes (45 bytes with its newline).
_KEY_FILE_MAX_BYTES = 256


def private_keys_under_home() -> list[Path]:
    """Files under COFFRE_HOME that hold the auditor's private key: the place `coffre
    init` used to write it, and any small file (whatever its name) whose content is the
    private half of this installation's auditor public key."""
    if not config.home().is_dir():
        return []
    found = []
    legacy = default_auditor_private_file()
    if legacy.exists():
        found.append(legacy)
    public = auditor_public_key()
    if public is None:
        return found
    for folder, _dirs, names in os.walk(config.home()):
        for name in names:
            path = Path(folder) / name
            if path == legacy or path.is_symlink():
                continue
            try:
                if path.stat().st_size > _KEY_FILE_MAX_BYTES:
                    continue
                raw = read_auditor_private(path.read_text(errors="strict"))
            except (OSError, ValueError):
                continue
            if auditor_public_of(raw) == public:
                found.append(path)
    return found


def _new_first_key() -> tuple[bytes, bytes, str]:
    """(k_0, k_0 sealed for its holder, holder). With an auditor key, the server keeps
    no way back to k_0: even a compromised server cannot rewrite past entries."""
    first = os.urandom(32)
    public = auditor_public_key()
    if public:
        return first, seal_for_auditor(public, first), "auditor"
    return first, audit_key().seal_bytes(first, _FIRST_AD), "installation"


def first_chain_key(auditor_private: bytes | None = None) -> bytes:
    head = ChainHead.objects.filter(pk=1).first()
    if head is None:
        raise VerifyError("the access log is empty")
    if head.first_key_holder == "auditor":
        if auditor_private is None:
            raise VerifyError("the chain's first key is sealed for the auditor: pass "
                              "--auditor-key with the auditor's private key file")
        return open_as_auditor(auditor_private, bytes(head.first_key))
    return audit_key().open_bytes(bytes(head.first_key), _FIRST_AD)


_SIGNER_INFO = b"coffre/audit-checkpoint/v1"


def signer() -> CheckpointSigner:
    """The checkpoint signer of the active audit key version, read afresh: after
    `coffre keys rotate --installation audit`, no checkpoint is signed with the old one."""
    keyring.forget_installation_key(AUDIT_KEY)
    return CheckpointSigner(audit_key().derive(_SIGNER_INFO))


def _rotation_message(previous: bytes, new: bytes, seq: int, at: str) -> bytes:
    return f"coffre-audit-key-rotation/1|{previous.hex()}|{new.hex()}|{seq}|{at}".encode()


def record_key_rotation(old: Key, new: Key) -> None:
    """Run by `coffre keys rotate --installation audit` before the new version is used:
    a line, signed by the new checkpoint key, naming the old one, so that `coffre audit
    verify` still trusts the checkpoints written before it (and only those: a line the
    old key signs after this one is refused, so a thief of the old key cannot add one)."""
    previous = CheckpointSigner(old.derive(_SIGNER_INFO)).public_bytes
    following = CheckpointSigner(new.derive(_SIGNER_INFO))
    head = ChainHead.objects.filter(pk=1).first()
    seq = head.seq if head is not None else 0
    at = timezone.now().astimezone(dt.UTC).isoformat()
    message = _rotation_message(previous, following.public_bytes, seq, at)
    _append_line({"key_rotation": True, "previous": previous.hex(),
                  "next": following.public_bytes.hex(), "seq": seq, "at": at,
                  "signature": following.sign(message).hex()})


def _append_line(item: dict) -> None:
    with open(checkpoint_file(), "a", encoding="ascii") as handle:
        handle.write(json.dumps(item) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def canonical(entry: dict) -> bytes:
    """The bytes a MAC covers: every field, and a digest of the sealed purpose."""
    parts = [_text(entry[name]) for name in FIELDS]
    parts.append(digest(bytes(entry.get("purpose") or b"")))
    return "\x1f".join(parts).encode()


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


# Raw SQL on the hot path: every read of a patient appends here, and the ORM's query
# compilation cost more than the append itself (docs/benchmarks.md).
_HEAD = "SELECT seq, mac, key, checkpoint_epoch FROM audit_chainhead WHERE id = 1"
_MOVE = "UPDATE audit_chainhead SET seq = %s, mac = %s, key = %s WHERE id = 1"
_MOVE_CHECKPOINT = ("UPDATE audit_chainhead SET seq = %s, mac = %s, key = %s, "
                    "checkpoint_seq = %s, checkpoint_epoch = %s WHERE id = 1")


def append(entries: list[dict]) -> None:
    """Chain and insert entries (dicts of AccessEvent fields without seq and mac).

    Runs in one transaction holding the head row (FOR UPDATE on PostgreSQL; SQLite's
    IMMEDIATE transactions lock the database), so concurrent writers queue up and the
    chain stays linear; a rolled-back transaction takes its entries and the head move
    with it, so no gap can appear.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        head = _locked_head(cursor)
        if head is None:  # the first entry ever: k_0 lives in memory only, never in a row
            seq, mac, checkpoint_epoch = 0, GENESIS, 0
            key, sealed_first, holder = _new_first_key()
            ChainHead.objects.create(pk=1, seq=0, mac=GENESIS, first_key=sealed_first,
                                     first_key_holder=holder, key=b"")
        else:
            seq, mac, sealed_key, checkpoint_epoch = head
            key, mac = audit_key().open_bytes(bytes(sealed_key), _HEAD_AD), bytes(mac)
        for entry in entries:
            seq += 1
            entry["seq"] = seq
            entry.setdefault("purpose", b"")
            mac = entry["mac"] = chain_mac(key, canonical(entry), mac)
            key = next_key(key)
        bulk_insert(AccessEvent, entries)
        sealed_key = audit_key().seal_bytes(key, _HEAD_AD)
        now = int(time.time())
        if now - checkpoint_epoch >= config.env_int("COFFRE_AUDIT_CHECKPOINT_SECONDS", 60):
            cursor.execute(_MOVE_CHECKPOINT, [seq, mac, sealed_key, seq, now])
            last_seq, last_mac = seq, mac
            transaction.on_commit(lambda: write_checkpoint(last_seq, last_mac))
        else:
            cursor.execute(_MOVE, [seq, mac, sealed_key])


def _locked_head(cursor) -> tuple | None:
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    cursor.execute(_HEAD + lock)
    return cursor.fetchone()


def checkpoint_file() -> Path:
    return config.subdir("audit") / "checkpoints.jsonl"


def _checkpoint_message(seq: int, mac: bytes, at: str) -> bytes:
    return f"coffre-audit-checkpoint/1|{seq}|{mac.hex()}|{at}".encode()


def write_checkpoint(seq: int, mac: bytes) -> None:
    """Append one signed line; fsync so a crash cannot lose an acknowledged head."""
    at = timezone.now().astimezone(dt.UTC).isoformat()
    item = {"seq": seq, "mac": mac.hex(), "at": at,
            "signature": signer().sign(_checkpoint_message(seq, mac, at)).hex()}
    _append_line(item)
    line = json.dumps(item)
    if os.environ.get("COFFRE_AUDIT_SYSLOG"):
        _syslog().info("coffre audit checkpoint %s", line)


def _restore_message(seq: int, mac: bytes, at: str) -> bytes:
    return f"coffre-audit-restore/1|{seq}|{mac.hex()}|{at}".encode()


def record_restore() -> None:
    """After a database restore, before any new entry: a signed marker that the log
    now continues from the restored head. Checkpoints beyond it belong to the timeline
    the restore abandoned; verify drops them and counts the restore, so an auditor
    sees every rewind instead of a false "truncated" alarm."""
    head = ChainHead.objects.filter(pk=1).first()
    seq, mac = (head.seq, bytes(head.mac)) if head is not None else (0, GENESIS)
    at = timezone.now().astimezone(dt.UTC).isoformat()
    _append_line({"restore": True, "seq": seq, "mac": mac.hex(), "at": at,
                  "signature": signer().sign(_restore_message(seq, mac, at)).hex()})


def checkpoint_now() -> None:
    """Write a checkpoint of the current head (e.g. before a backup or at shutdown)."""
    head = ChainHead.objects.filter(pk=1).first()
    if head is not None and head.seq:
        write_checkpoint(head.seq, bytes(head.mac))


def _syslog() -> logging.Logger:
    logger = logging.getLogger("coffre.audit.syslog")
    if not logger.handlers:
        logger.addHandler(logging.handlers.SysLogHandler(address="/dev/log"))
        logger.setLevel(logging.INFO)
    return logger


@dataclass
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    restores: int = 0  # database restores recorded (coffre restore)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _signers(items: list[dict | None]) -> list[tuple[bytes, int]]:
    """The checkpoint keys to trust, each with the number of lines it may sign: the
    current key all of them, an older key only those before the rotation line that
    the following key signed, naming it."""
    current = signer().public_bytes
    trusted = [(current, len(items))]
    known = {current}
    for number in range(len(items) - 1, -1, -1):
        item = items[number]
        if not item or item.get("key_rotation") is not True:
            continue
        try:
            previous, following = bytes.fromhex(item["previous"]), bytes.fromhex(item["next"])
            message = _rotation_message(previous, following, int(item["seq"]),
                                        str(item["at"]))
            signature = bytes.fromhex(item["signature"])
        except (ValueError, KeyError, TypeError):
            continue
        if following in known and previous not in known and signature_valid(
                following, message, signature):
            trusted.append((previous, number))
            known.add(previous)
    return trusted


def _checkpoints(report: VerifyReport) -> dict[int, bytes]:
    """Valid checkpoints by seq; a forged or damaged line is a problem of its own."""
    path = checkpoint_file()
    found: dict[int, bytes] = {}
    if not path.exists():
        return found
    items: list[dict | None] = []
    for line in path.read_text(encoding="ascii").splitlines():
        try:
            item = json.loads(line)
            items.append(item if isinstance(item, dict) else None)
        except ValueError:
            items.append(None)
    signers = _signers(items)
    for number, item in enumerate(items, start=1):
        if item is not None and item.get("key_rotation") is True:
            continue
        try:
            if item is None:
                raise ValueError("not a JSON object")
            seq, mac, at = int(item["seq"]), bytes.fromhex(item["mac"]), str(item["at"])
            signature = bytes.fromhex(item["signature"])
        except (ValueError, KeyError, TypeError):
            report.problems.append(f"checkpoint line {number} is malformed")
            continue
        restore = item.get("restore") is True
        message = (_restore_message if restore else _checkpoint_message)(seq, mac, at)
        if not any(number <= until and signature_valid(public, message, signature)
                   for public, until in signers):
            report.problems.append(f"checkpoint line {number} has an invalid signature")
            continue
        if restore:  # the log was rewound to seq: later checkpoints are of the old timeline
            found = {s: m for s, m in found.items() if s < seq}
            report.restores += 1
            if seq == 0:
                continue
        found[seq] = mac
    report.checkpoints = len(found)
    return found


def _rows() -> Iterator[dict]:
    columns = (*FIELDS, "purpose", "mac", "id")
    yield from AccessEvent.objects.order_by("seq").values(*columns).iterator(chunk_size=5000)


def verify(advance: Callable[[int], None] | None = None,
           auditor_private: bytes | None = None) -> VerifyReport:
    """Recompute the whole chain from k_0; name the first changed, removed or reordered
    entry, and any truncation against the signed checkpoints."""
    report = VerifyReport()
    checkpoints = _checkpoints(report)
    head = ChainHead.objects.filter(pk=1).first()
    if head is None:
        if AccessEvent.objects.exists() or checkpoints:
            report.problems.append("the chain head is missing (the log was wiped or altered)")
        _check_truncation(report, checkpoints, 0)
        return report
    key, mac, expected, last_id = first_chain_key(auditor_private), GENESIS, 1, 0
    for row, following in itertools.pairwise(itertools.chain(_rows(), [None])):
        report.entries += 1
        seq = row["seq"]
        if seq != expected:
            report.problems.append(f"entry {expected} is missing (removed); the chain "
                                   f"resumes at entry {seq}")
            return report
        computed = chain_mac(key, canonical(row), mac)
        if not same_mac(computed, bytes(row["mac"])):
            # Rows are inserted in chain order, so their ids rise with seq; an entry
            # whose id breaks that order was moved, not merely edited.
            moved = row["id"] < last_id or (following is not None and following["id"] < row["id"])
            report.problems.append(f"entry {seq} is out of order (reordered)" if moved
                                   else f"entry {seq} has been changed (its MAC does not match)")
            return report
        if seq in checkpoints and not same_mac(checkpoints[seq], computed):
            report.problems.append(f"entry {seq} does not match its signed checkpoint")
            return report
        key, mac, expected, last_id = next_key(key), computed, expected + 1, row["id"]
        if advance:
            advance(1)
    last = expected - 1
    _check_truncation(report, checkpoints, last)
    if head.seq != last:
        report.problems.append(f"the chain head says entry {head.seq} but the log ends at "
                               f"entry {last}")
    elif last and not (same_mac(bytes(head.mac), mac) and same_mac(
            audit_key().open_bytes(bytes(head.key), _HEAD_AD), key)):
        # The head's key can only be sealed with the master key: a tail cut by someone
        # without it leaves a head that does not follow from the last entry.
        report.problems.append(f"the chain head does not follow from entry {last} "
                               "(the log's tail was cut or the head altered)")
    return report


def _check_truncation(report: VerifyReport, checkpoints: dict[int, bytes], last: int) -> None:
    beyond = [seq for seq in checkpoints if seq > last]
    if beyond:
        report.problems.append(f"the log is truncated: it ends at entry {last} but a signed "
                               f"checkpoint records entry {max(beyond)}")
