#!/usr/bin/env python3.11
"""Set-up and run Coffre on a fresh machine with only Python 3.11.

    python3.11 dev.py run    # virtualenv, install, init, demo data, serve on 127.0.0.1:8000
    python3.11 dev.py test   # virtualenv, install, the whole test suite

The virtualenv lives in .venv and is reinstalled when pyproject.toml changes.
Extra arguments after ``test`` go to pytest; after ``run``, to ``coffre serve``.
The tests run on every core (pytest-xdist, ``-n auto``); ``-n 1``, ``-n 0`` or
``-p no:xdist`` after ``test`` say otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
CHROMIUM = "/usr/bin/chromium"


def ensure_venv() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Coffre needs Python 3.11 (this is {sys.version.split()[0]})")
    if not (BIN / "python").exists():
        print("creating the virtual environment in .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        print("installing Coffre and its dependencies", flush=True)
        subprocess.run([BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                       check=True)
        subprocess.run([BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]"],
                       check=True, cwd=ROOT)
        stamp.write_text(digest)


def run(extra: list[str]) -> int:
    coffre = str(BIN / "coffre")
    for step in (["init"], ["demo"]):
        code = subprocess.run([coffre, *step]).returncode
        if code:
            return code
    return subprocess.run([coffre, "serve", *extra]).returncode


def ensure_chromium() -> bool:
    """The browser tests drive Debian's Chromium; install it when we may (root + apt)."""
    if Path(CHROMIUM).exists():
        return True
    apt = shutil.which("apt-get")
    if os.geteuid() == 0 and apt:
        print("installing Debian's chromium for the browser tests", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], check=False, env=env)
        subprocess.run([apt, "install", "-y", "-qq", "chromium"], check=False, env=env)
    return Path(CHROMIUM).exists()


def parallel(extra: list[str]) -> list[str]:
    """``-n auto`` (pytest-xdist: one worker per core) unless the arguments choose."""
    chosen = any(arg in {"-n", "--numprocesses", "no:xdist", "-pno:xdist"}
                 or arg.startswith("--numprocesses=")
                 or (arg.startswith("-n") and not arg.startswith("--"))
                 for arg in extra)
    return extra if chosen else ["-n", "auto", *extra]


def test(extra: list[str]) -> int:
    extra = parallel(extra)
    if not ensure_chromium():
        print(f"*** {CHROMIUM} is missing and cannot be installed here: the browser tests "
              "are NOT run (install Debian's chromium package to run them) ***", flush=True)
        extra = ["-m", "not browser", *extra]
    return subprocess.run([str(BIN / "python"), "-m", "pytest", *extra], cwd=ROOT).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__)
        return 2
    ensure_venv()
    os.environ.setdefault("COFFRE_HOME", str(ROOT / "coffre-data"))
    action = run if sys.argv[1] == "run" else test
    return action(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
