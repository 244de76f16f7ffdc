"""Login cost: one password verification with Coffre's Argon2id parameters and with
Django's default Argon2 parameters, measured in the same run.

    .venv/bin/python bench/login.py            # median of 20 check_password calls each
    .venv/bin/python bench/login.py --calls 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_ms(hasher, calls: int) -> float:
    from django.contrib.auth.hashers import check_password

    password = "Kx7#mPq2vL9w"  # noqa: S105 - a benchmark input
    encoded = hasher.encode(password, hasher.salt())
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        assert check_password(password, encoded, preferred=hasher)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("COFFRE_HOME", tempfile.mkdtemp(prefix="coffre-bench-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "coffre.settings"
    import django

    django.setup()
    from django.contrib.auth.hashers import Argon2PasswordHasher

    from coffre.accounts.hashers import CoffreArgon2Hasher

    coffre, default = CoffreArgon2Hasher(), Argon2PasswordHasher()
    coffre_ms = median_ms(coffre, args.calls)
    default_ms = median_ms(default, args.calls)
    print(f"CPUs: {os.cpu_count()}, median of {args.calls} check_password calls")
    print(f"Coffre  argon2id t={coffre.time_cost} m={coffre.memory_cost} KiB "
          f"p={coffre.parallelism}: {coffre_ms:.1f} ms")
    print(f"Django  argon2id t={default.time_cost} m={default.memory_cost} KiB "
          f"p={default.parallelism}: {default_ms:.1f} ms")
    print(f"ratio Coffre / Django default: {coffre_ms / default_ms:.2f}")


if __name__ == "__main__":
    main()
