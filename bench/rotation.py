"""Rotation benchmark: `coffre keys rotate --master`, `rotate --lab`, `reencrypt`.

    .venv/bin/python bench/rotation.py                     # 20,000 patients, 2 labs
    .venv/bin/python bench/rotation.py --patients 5000     # quicker
    .venv/bin/python bench/rotation.py --patients 3000 --kill-after 5   # crash + resume

Everything runs in a private COFFRE_HOME (SQLite) through the real ``coffre`` command:
``generate`` (not timed), then ``keys rotate --master`` (a few rows: seconds measured
as the command's wall time, process start included, and as reported), ``keys rotate
--lab`` on the first lab and ``keys reencrypt`` on every lab (patients per second as
reported). The baseline, measured in the same run, is a plain read of every patient
(data key unwrapped, every identity column decrypted) in this process: the ratio says
how much slower re-encryption (which also re-seals orders, specimens and results, one
patient per transaction) is than reading.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def coffre(env: dict, *args: str) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "coffre", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"coffre {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    lines = [json.loads(line) for line in result.stdout.splitlines()
             if line.startswith("{")]
    return seconds, lines


def plain_read(home: str) -> tuple[int, float]:
    """Open every patient (all identity columns) in this process: the baseline."""
    os.environ["COFFRE_HOME"] = home
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    import django

    django.setup()
    from coffre.identity.models import Patient
    from coffre.identity.registry import open_patient
    from coffre.keyring import services as keyring

    keyring.clear_caches()
    keyring.check()
    started = time.perf_counter()
    count = 0
    for patient in Patient.unscoped.filter(data_key__isnull=False).iterator(2000):
        open_patient(patient)
        count += 1
    return count, time.perf_counter() - started


def open_all_lab_rows() -> int:
    """Open every sealed lab column (after the runs): proves nothing was left under a
    lost key, the kill -9 included. Returns the number of rows opened."""
    from coffre.labwork.models import SEALED, CriticalValue, Order, Result, Specimen
    from coffre.labwork.sealing import PatientKeys, unseal
    from coffre.tenancy.models import Lab

    opened = 0
    for lab in Lab.objects.all():
        keys = PatientKeys(lab.id)
        keys.load(Order.unscoped.filter(lab=lab).values_list("patient_id", flat=True))
        for table, rows in (
                ("order", ((o.patient_id, o.id, o) for o in Order.unscoped.filter(lab=lab))),
                ("specimen", ((s.order.patient_id, s.id, s) for s in
                              Specimen.unscoped.filter(lab=lab).select_related("order"))),
                ("result", ((r.patient_id, r.id, r) for r in Result.unscoped.filter(lab=lab))),
                ("critical", ((c.result.patient_id, c.result_id, c) for c in
                              CriticalValue.objects.filter(lab=lab).select_related("result")))):
            for patient_id, row_id, row in rows:
                for column in SEALED[table]:
                    unseal(keys[patient_id], table, column, row_id, getattr(row, column))
                opened += 1
    return opened


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--labs", type=int, default=2)
    parser.add_argument("--kill-after", type=float, default=0.0, metavar="S",
                        help="first kill -9 a `keys reencrypt` after S seconds, then time "
                             "the resumed run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="coffre-bench-rotation-") as home:
        env = {k: v for k, v in os.environ.items()
               if k not in {"COFFRE_MASTER_KEY", "COFFRE_KEY_FILE", "COFFRE_DATABASE_URL",
                            "DJANGO_SETTINGS_MODULE"}}
        env["COFFRE_HOME"] = home
        os.environ.pop("COFFRE_DATABASE_URL", None)
        coffre(env, "init", "--expected-patients", str(args.patients))
        started = time.perf_counter()
        coffre(env, "generate", "--patients", str(args.patients), "--labs", str(args.labs))
        print(f"generated {args.patients} patients in {args.labs} labs "
              f"({time.perf_counter() - started:.1f} s, not timed below)")
        finess = coffre(env, "lab", "list")[1][0]["finess"]

        count, read_seconds = plain_read(home)
        read_rate = count / read_seconds
        print(f"baseline plain read of all patients: {count} in {read_seconds:.2f} s "
              f"= {read_rate:,.0f} patients/s")

        wall, lines = coffre(env, "keys", "rotate", "--master")
        done = lines[-1]
        print(f"keys rotate --master: {done['rewrapped']} keys re-wrapped, "
              f"{done['seconds']:.3f} s in the command, {wall:.2f} s wall "
              f"(target < 5 s)")

        wall, lines = coffre(env, "keys", "rotate", "--lab", finess)
        done = lines[-1]
        print(f"keys rotate --lab {finess}: {done['rewrapped']} data keys in "
              f"{done['seconds']:.2f} s = {done['patients_per_second']:,} patients/s "
              f"({done['patients_per_second'] / read_rate:.2f} x plain read), "
              f"{wall:.2f} s wall")

        if args.kill_after:  # kill -9 in the middle, then run again: it resumes
            process = subprocess.Popen([sys.executable, "-m", "coffre", "keys", "reencrypt"],
                                       env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            time.sleep(args.kill_after)
            process.kill()
            process.wait()
            run = next(r for r in coffre(env, "keys", "status")[1] if r["kind"] == "reencrypt")
            print(f"keys reencrypt killed (-9) after {args.kill_after} s: "
                  f"{run['patients_done']} patients done, run {run['run']} unfinished")
        wall, lines = coffre(env, "keys", "reencrypt")
        done = lines[-1]
        if args.kill_after:
            assert done["resumed"] and done["finished"], done
            print(f"  resumed run {done['run']}: {done['reencrypted']} patients left to do")
        print(f"keys reencrypt: {done['reencrypted']} patients, rows {done['rows']}, "
              f"{done['seconds']:.1f} s = {done['patients_per_second']:,.0f} patients/s "
              f"(plain read is {read_rate / done['patients_per_second']:.1f} x faster), "
              f"{wall:.1f} s wall")

        count_after, seconds_after = plain_read(home)
        assert count_after == count
        print(f"after: every patient still opens ({count_after} in {seconds_after:.2f} s), "
              f"and every order, specimen, result and critical value ({open_all_lab_rows()} "
              "rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
