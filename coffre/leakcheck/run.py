"""``coffre leakcheck``: decrypt every patient in memory and look for their values in
clear in every file under COFFRE_HOME (database, WAL, logs, backups, exports).

Only values that identify a person are looked for: values shared by many patients
(sex, blood group, postal code, insurer, the referring doctor) would match everywhere
and prove nothing. Short names are also looked for glued to the first names.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

from coffre import config
from coffre.identity.models import Patient
from coffre.identity.registry import open_patient
from coffre.leakcheck.scan import (
    Needle,
    ScanReport,
    field_shares,
    fold,
    format_report,
    scan,
    unsearched_share,
)

SEARCHED_FIELDS = ("nir", "birth_name", "used_name", "first_names", "address", "city",
                   "phone", "email", "notes", "treatments")
Bars = Callable[[str, int | None], Callable[[int], None]]


def public_texts() -> list[str]:
    """Text stored in clear on purpose (lab names and addresses, user names), folded.

    A patient value found only inside one of them proves nothing: a patient called
    Martin and the "Laboratoire Martin" share a word, not a leak.
    """
    from django.contrib.auth import get_user_model

    from coffre.tenancy.models import Lab

    texts = [t for lab in Lab.objects.all() for t in (lab.name, lab.address)]
    texts += list(get_user_model().objects.values_list("username", flat=True))
    return [fold(text) for text in texts if text]


def patient_needles(advance: Callable[[int], None] | None = None,
                    public: list[str] | None = None,
                    skipped: list[int] | None = None) -> Iterator[Needle]:
    """Every searched value of every patient; values that are part of a public text
    are counted in ``skipped`` instead."""
    patients = Patient.unscoped.filter(data_key__isnull=False).iterator(chunk_size=2000)
    for patient in patients:
        record = open_patient(patient, SEARCHED_FIELDS)
        owner = str(patient.id)
        for name in SEARCHED_FIELDS:
            value = record.values[name]
            if value and public and any(fold(value) in text for text in public):
                if skipped is not None:
                    skipped[0] += 1
            elif value:
                yield Needle(owner, name, value)
        for surname in {record.birth_name, record.used_name} - {""}:
            yield Needle(owner, "name", f"{surname} {record.first_names}")
            yield Needle(owner, "name", f"{record.first_names} {surname}")
        if advance:
            advance(1)


def secret_needles() -> Iterator[Needle]:
    """Authenticator secrets, which must never be on disk in clear (recovery codes and
    passwords are Argon2 hashes: there is nothing to look for)."""
    from coffre.accounts.mfa import sealed_secrets

    for user_id, secret in sealed_secrets():
        yield Needle(f"user {user_id}", "totp_secret", secret)


# Values that name one person on their own: a share of them left unsearched is named.
IDENTIFYING = ("nir", "phone", "email", "address", "name")
WARN_FIELD_SHARE = 0.10
# Measured: 34% of values unsearched at 20,000 patients (268 MB; phones all of them,
# birth names alone 95%, found glued to the first names instead) and at the seed profile
# (4,466,804 values, 1.18 GB). Above 40% something unusual (a huge text file, very short
# values) hides too much: the check then fails as inconclusive (docs/operations.md).
MAX_UNSEARCHED = 0.40


def max_unsearched() -> float:
    """The bound, from COFFRE_LEAKCHECK_MAX_UNSEARCHED (percent) or MAX_UNSEARCHED."""
    return config.env_int("COFFRE_LEAKCHECK_MAX_UNSEARCHED", round(MAX_UNSEARCHED * 100)) / 100


def field_warnings(report: ScanReport) -> list[str]:
    return [f"WARNING: {untested / total:.0%} of the {name} values ({untested:,} of "
            f"{total:,}) were too short to search in {report.text_bytes:,} bytes of text: a "
            f"leak of them alone would go unseen."
            for name, untested, total in field_shares(report)
            if name in IDENTIFYING and untested / total > WARN_FIELD_SHARE]


def run_leakcheck(home: Path, add: Bars, bound: float | None = None
                  ) -> tuple[list[str], bool]:
    """The report lines, and whether the check passed: no hit, every file read, and no
    more than ``bound`` (default ``max_unsearched()``) of the values too short to
    search."""
    bound = max_unsearched() if bound is None else bound
    total = Patient.unscoped.filter(data_key__isnull=False).count()
    skipped = [0]
    needles = patient_needles(add("decrypting patients", total), public_texts(), skipped)
    scanning = add("scanning files", None)
    seen = {"label": "", "done": 0}

    def progress(label: str, done: int, _total: int) -> None:
        # scan() reports cumulative bytes, restarting at 0 for each needle batch.
        if label.startswith("needle batch") and label != seen["label"]:
            seen["done"] = 0
        seen["label"] = label
        scanning(done - seen["done"])
        seen["done"] = done

    report = scan(home, itertools.chain(needles, secret_needles()), progress=progress)
    lines = format_report(report, bound)
    if skipped[0]:
        lines.insert(-1, f"{skipped[0]:,} values are part of a lab name, address or user name "
                         "(public text) and were not searched on their own.")
    lines[-1:-1] = field_warnings(report)
    passed = not report.hits and not report.errors and unsearched_share(report) <= bound
    # Values to look for but none long enough: nothing was checked (the verdict says so).
    return lines, passed and (report.variants_tested > 0 or report.needles_total == 0)
