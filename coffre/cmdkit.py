"""What every ``coffre`` command module uses: the handler registry, the errors that end a
command with one line, JSON lines output, owner-only file writing and the lab lookup.

Each capability keeps its commands in its own ``commands.py`` (``add_arguments(sub)``,
handlers registered with :func:`command`); ``coffre.cli`` imports them. This module
imports nothing of the apps at import time (and no Django), so anything may use it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}
# Sub-commands of a group that several capabilities share (``patient``): group -> name.
SUBCOMMANDS: dict[str, dict[str, Handler]] = {}
_GROUPS: dict[tuple[int, str], argparse._SubParsersAction] = {}


class CommandError(Exception):
    """A clear, user-facing failure; printed without a traceback, exit code 1 (or
    ``code``: 2 for bad input, as argparse does)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class BadInput(CommandError):
    """The arguments or the input file are wrong: exit code 2, nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)


def command(name: str) -> Callable[[Handler], Handler]:
    """Register the handler of the top-level command ``name``."""
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = handler
        return handler

    return register


def subcommand(group: str, name: str) -> Callable[[Handler], Handler]:
    """Register the handler of ``coffre GROUP NAME`` when another module owns GROUP (its
    handler hands the sub-commands it does not know to :func:`run_subcommand`)."""
    def register(handler: Handler) -> Handler:
        SUBCOMMANDS.setdefault(group, {})[name] = handler
        return handler

    return register


def run_subcommand(group: str, name: str, args: argparse.Namespace) -> int:
    return SUBCOMMANDS[group][name](args)


def group_parsers(sub: argparse._SubParsersAction, name: str, dest: str,
                  help: str) -> argparse._SubParsersAction:
    """The sub-parsers of the group ``name`` (made once per top-level parser), so that
    several capabilities can add their sub-commands to it."""
    key = (id(sub), name)
    group = _GROUPS.get(key)
    if group is None:
        group = _GROUPS[key] = sub.add_parser(name, help=help).add_subparsers(
            dest=dest, required=True)
    return group


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    import django

    django.setup()


def print_json_lines(rows: list[dict]) -> None:
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


def lab(finess: str, code: int = 2) -> Any:
    """The lab with this FINESS, or a one-line error (exit ``code``) naming the problem."""
    from coffre.labs.services import LabError, lab_by_finess

    try:
        return lab_by_finess(finess)
    except LabError as exc:
        raise (BadInput(str(exc)) if code == 2 else CommandError(str(exc), code)) from None


def lab_actor(finess: str) -> Any:
    """The CLI's actor in the lab with this FINESS (unknown lab: exit 2)."""
    from coffre.labs.tenancy import cli_actor

    return cli_actor(lab(finess).id)


# --- owner-only files ----------------------------------------------------------------

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


def write_output(path: Path, content: bytes, force: bool) -> None:
    """Write a file the operator named (``--out``), readable by its owner only (0600);
    never replace one unless told (``--force``). Refusals are :class:`BadInput`."""
    if path.is_dir():
        raise BadInput(f"{path} is a directory")
    if not path.parent.is_dir():
        raise BadInput(f"{path.parent} is not a directory")
    if (path.exists() or path.is_symlink()) and not force:
        raise BadInput(f"{path} exists: use --force to replace it")
    started = False
    try:
        with private_file(path, replace=force) as handle:
            started = True
            handle.write(content)
    except OSError as exc:
        if started and not isinstance(exc, FileExistsError):
            raise  # a full or failing disk: coffre.cli says so
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None


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
