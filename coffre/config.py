"""Where Coffre keeps its state, read from the environment in one place.

Everything lives under ``COFFRE_HOME`` (default ``./coffre-data``): the SQLite database,
logs, backups and export staging. The master key file defaults to ``COFFRE_HOME/keys``
but production installations should point ``COFFRE_KEY_FILE`` elsewhere (docs/keys.md).
This module imports nothing from Django so the CLI can report problems before setup.
"""

from __future__ import annotations

import errno
import ipaddress
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
    """A directory under COFFRE_HOME (logs, backups, exports), created owner-only.

    A read-only, full or foreign COFFRE_HOME stops here with a ConfigError naming it,
    not with a traceback from whichever module first writes there.
    """
    path = home() / name
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(disk_problem(exc, path)) from None
    if not os.access(path, os.W_OK):
        raise ConfigError(disk_problem(OSError(errno.EROFS if _read_only(path)
                                               else errno.EACCES, "not writable"), path))
    return path


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def disk_problem(exc: OSError, path: Path | str | None = None) -> str:
    """A one-line explanation of a failed write, with what to do (never a traceback)."""
    where = Path(path or exc.filename or home())
    inside = f"COFFRE_HOME {home()}" if _is_under(where, home()) else str(where)
    if exc.errno == errno.EROFS:
        return (f"{inside} is read-only ({where}): remount it read-write or point "
                "COFFRE_HOME at a writable directory")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the disk holding {where}: free some space (df -h "
                f"{where.parent if where.suffix else where}), e.g. old backups or exports, "
                "then run the command again; nothing half-written was kept")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{inside} is not writable by this user ({where}): run Coffre as the "
                "user that owns it, or fix its owner (chown) and mode (chmod 700)")
    return f"cannot write {where}: {exc.strerror or exc}"


def inside_home(path: Path) -> bool:
    """Whether ``path`` (followed through symbolic links) lies under COFFRE_HOME, which a
    copy of the data directory or of its backups would carry."""
    return _is_under(path, home())


def _is_under(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent)
    except ValueError:
        return False
    return True


# Production settings (docs/deploy.md). Each is read here so `coffre check --production`
# and the settings agree on names and defaults.

def log_format() -> str:
    value = os.environ.get("COFFRE_LOG_FORMAT", "plain") or "plain"
    if value not in {"plain", "json"}:
        raise ConfigError("COFFRE_LOG_FORMAT must be plain or json")
    return value


def trusted_proxies() -> int | tuple[str, ...]:
    """``COFFRE_TRUSTED_PROXIES``: the reverse proxies whose X-Forwarded-For is believed
    (coffre.serving.proxy). A number N: every request passes through N proxies. Else
    comma-separated addresses or networks (``127.0.0.1,::1``, ``10.0.0.0/8``). Unset:
    none, and the client is REMOTE_ADDR."""
    value = os.environ.get("COFFRE_TRUSTED_PROXIES", "").strip()
    if not value:
        return ()
    if value.isascii() and value.isdigit():
        return int(value)
    networks = []
    for part in (p.strip() for p in value.split(",")):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(f"COFFRE_TRUSTED_PROXIES: {part!r} is neither an address nor "
                              "a network; give the number of proxies in front of Coffre or "
                              "their addresses, e.g. 127.0.0.1,::1") from None
    return tuple(networks)


def redis_url() -> str | None:
    return os.environ.get("COFFRE_REDIS_URL") or None


def static_root() -> Path | None:
    value = os.environ.get("COFFRE_STATIC_ROOT")
    return Path(value).resolve() if value else None


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
