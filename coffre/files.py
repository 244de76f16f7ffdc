"""Files readable by their owner only (0600), written atomically: the master key file,
the secret key, the auditor's key, backups, exports, reports. Imports nothing of coffre,
so every layer may use it (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def private_file(path: Path, *, replace: bool = True, text: bool = False
                 ) -> Iterator[IO[Any]]:
    """Write ``path`` readable by its owner only (0600), atomically: the block fills a
    temporary file created 0600 in the same directory (``.NAME.XXXX.part``), which is
    then fsynced and renamed into place, the directory fsynced too. A crash or an
    exception leaves the old file or none, never a half one.

    ``replace=False`` never replaces an existing file, even one made meanwhile: the
    file is linked into place and FileExistsError raised if the name is taken. Errors
    creating the temporary file are raised before the block runs."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w" if text else "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            _link_new(temporary, path)
        _fsync_directory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_private(path: Path, content: bytes | str, *, replace: bool = True) -> None:
    """:func:`private_file` with the whole content at once (str is written as UTF-8)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with private_file(path, replace=replace) as handle:
        handle.write(data)


def _link_new(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)  # atomic, and never over a file made meanwhile
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temporary, path)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except PermissionError:  # a directory one may write in but not list: renamed all the same
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
