"""Online backups and verified restores, on SQLite or PostgreSQL.

A backup is a consistent snapshot (SQLite's backup API, or ``pg_dump --format=custom``)
written to a clear temporary file under COFFRE_HOME/backups (0700 directory, 0600
file), encrypted into a ``.cbk`` (coffre/backups/archive.py), and the clear file is
unlinked at once, in a ``finally`` so a failure never leaves it behind.

A restore first decrypts and authenticates the whole file; nothing is touched before
that succeeded. Then SQLite's database file is replaced atomically (``os.replace``),
or ``pg_restore --clean --if-exists --no-owner --single-transaction`` runs, and the
erasure ledger is re-applied so that patients erased after the backup stay erased.

Between the replacement and the end of the re-application, the restored database holds
the keys of patients erased since the backup. A marker file written (and fsynced) before
the replacement, removed only once the ledger is re-applied, closes that window: every
start (each ``coffre`` command, ``coffre init``, each server worker) first finishes an
interrupted restore (``finish_restore``), and refuses to start while it cannot. A
restore killed at any point therefore leaves the old database or the restored one,
and no process reads the restored one before the erasures are back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from coffre import config, faults
from coffre.audit import chain
from coffre.backups.archive import SUFFIX, ArchiveError, peek, read_archive, write_archive
from coffre.files import private_file

BIG = 32 << 20  # show progress bars from this size on
Bars = Callable[[str, int | None], Callable[[int], None]]


class BackupError(Exception):
    """A backup or restore failed; nothing was changed (the message says why)."""


def vendor() -> str:
    return "postgresql" if config.database_url() else "sqlite"


def backup_dir() -> Path:
    path = config.subdir("backups")
    os.chmod(path, 0o700)
    return path


def _master():
    from coffre.keyring.services import master_keys

    return master_keys()


@contextlib.contextmanager
def clear_temp(directory: Path, prefix: str) -> Iterator[Path]:
    """A 0600 temporary file that is unlinked however the block ends (with SQLite's
    side files, should a connection have left them)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"),
                         Path(f"{path}-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


class _HashingWriter:
    """Writes to ``handle`` and hashes what it wrote, in a second thread so that SHA-256
    and the disk overlap with the encryption (both release the GIL on big buffers)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.handle.write(data)
                    self.sha256.update(data)
                except BaseException as exc:  # reported by close()
                    self._error = exc

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        self.bytes += len(data)
        self._queue.put(data)
        return len(data)

    def close(self) -> None:
        """Wait for every write; raise the first write error."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


# ----------------------------------------------------------------- PostgreSQL tools

def _pg_settings() -> dict:
    from django.conf import settings

    return settings.DATABASES["default"]


def _pg_env() -> dict[str, str]:
    """libpq environment for pg_dump / pg_restore: the password stays out of argv."""
    db = _pg_settings()
    env = dict(os.environ)
    for var, key in (("PGDATABASE", "NAME"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD"),
                     ("PGHOST", "HOST"), ("PGPORT", "PORT")):
        if db.get(key):
            env[var] = str(db[key])
    sslmode = (db.get("OPTIONS") or {}).get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = str(sslmode)
    return env


def pg_tool(name: str) -> str:
    """The pg_dump / pg_restore matching the server's major version when installed."""
    from django.db import connection

    connection.ensure_connection()
    major = connection.pg_version // 10000
    candidate = Path(f"/usr/lib/postgresql/{major}/bin/{name}")
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} is not installed (PostgreSQL {major} client tools needed)")
    return found


def _run_pg(args: list[str], what: str) -> None:
    # args: an absolute pg_dump/pg_restore path and our own temporary file; no shell.
    result = subprocess.run(args, env=_pg_env(), capture_output=True, text=True)  # noqa: S603
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {' / '.join(message[-3:]) or result.returncode}")


# ------------------------------------------------------------------------- backup

def _snapshot(target: Path) -> None:
    if vendor() == "sqlite":
        src = sqlite3.connect(config.sqlite_path())
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    else:
        _run_pg([pg_tool("pg_dump"), "--format=custom", "--file", str(target)], "pg_dump")


def _default_out(directory: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"coffre-{stamp}{SUFFIX}"
    number = 1
    while path.exists():
        path = directory / f"coffre-{stamp}-{number}{SUFFIX}"
        number += 1
    return path


def make_backup(out: Path | None = None, add: Bars | None = None) -> dict:
    started = time.perf_counter()
    directory = backup_dir()
    target = out.resolve() if out else _default_out(directory)
    if target.exists():
        raise BackupError(f"{target} already exists; not overwriting")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory")
    master = _master()
    with clear_temp(directory, ".snapshot-") as clear:
        _snapshot(clear)
        size = clear.stat().st_size
        advance = add("encrypting", size) if add and size >= BIG else None
        try:
            # Linked into place once complete: never over a file made meanwhile.
            with private_file(target, replace=False) as raw, open(clear, "rb") as src:
                writer = _HashingWriter(raw)
                try:
                    header = write_archive(src, writer, master, vendor(), size, advance)
                finally:
                    writer.close()
        except FileExistsError:
            raise BackupError(f"{target} already exists; not overwriting") from None
    return {"path": str(target), "bytes": writer.bytes, "sha256": writer.sha256.hexdigest(),
            "vendor": header["vendor"], "created": header["created"],
            "master_key": header["master_key"], "database_bytes": size,
            "seconds": round(time.perf_counter() - started, 3)}


# ------------------------------------------------------------------- verify, list

def verify(path: Path, add: Bars | None = None) -> dict:
    """Decrypt the whole file without writing anything; BackupError if it fails."""
    advance = _advance(path, add, "verifying")
    try:
        return read_archive(path, None, _master(), vendor=vendor(), advance=advance)
    except ArchiveError as exc:
        raise BackupError(str(exc)) from None


def _advance(path: Path, add: Bars | None, what: str):
    try:
        size = path.stat().st_size
    except OSError:
        return None
    return add(what, size) if add and size >= BIG else None


def list_backups(check: bool = False) -> list[dict]:
    rows = []
    for path in sorted(backup_dir().glob(f"*{SUFFIX}")):
        stat = path.stat()
        row: dict = {"path": str(path), "bytes": stat.st_size,
                     "modified": dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
                     .isoformat(timespec="seconds")}
        try:
            header = peek(path)
            row.update(created=header.get("created"), vendor=header.get("vendor"),
                       master_key=header.get("master_key"))
        except ArchiveError as exc:
            row.update(created=None, vendor=None, master_key=None, error=str(exc))
        if check:
            try:
                read_archive(path, None, _master())
                row["verified"] = True
            except ArchiveError as exc:
                row.update(verified=False, error=str(exc))
        else:
            row["verified"] = None
        rows.append(row)
    return rows


# ------------------------------------------------------------------------ restore

def _remove_side_files(database: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{database}{suffix}").unlink()


def _restore_sqlite(clear: Path) -> None:
    from django.db import connections

    check = sqlite3.connect(clear)
    try:
        status = check.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        check.close()
    if status != "ok":
        raise BackupError(f"the decrypted database fails SQLite's check ({status})")
    with open(clear, "rb+") as handle:
        os.fsync(handle.fileno())
    connections.close_all()
    database = config.sqlite_path()
    if database.exists():  # fold the WAL into the old file so no stale frame survives
        old = sqlite3.connect(database)
        try:
            old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            old.close()
    _remove_side_files(database)
    os.replace(clear, database)
    _remove_side_files(database)
    _fsync_dir(database.parent)


def _restore_postgresql(clear: Path) -> None:
    from django.db import connections

    connections.close_all()
    _run_pg([pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner",
             "--single-transaction", "--exit-on-error", "--dbname",
             _pg_env()["PGDATABASE"], str(clear)], "pg_restore")


def reapply_erasures() -> tuple[int | None, str]:
    from coffre.lifecycle.erasure import reapply_ledger

    try:
        count = reapply_ledger()
    except Exception as exc:  # the restore is done: report, never hide, the failure
        return None, (f"the erasure ledger could not be re-applied ({exc}): fix it, then run "
                      f"`coffre ledger reapply`; until then nothing starts")
    return count, f"erasure ledger re-applied: {count} patient(s) erased again"


# --------------------------------------------------- a restore that did not finish

class RestoreUnfinished(BackupError):
    """A restore replaced the database but its erasures are not re-applied yet, and
    they cannot be now: nothing may read the database until they are."""


def pending_file() -> Path:
    return config.home() / "restore-pending.json"


def _write_durably(path: Path, data: dict) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file."""
    with private_file(path, text=True) as handle:
        json.dump(data, handle)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clear_pending() -> None:
    with contextlib.suppress(FileNotFoundError):
        pending_file().unlink()
    _fsync_dir(pending_file().parent)


def _after_replacement(marker: dict) -> tuple[int | None, str]:
    """What a restore does once the database is replaced; the marker goes only when all
    of it is done. The access log was rewound with the database: say so in the signed
    checkpoints before anything new is logged (the ledger's re-erasures are)."""
    if not marker.get("restore_recorded"):
        chain.record_restore()
        marker["restore_recorded"] = True
        _write_durably(pending_file(), marker)
    faults.point("restore-recorded")
    erased, message = reapply_erasures()
    if erased is not None:
        _clear_pending()
    return erased, message


def finish_restore() -> str | None:
    """Finish a restore that stopped after replacing the database (kill -9, a power cut,
    a ledger that did not verify). Every start calls it before serving anything; None
    when no restore is pending. Processes starting together take turns (a lock on the
    marker), and what is already done is not done twice. RestoreUnfinished when the
    erasure ledger still cannot be re-applied."""
    import fcntl

    path = pending_file()
    try:
        handle = open(path, "rb")  # noqa: SIM115 - held, locked, for the whole block
    except FileNotFoundError:
        return None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not path.exists():  # another process finished it while this one waited
            return None
        marker = json.loads(path.read_text())
        erased, message = _after_replacement(marker)
    if erased is None:
        raise RestoreUnfinished(f"the restore of {marker.get('backup')} (started "
                                f"{marker.get('started')}) is not finished: {message}")
    return (f"finished the restore of {marker.get('backup')} interrupted after "
            f"{marker.get('started')}: {message}")


def others_using_the_database() -> str | None:
    """Who else has the database open (a running ``coffre serve``, a psql session), or
    None. Replacing the database under them would mix their writes with the restored
    data, or leave a server writing into a file that is no longer the database."""
    if vendor() == "postgresql":
        from django.db import connection

        with connection.cursor() as cursor:
            # This command's own pool may hold more than one session.
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND backend_type = 'client backend' "
                           "AND application_name <> current_setting('application_name')")
            others = cursor.fetchone()[0]
        return f"{others} other session(s) are connected to the database" if others else None
    holders = _processes_holding(config.sqlite_path())
    if holders:
        return f"process(es) {', '.join(map(str, holders))} have the database open"
    return None


def _processes_holding(database: Path) -> list[int]:
    """Other processes with the SQLite file (or its WAL) open, from /proc (Linux); the
    processes of other users are not visible unless this one runs as root."""
    names = {str(database), f"{database}-wal"}
    holders = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_dir.parent.name)
        if pid == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in names for fd in fd_dir.iterdir()):
                holders.append(pid)
        except OSError:  # gone, or another user's
            continue
    return sorted(holders)


def restore(path: Path, confirm: Callable[[dict], bool] | None = None,
            add: Bars | None = None) -> dict:
    """Verify all of ``path``, ask ``confirm(header)`` (unless None), then restore."""
    started = time.perf_counter()
    path = path.resolve()
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    busy = others_using_the_database()
    if busy:
        raise BackupError(f"{busy}: stop `coffre serve` (and any other client) first; "
                          "nothing was changed")
    if confirm is not None:
        header = verify(path, add)
        if not confirm(header):
            raise BackupError("restore cancelled; nothing was changed")
    database = config.sqlite_path()
    directory = database.parent if vendor() == "sqlite" else backup_dir()  # same filesystem
    with clear_temp(directory, ".restore-") as clear:
        advance = _advance(path, add, "decrypting")
        try:
            with open(clear, "wb") as dst:
                header = read_archive(path, dst, _master(), vendor=vendor(), advance=advance)
                dst.flush()
        except ArchiveError as exc:
            raise BackupError(f"{exc}; nothing was changed") from None
        marker = {"backup": str(path), "started": dt.datetime.now(dt.UTC).isoformat(
            timespec="seconds"), "restore_recorded": False}
        _write_durably(pending_file(), marker)  # before the database changes
        try:
            if vendor() == "sqlite":
                _restore_sqlite(clear)
            else:
                _restore_postgresql(clear)
        except BackupError:  # refused before the swap, or rolled back: nothing changed
            _clear_pending()
            raise
    faults.point("restore-replaced")
    erased, ledger = _after_replacement(marker)
    return {"restored": str(path), "vendor": header["vendor"], "created": header["created"],
            "master_key": header["master_key"], "database_bytes": header["total"],
            "erasures_reapplied": erased, "ledger": ledger,
            "seconds": round(time.perf_counter() - started, 3)}
