"""The ``.cbk`` backup file: a vault stream (coffre/vault/stream.py) whose authenticated
public header names the format, the database vendor, the creation time (UTC), the
master key the backup key is derived from, and the plaintext size.

The backup key is HKDF(master key, "coffre/backup/v1"): the master key lives outside
the database (key file or environment), so a backup can be verified and restored on a
machine holding nothing but the key file and the .cbk. It is never derived from
SECRET_KEY. No Django import here: the format can be read by a recovery tool.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import BinaryIO

from coffre.vault import DecryptionError, KeyProviderError, MasterKeys, VaultError
from coffre.vault.stream import Advance, decrypt_stream, encrypt_stream, read_header

FORMAT = "coffre-backup/1"
BACKUP_INFO = b"coffre/backup/v1"
SUFFIX = ".cbk"
VENDORS = ("sqlite", "postgresql")


class ArchiveError(Exception):
    """The file cannot be verified; the message says why."""


def backup_key(master: MasterKeys, key_id: bytes | None = None) -> bytes:
    key = master.current if key_id is None else master.by_id(key_id)
    return key.derive(BACKUP_INFO)


def write_archive(src: BinaryIO, dst: BinaryIO, master: MasterKeys, vendor: str, size: int,
                  advance: Advance | None = None) -> dict:
    if vendor not in VENDORS:
        raise ValueError(f"unknown vendor {vendor}")
    fields = {"format": FORMAT, "vendor": vendor,
              "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "master_key": master.current.hex_id, "bytes": size}
    header = encrypt_stream(src, dst, backup_key(master), fields, advance=advance)
    return header


def peek(path: Path) -> dict:
    """The (unauthenticated) header of a backup file, for listing."""
    try:
        with open(path, "rb") as handle:
            header = read_header(handle)
    except OSError as exc:
        raise ArchiveError(f"{path} cannot be read ({exc.strerror})") from None
    except DecryptionError as exc:
        raise ArchiveError(f"{path} is not a Coffre backup ({exc})") from None
    header.pop("_prefix_digest", None)
    if header.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a Coffre backup (format {header.get('format')!r})")
    return header


def read_archive(path: Path, dst: BinaryIO | None, master: MasterKeys,
                 vendor: str | None = None, advance: Advance | None = None) -> dict:
    """Decrypt and verify the whole file (into ``dst`` unless None); ArchiveError if any
    check fails: unknown master key, other vendor, changed, truncated or extended file."""
    header = peek(path)
    if vendor is not None and header.get("vendor") != vendor:
        raise ArchiveError(f"{path.name} is a backup of a {header.get('vendor')} database; "
                           f"this installation uses {vendor}")
    try:
        key = backup_key(master, bytes.fromhex(str(header.get("master_key", ""))))
    except ValueError:
        raise ArchiveError(f"{path.name} has a damaged header") from None
    except KeyProviderError:
        raise ArchiveError(
            f"{path.name} was encrypted under master key {header.get('master_key')}, which "
            f"this installation does not hold") from None
    try:
        with open(path, "rb") as handle:
            verified = decrypt_stream(handle, dst, key, advance=advance)
    except OSError as exc:
        raise ArchiveError(f"{path} cannot be read ({exc.strerror})") from None
    except VaultError as exc:
        raise ArchiveError(f"{path.name} does not verify: {exc}") from None
    if verified.get("total") != verified.get("bytes"):
        raise ArchiveError(f"{path.name} does not verify: {verified.get('total')} bytes "
                           f"decrypted, the header announces {verified.get('bytes')}")
    return verified
