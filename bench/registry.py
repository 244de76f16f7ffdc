"""Registry benchmark: encrypted import against a plaintext baseline, and lookups.

    .venv/bin/python bench/registry.py                 # 100,000 and 491,840 patients
    .venv/bin/python bench/registry.py --sizes 20000   # a quick run

For each size: write a synthetic CSV (not timed), then in a fresh process each, import
it with full encryption and blind indexes, and through the same code path with
encryption switched off (this benchmark's own plaintext ``encrypt`` function); report
patients per second, the ratio and peak memory; then time lookups by NIR and by name +
birth date through the real access layer (audit entry included). Figures are ratios
and medians measured in the same run, as these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FINESS = "750000010"


def write_csv(path: Path, count: int) -> None:
    import csv

    from coffre.identity.synthetic import generate_patients

    rows = generate_patients(count, seed=2021)
    first = next(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(first))
        writer.writeheader()
        writer.writerow(first)
        writer.writerows(rows)


def plaintext_patient(lab_id: int, values: dict[str, str], generation=None) -> dict:
    """The baseline: the same row shape with values stored as plain bytes."""
    import uuid

    from django.utils import timezone

    from coffre.identity.models import BLIND_INDEXES, SEALED_FIELDS

    now = timezone.now()
    return {"id": uuid.uuid4(), "lab_id": lab_id, "identity_status": values["identity_status"],
            "data_key": b"", "created_at": now, "updated_at": now,
            **{name: values.get(name, "").encode() for name in SEALED_FIELDS},
            **{f"bi_{name}": None for name in BLIND_INDEXES}}


def worker(mode: str, csv_path: Path, lookups: int, size: int) -> dict:
    """Runs in its own process with its own COFFRE_HOME."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from coffre.audit.models import AuditSettings
    from coffre.identity.access import find_patients
    from coffre.identity.importer import csv_rows, import_rows
    from coffre.identity.registry import sealed_row
    from coffre.keyring import services as keyring
    from coffre.tenancy.actors import cli_actor
    from coffre.tenancy.services import add_lab
    from coffre.vault import create_key_file

    create_key_file(Path(os.environ["COFFRE_HOME"]) / "keys" / "master.key")
    call_command("migrate", verbosity=0)
    keyring.initialise()
    # The lab's blind indexes are sized for its population (a row's whole tuple of index
    # values within the CipherSweet bound): a search decrypts about R / 2**bits rows.
    lab = add_lab(FINESS, "Laboratoire Bench", planned_patients=size)
    # 1,000 lookups of distinct patients by one account would (rightly) lock it: the
    # detection has its own benchmark (bench/audit.py); here it must not interfere.
    AuditSettings.objects.create(lab=lab, hard_per_10_minutes=10**6, hard_per_hour=10**6,
                                 soft_per_10_minutes=10**6, soft_per_hour=10**6)
    actor = cli_actor(lab.id)
    encrypt = sealed_row if mode == "encrypted" else plaintext_patient
    started = time.perf_counter()
    report = import_rows(actor, lambda: csv_rows(csv_path), encrypt=encrypt)
    elapsed = time.perf_counter() - started
    result = {"mode": mode, "patients": report.imported, "seconds": elapsed,
              "per_second": report.imported / elapsed}
    if mode == "encrypted" and lookups:
        result.update(time_lookups(actor, csv_path, lookups, find_patients))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def time_lookups(actor, csv_path: Path, count: int, find) -> dict:
    import csv

    with open(csv_path, encoding="utf-8") as handle:
        rows = [r for _, r in zip(range(count * 7), csv.DictReader(handle), strict=False)
                if r["nir"]][::7][:count]
    timed: dict[str, list[float]] = {"nir": [], "name": [], "phone": [], "email": []}
    for row in rows:
        criteria = {"nir": {"nir": row["nir"]},
                    "name": {"name": row["birth_name"], "birth_date": row["birth_date"]},
                    "phone": {"phone": row["phone"]}, "email": {"email": row["email"]}}
        for kind, given in criteria.items():
            if not all(given.values()):
                continue
            started = time.perf_counter()
            assert find(actor, **given)
            timed[kind].append(time.perf_counter() - started)
    result = {f"lookup_{kind}_median_ms": statistics.median(times) * 1000
              for kind, times in timed.items() if times}
    result["lookup_nir_p99_ms"] = sorted(timed["nir"])[int(len(timed["nir"]) * 0.99)] * 1000
    result["lookups"] = len(rows)
    return result


def run_worker(mode: str, csv_path: Path, lookups: int, size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"coffre-bench-{mode}-") as home:
        env = {**os.environ, "COFFRE_HOME": home, "COFFRE_EXPECTED_PATIENTS": "500000"}
        env.pop("COFFRE_DATABASE_URL", None)
        output = subprocess.run(
            [sys.executable, __file__, "worker", mode, str(csv_path), str(lookups),
             str(size)],
            env=env, check=False, capture_output=True, text=True)
        if output.returncode:
            raise SystemExit(f"the {mode} worker failed:\n{output.stderr[-3000:]}")
        output = output.stdout
        return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(worker(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]),
                                int(sys.argv[5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 491_840])
    parser.add_argument("--lookups", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coffre-bench-") as tmp:
        for size in args.sizes:
            csv_path = Path(tmp) / f"patients-{size}.csv"
            write_csv(csv_path, size)
            plain = run_worker("plain", csv_path, 0, size)
            sealed = run_worker("encrypted", csv_path, args.lookups, size)
            print(f"\n== {size:,} patients (SQLite, one lab, {os.cpu_count()} cores)")
            print(f"import plaintext baseline: {plain['seconds']:7.1f} s  "
                  f"{plain['per_second']:8,.0f} patients/s  peak {plain['peak_rss_mib']:.0f} MiB")
            print(f"import encrypted:          {sealed['seconds']:7.1f} s  "
                  f"{sealed['per_second']:8,.0f} patients/s  peak {sealed['peak_rss_mib']:.0f} MiB")
            print(f"ratio encrypted/plain:     {sealed['per_second'] / plain['per_second']:.2f}")
            print(f"lookup by NIR:             median {sealed['lookup_nir_median_ms']:.2f} ms "
                  f"(p99 {sealed['lookup_nir_p99_ms']:.2f} ms, {sealed['lookups']} lookups)")
            print(f"lookup by name + birth:    median {sealed['lookup_name_median_ms']:.2f} ms")
            print(f"lookup by phone / e-mail:  median {sealed['lookup_phone_median_ms']:.2f} ms"
                  f" / {sealed['lookup_email_median_ms']:.2f} ms")


if __name__ == "__main__":
    main()
