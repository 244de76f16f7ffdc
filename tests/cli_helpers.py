"""Running the real ``coffre`` command in a private COFFRE_HOME (and database)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from coffre import config


@dataclass
class Cli:
    home: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, stdin: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "coffre", *args], input=stdin,
                                capture_output=True, text=True,
                                env={**self.env, **(extra_env or {})}, timeout=600)
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
        url = self.env.get("COFFRE_DATABASE_URL")
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



def make_cli(home: Path) -> tuple[Cli, str | None]:
    """A CLI with its own home; on PostgreSQL, its own database (returned to drop)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"COFFRE_MASTER_KEY", "COFFRE_KEY_FILE", "DJANGO_SETTINGS_MODULE"}}
    env["COFFRE_HOME"] = str(home)
    env["COFFRE_EXPECTED_PATIENTS"] = "1000"
    database = None
    url = config.database_url()
    if url:
        database = f"coffre_cli_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{database}"')
        env["COFFRE_DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + database
    return Cli(home, env), database


def drop_database(name: str | None) -> None:
    if name:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str) -> None:
    import psycopg

    url = config.database_url() or ""
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


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
