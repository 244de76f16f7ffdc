"""The ``coffre`` command: parse, open the vault, dispatch. Each capability keeps its
subcommands in its own ``commands.py`` (listed in COMMAND_MODULES), built on
``coffre.cmdkit``; they parse their arguments and call services.

Every command but ``init`` first opens the vault and fails closed: a missing,
unreadable or wrong master key stops it with a message naming the problem.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from coffre import config
from coffre.cmdkit import COMMANDS, BadInput, CommandError, setup_django

__all__ = ["COMMANDS", "BadInput", "CommandError", "main", "open_vault", "parser",
           "setup_django"]

# Each capability's commands, in the order `coffre --help` lists them: each module has
# add_arguments(sub) (or the function named after a colon) and registers its handlers
# (coffre.cmdkit.command) on import.
COMMAND_MODULES: tuple[str, ...] = (
    "coffre.setup:add_init_arguments", "coffre.serving.commands", "coffre.setup",
    "coffre.tenancy.commands", "coffre.identity.commands", "coffre.leakcheck.commands",
    "coffre.audit.commands", "coffre.labwork.commands", "coffre.lifecycle.commands",
    "coffre.backups.commands", "coffre.keyring.commands", "coffre.exports.commands",
    "coffre.apiclients.commands", "coffre.breach.commands", "coffre.portal.commands",
)


def open_vault(finish_restore: bool = True) -> None:
    """Check the master key before Django touches anything, then against the database;
    then finish a restore that stopped before its erasures were re-applied (refusing to
    go on while it cannot, unless ``finish_restore`` is False: the commands that repair
    that situation)."""
    from coffre.vault import load_master_keys

    load_master_keys(config.key_file(), os.environ)
    if not config.database_url() and not config.sqlite_path().exists():
        from coffre.vault import KeyProviderError

        raise KeyProviderError(f"no database at {config.sqlite_path()}: run `coffre init`")
    setup_django()
    from django.db import DatabaseError, connection

    from coffre.keyring import services as keyring

    try:
        keyring.check()
    except DatabaseError:
        if connection.connection is None:  # never connected: the server is away
            # Not the driver's message: it may quote the connection string.
            where = connection.settings_dict.get("HOST") or connection.settings_dict["NAME"]
            raise CommandError(f"the database ({where}) cannot be reached: is it running, "
                               "and does COFFRE_DATABASE_URL name it?") from None
        raise CommandError("the database is not initialised: run `coffre init`") from None
    from coffre.backups.service import RestoreUnfinished
    from coffre.backups.service import finish_restore as finish

    try:
        done = finish()
    except RestoreUnfinished as exc:
        if finish_restore:
            raise CommandError(f"{exc}; `coffre ledger verify` names the problem",
                               code=2) from None
        print(f"coffre: {exc}", file=sys.stderr)
        return
    if done:
        print(f"coffre: {done}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="coffre", description="Coffre laboratory system")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in COMMAND_MODULES:  # importing a module registers its handlers
        name, _, function = entry.partition(":")
        getattr(importlib.import_module(name), function or "add_arguments")(sub)
    return top


REPAIRS_A_RESTORE = frozenset({"restore", "ledger"})

# Write failures with a cause the operator can fix (coffre.config.disk_problem says how).
DISK_ERRORS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES,
                         errno.EPERM})


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # the database, WAL, logs and exports: readable by their owner only
    args = parser().parse_args(argv)
    from coffre.vault import VaultError

    try:
        if args.command != "init":
            # What repairs an unfinished restore must run despite it: restore another
            # backup, or verify and re-apply the erasure ledger.
            open_vault(finish_restore=args.command not in REPAIRS_A_RESTORE)
        return COMMANDS[args.command](args)
    except VaultError as exc:
        print(f"coffre: key problem: {exc}", file=sys.stderr)
        return 2
    except config.ConfigError as exc:
        print(f"coffre: configuration problem: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"coffre: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `coffre specimens list | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        # A full or read-only disk mid-command (a backup, an export run): one clear line.
        print(f"coffre: {config.disk_problem(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("coffre: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        if not _reported_tampering(exc):
            raise
        print(f"coffre: {exc}; the data-protection officer was alerted", file=sys.stderr)
        return 1


def _reported_tampering(exc: BaseException) -> bool:
    """A lab row changed outside Coffre (coffre.labwork.sealing.TamperedRow): alerted as the
    command ends, its transaction rolled back. Only raised once that module is loaded,
    so it is looked up there rather than imported before Django is ready."""
    sealing = sys.modules.get("coffre.labwork.sealing")
    if sealing is None or not isinstance(exc, sealing.TamperedRow):
        return False
    from coffre.tenancy.actors import cli_actor

    sealing.report_tampering(exc, cli_actor(exc.lab_id).person)
    return True

