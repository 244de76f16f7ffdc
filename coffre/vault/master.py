"""Master key providers: a local key file (created by ``coffre init``) or an environment
variable. Room is left for a PKCS#11 provider: anything returning a :class:`MasterKeys`.

Fail closed: every problem raises :class:`KeyProviderError` with a message naming the
problem and what to do, and never a traceback or a half-working vault.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coffre.files import private_file
from coffre.vault.aead import KEY_BYTES, Key
from coffre.vault.errors import KeyProviderError

ENV_VAR = "COFFRE_MASTER_KEY"
FILE_FORMAT = "coffre-master-key/1"


def master_key_id(material: bytes) -> bytes:
    """A master key's id is derived from it, so a file cannot claim another key's id."""
    return hmac.new(material, b"coffre/master-key-id", hashlib.sha256).digest()[:4]


def master_key(material: bytes) -> Key:
    return Key(master_key_id(material), material)


@dataclass(frozen=True)
class MasterKeys:
    """The current master key plus older versions still needed to unwrap (rotation)."""

    current: Key
    older: tuple[Key, ...] = ()
    source: str = ""

    def by_id(self, key_id: bytes) -> Key:
        for key in (self.current, *self.older):
            if key.key_id == key_id:
                return key
        raise KeyProviderError(
            f"the database needs master key {key_id.hex()}, which {self.source} does not hold"
        )


def _decode_material(text: str, where: str) -> bytes:
    try:
        material = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyProviderError(f"{where} is not base64") from None
    if len(material) != KEY_BYTES:
        raise KeyProviderError(f"{where} must hold {KEY_BYTES} bytes, not {len(material)}")
    return material


def create_key_file(path: Path) -> MasterKeys:
    """Write a new master key file, readable by its owner only; refuse to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    material = os.urandom(KEY_BYTES)
    document = {
        "format": FILE_FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "keys": [{"id": master_key_id(material).hex(),
                  "key": base64.b64encode(material).decode()}],
    }
    try:
        with private_file(path, replace=False, text=True) as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
    except FileExistsError:
        raise KeyProviderError(f"master key file {path} already exists; not overwriting") from None
    return read_key_file(path)


def add_key_version(path: Path) -> MasterKeys:
    """Prepend a new current master key to an existing file (rotation keeps the old ones)."""
    document = _load_document(path)
    material = os.urandom(KEY_BYTES)
    document["keys"].insert(0, {"id": master_key_id(material).hex(),
                                "key": base64.b64encode(material).decode()})
    return _replace_document(path, document)


def remove_key_version(path: Path, hex_id: str) -> MasterKeys:
    """Drop an old master key version from the file (after nothing is wrapped under it).
    The current (first) version is never removed."""
    document = _load_document(path)
    ids = [entry.get("id") for entry in document["keys"] if isinstance(entry, dict)]
    if hex_id not in ids:
        raise KeyProviderError(f"master key {hex_id} is not in {path}")
    if ids[0] == hex_id:
        raise KeyProviderError(f"master key {hex_id} is the current one; it cannot be retired")
    document["keys"] = [entry for entry in document["keys"]
                        if not (isinstance(entry, dict) and entry.get("id") == hex_id)]
    return _replace_document(path, document)


def _replace_document(path: Path, document: dict) -> MasterKeys:
    """Write the key file atomically (temporary file, fsync, rename)."""
    with private_file(path, text=True) as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    return read_key_file(path)


def _load_document(path: Path) -> dict:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyProviderError(
            f"master key file {path} does not exist: run `coffre init` on a new installation, "
            f"restore the key file from its safe place, or set {ENV_VAR}"
        ) from None
    except OSError as exc:
        raise KeyProviderError(f"master key file {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise KeyProviderError(f"master key file {path} is not a regular file")
    if mode & 0o077:
        raise KeyProviderError(
            f"master key file {path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise KeyProviderError(f"master key file {path} cannot be read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise KeyProviderError(f"master key file {path} is not a Coffre key file") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT \
            or not isinstance(document.get("keys"), list) or not document["keys"]:
        raise KeyProviderError(f"master key file {path} is not a Coffre key file")
    return document


def read_key_file(path: Path) -> MasterKeys:
    document = _load_document(path)
    keys = []
    for number, entry in enumerate(document["keys"], start=1):
        where = f"key {number} of {path}"
        if not isinstance(entry, dict):
            raise KeyProviderError(f"{where} is malformed")
        key = master_key(_decode_material(str(entry.get("key", "")), where))
        if key.hex_id != entry.get("id"):
            raise KeyProviderError(f"{where} is damaged (its id does not match its material)")
        keys.append(key)
    return MasterKeys(keys[0], tuple(keys[1:]), source=f"key file {path}")


def load_master_keys(key_file: Path, environ: Mapping[str, str]) -> MasterKeys:
    """The environment variable wins when set; otherwise the key file."""
    value = environ.get(ENV_VAR)
    if value is not None:
        versions = [v for v in value.split(",") if v.strip()]
        if not versions:
            raise KeyProviderError(f"{ENV_VAR} is set but empty")
        keys = [master_key(_decode_material(v, ENV_VAR)) for v in versions]
        return MasterKeys(keys[0], tuple(keys[1:]), source=ENV_VAR)
    return read_key_file(key_file)
