"""``coffre backup [--out FILE]``, ``coffre backup list [--verify]`` and
``coffre restore FILE [--yes]``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from coffre.cmdkit import BadInput, CommandError, command, print_json_lines
from coffre.progress import bars


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="encrypted online backup of the database "
                                      "(COFFRE_HOME/backups/coffre-<UTC time>.cbk)")
    p.add_argument("--out", type=Path, metavar="FILE", help="where to write the .cbk")
    actions = p.add_subparsers(dest="backup_command", required=False, metavar="ACTION")
    listing = actions.add_parser("list", help="the backups in COFFRE_HOME/backups")
    listing.add_argument("--verify", action="store_true",
                         help="decrypt every backup fully to check it")

    p = sub.add_parser("restore", help="verify an encrypted backup, then restore it "
                                       "(replaces the whole database: stop the server)")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


@contextlib.contextmanager
def _bars():
    """Progress bars on a terminal only (stdout stays one JSON line either way)."""
    if sys.stderr.isatty():
        with bars() as add:
            yield add
    else:
        yield None


@command("backup")
def backup(args: argparse.Namespace) -> int:
    from coffre.backups import service

    if getattr(args, "backup_command", None) == "list":
        print_json_lines(service.list_backups(check=args.verify))
        return 0
    try:
        with _bars() as add:
            summary = service.make_backup(args.out, add)
    except service.BackupError as exc:
        raise CommandError(f"backup failed: {exc}") from None
    print_json_lines([summary])
    return 0


def _ask(header: dict) -> bool:
    print(f"Restore the {header['vendor']} backup made {header['created']}? The current "
          f"database is replaced entirely (stop `coffre serve` first). Type 'yes' to go on: ",
          end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() == "yes"


@command("restore")
def restore(args: argparse.Namespace) -> int:
    from coffre.backups import service

    try:
        with _bars() as add:
            summary = service.restore(args.file, None if args.yes else _ask, add)
    except service.BackupError as exc:
        raise BadInput(f"restore refused: {exc}") from None
    print_json_lines([summary])
    if summary["erasures_reapplied"] is None:
        print(f"coffre: restored, but {summary['ledger']}", file=sys.stderr)
        return 1
    return 0
