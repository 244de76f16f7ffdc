"""What every ``coffre`` command module uses: the handler registry, the errors that end a
command with one line, JSON lines output, the lab lookup and the files an operator names
(``--out``), written owner-only by coffre.files (re-exported: ``private_file``,
``write_private``).

Each capability keeps its commands in its own ``commands.py`` (``add_arguments(sub)``,
handlers registered with :func:`command`); ``coffre.cli`` imports them. This module
imports nothing of the apps at import time (and no Django): only the lab lookup reaches
coffre.tenancy, inside the function.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coffre.files import private_file, write_private

__all__ = ["COMMANDS", "BadInput", "CommandError", "command", "group_parsers", "lab",
           "lab_actor", "print_json_lines", "private_file", "run_subcommand", "setup_django",
           "subcommand", "write_output", "write_private"]

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
    from coffre.tenancy.services import LabError, lab_by_finess

    try:
        return lab_by_finess(finess)
    except LabError as exc:
        raise (BadInput(str(exc)) if code == 2 else CommandError(str(exc), code)) from None


def lab_actor(finess: str) -> Any:
    """The CLI's actor in the lab with this FINESS (unknown lab: exit 2)."""
    from coffre.tenancy.actors import cli_actor

    return cli_actor(lab(finess).id)


# --- output files the operator names -----------------------------------------------

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
