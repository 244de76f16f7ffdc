"""Backup benchmark: encrypted online backup and verified restore against a plain copy.

    .venv/bin/python bench/backup.py                   # 20,000 patients, SQLite
    .venv/bin/python bench/backup.py --patients 5000   # quicker
    COFFRE_DATABASE_URL=postgresql://... bench/backup.py   # PostgreSQL (own database)

In a private COFFRE_HOME: `coffre init`, `coffre generate --patients N`, then, in the
same run, a plain copy of the database (SQLite: copying the file; PostgreSQL: a clear
pg_dump), `coffre backup` and `coffre restore --yes` (which decrypts and verifies the
whole file before replacing anything). Figures: the commands' own seconds (without
Python start-up) and wall-clock seconds of the whole command, MB/s over the database
size, and each one's ratio to the plain copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def coffre(env: dict, *args: str) -> tuple[str, float]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "coffre", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"coffre {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout, time.perf_counter() - started


def plain_copy(env: dict, home: Path) -> float:
    target = home / "plain-copy.tmp"
    started = time.perf_counter()
    if env.get("COFFRE_DATABASE_URL"):
        subprocess.run(["pg_dump", "--format=custom", "--file", str(target),
                        env["COFFRE_DATABASE_URL"]], check=True)
    else:
        shutil.copyfile(home / "coffre.sqlite3", target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="coffre-bench-backup-"))
    env = {k: v for k, v in os.environ.items()
           if k not in {"COFFRE_MASTER_KEY", "COFFRE_KEY_FILE", "DJANGO_SETTINGS_MODULE"}}
    env["COFFRE_HOME"] = str(home)
    database = None
    url = os.environ.get("COFFRE_DATABASE_URL")
    if url:
        import psycopg

        database = f"coffre_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["COFFRE_DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + database
    try:
        coffre(env, "init", "--expected-patients", str(args.patients))
        _, generated = coffre(env, "generate", "--patients", str(args.patients))
        copy = plain_copy(env, home)
        out, backup_wall = coffre(env, "backup")
        summary = json.loads(out.splitlines()[-1])
        out, restore_wall = coffre(env, "restore", summary["path"], "--yes")
        restored = json.loads(out.splitlines()[-1])
        size = summary["database_bytes"]
        mb = size / 1e6
        print(f"vendor {summary['vendor']}, {args.patients:,} patients generated in "
              f"{generated:.1f} s; database snapshot {mb:.1f} MB, "
              f"encrypted backup {summary['bytes'] / 1e6:.1f} MB")
        print(f"plain copy          {copy:8.3f} s  {mb / copy:8.1f} MB/s  ratio 1.0")
        for name, inner, wall in (("backup", summary["seconds"], backup_wall),
                                  ("verified restore", restored["seconds"], restore_wall)):
            print(f"{name:<19} {inner:8.3f} s  {mb / inner:8.1f} MB/s  ratio "
                  f"{inner / copy:.1f}  (whole command {wall:.2f} s)")
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if database:
            import psycopg

            with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
