"""Where Coffre keeps its state, read from the environment in one place.

Everything lives under ``COFFRE_HOME`` (default ``./coffre-data``): the SQLite database,
logs, backups and export staging. The master key file defaults to ``COFFRE_HOME/keys``
but production installations should point ``COFFRE_KEY_FILE`` elsewhere (docs/keys.md).
This module imports nothing from Django so the CLI can report problems before setup.
"""

from __future__ import annotations

import os
from pathlib import Path


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


def home() -> Path:
    return Path(os.environ.get("COFFRE_HOME", "coffre-data")).resolve()


def key_file() -> Path:
    value = os.environ.get("COFFRE_KEY_FILE")
    return Path(value).resolve() if value else home() / "keys" / "master.key"


def database_url() -> str | None:
    return os.environ.get("COFFRE_DATABASE_URL") or None


def sqlite_path() -> Path:
    return home() / "coffre.sqlite3"


def subdir(name: str) -> Path:
    """A directory under COFFRE_HOME (logs, backups, exports), created owner-only."""
    path = home() / name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number") from None


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false")
