"""Running the real ``coffre`` command in a private COFFRE_HOME (and database).

On PostgreSQL each installation has its own database, created by the superuser with
production's grants to the application role (tests/app_role.py). The commands that
production runs as the owner role (docs/deploy.md: ``init``, ``backup``, ``restore``)
run with the superuser's URL (``owner_url``); every other command, and every server a
test starts from ``env``, connects as the application role."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from coffre import config
from tests import app_role

# What docs/deploy.md runs with owner.env: the schema, pg_dump, dropping tables.
OWNER_COMMANDS = frozenset({"init", "backup", "restore"})


@dataclass
class Cli:
    home: Path
    env: dict[str, str]
    owner_url: str | None = None  # PostgreSQL: the superuser, standing for the owner role

    def env_for(self, command: str) -> dict[str, str]:
        """The environment production would run ``coffre COMMAND`` with."""
        if command in OWNER_COMMANDS and self.owner_url:
            return {**self.env, "COFFRE_DATABASE_URL": self.owner_url}
        return self.env

    def run(self, *args: str, check: bool = True, stdin: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = {**self.env_for(args[0] if args else ""), **(extra_env or {})}
        result = subprocess.run([sys.executable, "-m", "coffre", *args], input=stdin,
                                capture_output=True, text=True, env=env, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"coffre {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json_lines(self, *args: str) -> list[dict]:
        return [json.loads(line) for line in self.run(*args).stdout.splitlines() if line]

    def python(self, code: str) -> str:
        """Run Python against this installation (vault opened, Django set up), as the
        server would: e.g. a step the web pages take. Returns its standard output."""
        result = subprocess.run(
            [sys.executable, "-c", "from coffre.cli import open_vault\nopen_vault()\n" + code],
            capture_output=True, text=True, env=self.env, timeout=600)
        if result.returncode != 0:
            raise AssertionError(f"python failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def sql(self, statement: str) -> None:
        """Run SQL on this CLI's database directly, as an intruder with a copy would."""
        url = self.owner_url
        if url:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(statement)
            return
        import sqlite3

        # Closed at once (``with`` on a sqlite3 connection only commits).
        with contextlib.closing(sqlite3.connect(self.home / "coffre.sqlite3")) as db, db:
            db.execute(statement)

    def sql_rows(self, query: str) -> list[tuple]:
        """The rows of a query on this CLI's database."""
        url = self.env.get("COFFRE_DATABASE_URL")
        if url:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                return [tuple(row) for row in conn.execute(query).fetchall()]
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.home / "coffre.sqlite3")) as db:
            return db.execute(query).fetchall()


def printed_auditor_key(stdout: str) -> str:
    """The auditor's private key as `coffre init` (or `coffre audit auditor-key`) printed
    it once."""
    lines = stdout.splitlines()
    return lines[lines.index("the auditor's private key, shown ONCE and kept nowhere on "
                             "this machine:") + 1].strip()


def free_port() -> int:
    """A TCP port free now on 127.0.0.1, for a server a test starts: never a fixed one,
    since the suite runs in parallel (pytest-xdist) and beside other runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_cli(home: Path) -> tuple[Cli, str | None]:
    """A CLI with its own home; on PostgreSQL, its own database (returned to drop)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"COFFRE_MASTER_KEY", "COFFRE_KEY_FILE", "DJANGO_SETTINGS_MODULE"}}
    env["COFFRE_HOME"] = str(home)
    env["COFFRE_EXPECTED_PATIENTS"] = "1000"
    if not config.database_url():
        return Cli(home, env), None
    database = f"coffre_cli_{uuid.uuid4().hex[:10]}"
    app_role.admin("postgres", f'CREATE DATABASE "{database}"')
    app_role.grant(database)
    env["COFFRE_DATABASE_URL"] = app_role.app_url(database)
    return Cli(home, env, app_role.admin_url(database)), database


def drop_database(name: str | None) -> None:
    if name:
        app_role.admin("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def demo_installation(tmp_path_factory, patients: int = 3) -> Iterator[Cli]:
    """A private installation with `coffre demo` loaded; ``cli.demo_finess`` is the
    first demo lab's FINESS. For module-scoped fixtures."""
    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    cli.run("init")
    cli.demo_output = cli.run("demo", "--patients", str(patients)).stdout
    cli.demo_finess = re.search(r"demo1 / .*FINESS (\d{9})", cli.demo_output).group(1)
    try:
        yield cli
    finally:
        drop_database(database)


def every_command(parser, prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """The least argv that the parser accepts for each of its (sub)commands."""
    import argparse

    args: list[str] = []
    subcommands = None
    grouped = {id(a) for g in parser._mutually_exclusive_groups for a in g._group_actions}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subcommands = action
        elif not action.option_strings:
            args.append(_value(action))
        elif action.required and id(action) not in grouped:
            args += [action.option_strings[0], *([] if action.nargs == 0 else
                                                 [_value(action)])]
    for group in parser._mutually_exclusive_groups:
        if group.required:
            action = group._group_actions[0]
            args += [action.option_strings[0], *([] if action.nargs == 0 else
                                                 [_value(action)])]
    if subcommands is None or not subcommands.required:
        yield [*prefix, *args]
    if subcommands is not None:
        seen = set()
        for name, sub in subcommands.choices.items():
            if id(sub) not in seen:
                seen.add(id(sub))
                yield from every_command(sub, (*prefix, *args, name))


def _value(action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    for candidate in ("1", "2024-01-01", "x"):
        try:
            if action.type:
                action.type(candidate)
        except Exception:  # noqa: S112 - not this type: try the next candidate
            continue
        return candidate
    raise AssertionError(f"no value for {action.dest}")


def run_every_command() -> None:
    """In a child process: each command through coffre.cli.main, as a fresh start (the
    key caches cleared), one JSON line per command: argv, exit code, stderr. A command
    that gets past the start (``serve``, ``hl7 listen``...) is stopped after 120 s (not
    20: a loaded machine took longer than that to start one)."""
    import io
    import signal

    from coffre import cli

    def hung(*_args) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, hung)
    for argv in every_command(cli.parser()):
        keyring = sys.modules.get("coffre.keyring.services")  # once Django is set up
        if keyring is not None:
            keyring.clear_caches()
        err = io.StringIO()
        signal.alarm(120)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse refused the arguments
                code = f"argparse {exc.code}"
            except BaseException as exc:  # ran past the start: the finding
                code = type(exc).__name__
        signal.alarm(0)
        print(json.dumps({"argv": argv, "code": code, "stderr": err.getvalue()}), flush=True)
