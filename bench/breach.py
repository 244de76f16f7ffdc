"""Breach scan benchmark: a leaked CSV of 500,000 rows (the installation's patients
plus strangers) scanned and matched against an installation of N patients.

    .venv/bin/python bench/breach.py --patients 100000            # ~2 min of set-up
    .venv/bin/python bench/breach.py --patients 20000 --rows 100000   # quicker

In a private COFFRE_HOME (temporary directory, SQLite in WAL mode): N generated
patients over --labs labs (each with its own blind-index key, planned for its size)
through the registry's import path (not timed), and a leaked file written the way a
leak looks: semicolons, renamed columns, French dates and phone numbers; --strangers of
its rows are people who are not patients, the others are patients drawn at random (with
repeats when the file has more rows than N, like a file of visits).

Timed, each in a fresh process (so the peak RSS is the scan's own):
- baseline: read the file and recognise its columns, normalise each row's NIR, names,
  birth date, phone and e-mail (everything but digests, lookup and decryption);
- scan: ``coffre.breach.scan.scan_files`` (every patient decrypted once into keyed
  digests, by the helpers; each row digested and looked up, attribution of the
  unmatched rows, audit).
Figures: wall and CPU seconds (CPU time is what the scan would take alone on an idle
machine, a shared one inflates wall time), rows/s, peak RSS, the ratio scan / baseline.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = ("num_secu", "NOM", "NOM_USAGE", "Prénom(s)", "sexe", "DDN", "Adresse", "cp",
          "ville", "tel_portable", "courriel", "Groupe", "Organisme", "Observations")


def setup_django(home: str, create: bool) -> None:
    os.environ["COFFRE_HOME"] = home
    os.environ.pop("COFFRE_KEY_FILE", None)
    os.environ.pop("COFFRE_MASTER_KEY", None)
    os.environ.pop("COFFRE_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    os.environ["COFFRE_AUDIT_CHECKPOINT_SECONDS"] = "60"
    import django

    if create:
        from coffre.vault import create_key_file

        create_key_file(Path(home) / "keys" / "master.key")
    django.setup()
    if create:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def populate(patients: int, labs: int, seed: int) -> None:
    from coffre.keyring import services as keyring
    from coffre.setup import generate_patients

    keyring.initialise(expected_patients=patients)
    generate_patients(patients, labs, seed, lambda _d, _t: (lambda _n: None), history=False)


def _leaked(row: dict[str, str], stranger: int | None = None) -> list[str]:
    phone = row["phone"]
    if phone and stranger is not None:
        # The generator draws phones from 50,000 fiction numbers, which 100,000 patients
        # exhaust: a stranger would share one with some patient (a true phone-only match,
        # but not what a real file of strangers looks like). Strangers get the mobile
        # fiction range instead (06 39 98 xx xx), which no generated patient has.
        phone = f"+3363998{stranger % 10_000:04d}"
    national = " ".join(("0" + phone[3:])[i:i + 2] for i in range(0, 10, 2)) if phone else ""
    year, month, day = row["birth_date"].split("-")
    return [row["nir"], row["birth_name"].upper(), row["used_name"].upper(),
            row["first_names"], row["sex"], f"{day}/{month}/{year}", row["address"],
            row["postal_code"], row["city"], national, row["email"], row["blood_group"],
            row["insurer"], row["notes"]]


def _line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\n").writerow(cells)
    return out.getvalue()


def write_leak(path: Path, rows: int, patients: int, strangers: float, seed: int) -> int:
    """The leaked file. Returns how many rows are strangers. The patients' rows are
    regenerated (row i depends only on the seed and i) as CSV lines, ~200 bytes each."""
    from coffre.identity.synthetic import generate_patients

    rng = random.Random(seed)  # benchmark data, not secrets
    stranger_rows = int(rows * strangers)
    lines = [_line(_leaked(row)) for row in generate_patients(patients, seed)]
    kinds = [rng.randrange(patients) for _ in range(rows - stranger_rows)]
    kinds += [-1] * stranger_rows
    rng.shuffle(kinds)
    others = generate_patients(stranger_rows, seed + 1, start_index=10**7)
    with path.open("w", encoding="cp1252", errors="replace", newline="") as handle:
        handle.write(_line(list(HEADER)))
        for number, kind in enumerate(kinds):
            handle.write(_line(_leaked(next(others), number)) if kind < 0 else lines[kind])
    return stranger_rows


def measure(home: str, mode: str, leak: str, helpers: int) -> None:
    """Run in a fresh process: print one JSON line of figures."""
    setup_django(home, create=False)
    from coffre.keyring import services as keyring

    keyring.check()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    if mode == "baseline":
        from coffre.breach.readers import open_file
        from coffre.breach.scan import Plan, _tables

        rows = 0
        for plan, row in _tables(open_file(Path(leak)).rows):
            assert isinstance(plan, Plan)
            plan.keys(row)
            rows += 1
        result = {"rows": rows}
    else:
        from coffre.breach.scan import scan_files
        from coffre.identity.digests import PatientDigests

        loaded = time.perf_counter()
        PatientDigests(helpers=helpers)  # what the scan builds first, measured alone
        map_seconds = time.perf_counter() - loaded
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = usage.ru_utime + usage.ru_stime
        started = time.perf_counter()
        report = scan_files([Path(leak)], helpers=helpers)
        result = {"rows": report.rows_read, "matched": report.rows_matched,
                  "patients": report.patients_affected(), "index_map_s": map_seconds,
                  "by_level": {k: sum(lab.by_confidence[k] for lab in report.labs)
                               for k in ("nir", "name_birth", "contact")}}
    result["seconds"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    helpers_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime - cpu_before
    result["helpers_cpu_seconds"] = helpers_cpu.ru_utime + helpers_cpu.ru_stime
    result["helpers_peak_rss_mib"] = helpers_cpu.ru_maxrss / 1024
    result["load"] = os.getloadavg()[0]
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run(home: str, mode: str, leak: Path, helpers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", mode, "--home", home,
                          "--leak", str(leak), "--helpers", str(helpers)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--labs", type=int, default=8)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--strangers", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--helpers", type=int, default=2,
                        help="processes decrypting the patients (the CLI uses 2 on a "
                             "multi-core machine)")
    parser.add_argument("--measure", choices=("baseline", "scan"), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--leak", help=argparse.SUPPRESS)
    parser.add_argument("--keep", metavar="DIR",
                        help="set up in DIR and keep it; a later run with the same DIR and "
                             "arguments measures again without the set-up")
    args = parser.parse_args()
    if args.measure:
        measure(args.home, args.measure, args.leak, args.helpers)
        return
    home = args.keep or tempfile.mkdtemp(prefix="coffre-bench-breach-")
    leak = Path(home) / f"leak-{args.rows}-{args.strangers}.csv"
    strangers = int(args.rows * args.strangers)
    try:
        if not (Path(home) / "coffre.sqlite3").exists():
            Path(home).mkdir(parents=True, exist_ok=True)
            setup_django(home, create=True)
            started = time.perf_counter()
            populate(args.patients, args.labs, args.seed)
            print(f"setup: {args.patients:,} patients in {args.labs} labs "
                  f"({time.perf_counter() - started:.0f} s, not timed)", flush=True)
        else:
            setup_django(home, create=False)
        if not leak.exists():
            started = time.perf_counter()
            write_leak(leak, args.rows, args.patients, args.strangers, args.seed)
            print(f"leaked file: {args.rows:,} rows ({strangers:,} strangers), "
                  f"{leak.stat().st_size / 1e6:.1f} MB ({time.perf_counter() - started:.0f} "
                  "s, not timed)", flush=True)
        base = run(home, "baseline", leak, 0)
        scan = run(home, "scan", leak, args.helpers)
        assert scan["rows"] == base["rows"] == args.rows, (scan, base)
        for name, run_ in (("baseline (read, recognise, normalise)", base),
                           ("scan (match + confirm + attribute + audit)", scan)):
            print(f"{name}: {run_['seconds']:.1f} s wall, {run_['cpu_seconds']:.1f} s CPU, "
                  f"{run_['rows'] / run_['seconds']:,.0f} rows/s wall, "
                  f"{run_['rows'] / run_['cpu_seconds']:,.0f} rows/s CPU, peak RSS "
                  f"{run_['peak_rss_mib']:.0f} MiB (load average {run_['load']:.1f} on "
                  f"{os.cpu_count()} cores)")
        print(f"scan helpers ({args.helpers}): {scan['helpers_cpu_seconds']:.1f} s CPU, "
              f"peak RSS {scan['helpers_peak_rss_mib']:.0f} MiB")
        print(f"digest table (every patient decrypted once, {args.helpers} helpers; "
              f"measured alone before the scan, which builds its own): "
              f"{scan['index_map_s']:.1f} s")
        print(f"matched rows {scan['matched']:,} (expected {args.rows - strangers:,}), "
              f"patients {scan['patients']:,}, by level {scan['by_level']}")
        print(f"ratio scan / baseline: {scan['seconds'] / base['seconds']:.2f}x wall, "
              f"{scan['cpu_seconds'] / base['cpu_seconds']:.2f}x CPU")
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
