"""Initialising an installation, the demo data set and synthetic data generation; their
commands (``coffre init``, ``demo``, ``generate``) at the end."""

from __future__ import annotations

import argparse
import os
import random
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from coffre import config
from coffre.cmdkit import BadInput, CommandError, command, setup_django

SEED_PATIENTS = 491_840
SEED_LABS = 28
DEMO_LABS = 3
DEMO_SEED = 2021
Bars = Callable[[str, int | None], Callable[[int], None]]


def initialise(expected_patients: int | None = None, auditor_key_out: Path | None = None
               ) -> Iterator[str]:
    """Create COFFRE_HOME, the master key file, the schema, the keyring and (before the
    access log's first entry) the auditor's key pair, as needed.

    Never creates a new key for a database that already has one: that would make its
    data unreadable. The missing key must be restored instead.
    """
    from coffre.vault import ENV_VAR, KeyProviderError, create_key_file

    home = config.home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    setup_django()
    from django.core.management import call_command

    from coffre.keyring import services as keyring
    from coffre.keyring.models import InstallationKey

    call_command("migrate", verbosity=0, interactive=False)
    yield f"database ready ({'PostgreSQL' if config.database_url() else config.sqlite_path()})"
    sealed = InstallationKey.objects.exists()
    key_file = config.key_file()
    if ENV_VAR not in os.environ and not key_file.exists():
        if sealed:
            raise KeyProviderError(
                f"this database is already sealed, but its master key file {key_file} is "
                "missing: restore it from its safe place (a new key cannot read the data)")
        create_key_file(key_file)
        yield f"created master key file {key_file} (mode 0600): copy it to a safe place now"
    keyring.clear_caches()
    if keyring.initialise(expected_patients):
        yield "created the installation keyring"
    keyring.check()
    from coffre.backups.service import RestoreUnfinished, finish_restore

    try:
        done = finish_restore()  # stops `init` like any other start
    except RestoreUnfinished as exc:
        raise CommandError(str(exc), code=2) from None
    if done:
        yield done
    # Created here rather than lazily inside some later transaction that might roll back
    # after the process cached it.
    keyring.installation_key("audit")
    from coffre.exports import sealing

    sealing.ensure_key()
    yield from _auditor_key(auditor_key_out)
    yield "master key opens this database: ready"


def _auditor_key(private_file: Path | None = None) -> Iterator[str]:
    """Before the access log's first entry, make the auditor's key pair (docs/audit.md).
    The private key is written to ``private_file`` (outside COFFRE_HOME), or printed once
    and kept nowhere on this machine."""
    from coffre.audit import chain
    from coffre.audit.models import ChainHead

    if ChainHead.objects.exists() or chain.auditor_public_key():
        if private_file is not None:
            yield ("the auditor's key pair exists already: nothing written to "
                   f"{private_file}")
        return
    try:
        private = chain.create_auditor_key(private_file)
    except chain.VerifyError as exc:
        raise BadInput(f"auditor key: {exc}") from None
    if private_file is not None:
        yield (f"created the auditor's key {private_file} (mode 0600): give it to the "
               "person who verifies the access log (`coffre audit verify --auditor-key "
               "FILE`) and keep it off this machine")
        return
    yield from auditor_key_lines(private)


def auditor_key_lines(private: str) -> Iterator[str]:
    """The auditor's private key, shown once: it is kept nowhere on this machine."""
    yield "the auditor's private key, shown ONCE and kept nowhere on this machine:"
    yield f"    {private}"
    yield ("give it to the person who verifies the access log, to keep offline (a file "
           "on removable media, a password manager): `coffre audit verify --auditor-key "
           "FILE` (or `--auditor-key -` on standard input) needs it")


def generate_patients(patients: int, labs: int, seed: int, add: Bars, *,
                      history: bool = True) -> int:
    """Synthetic labs and patients through the same import path as a CSV file, then
    (``history``) each lab's published orders and results for 2015-2020
    (coffre.labwork.synthetic). Returns the patients written by this run.

    Resumable: a lab whose generation finished is marked (``_mark_generated``) and
    skipped by a rerun; a lab a killed run left unfinished is emptied
    (``_discard_unfinished``) and made again."""
    from coffre.identity import synthetic
    from coffre.identity.importer import dict_rows, import_rows
    from coffre.keyring.indexes import planned_patients_default
    from coffre.tenancy.actors import cli_actor
    from coffre.tenancy.models import Lab
    from coffre.tenancy.services import add_lab

    sizes = _split(patients, labs, seed)
    check = add("checking", patients)
    write = add("encrypting and writing", patients)
    lab_history = add("lab history (patients)", patients) if history else None
    pending = None  # the previous lab's history, made while this lab's patients import
    start = written = 0
    for index, size in enumerate(sizes):
        finess = synthetic.generate_finess(index, seed)
        lab = Lab.objects.filter(finess=finess).first()
        if lab is not None and _generated(lab):
            for bar in (check, write, lab_history):
                if bar is not None:
                    bar(size)
            start += size
            continue
        if lab is not None:
            _discard_unfinished(lab, synthetic.lab_name(index, seed))
        # Sized as a real lab would be: for its patients, and at least the default plan.
        lab = lab or add_lab(finess, synthetic.lab_name(index, seed),
                             planned_patients=max(size, planned_patients_default()))
        begin = start

        def rows(begin: int = begin, size: int = size):
            return dict_rows(synthetic.generate_patients(size, seed, start_index=begin))

        made: list[tuple] = []
        report = import_rows(cli_actor(lab.id, role="generate"), rows,
                             advance_check=check, advance_write=write,
                             encrypt=_recording(made) if history else _sealed_row())
        if report.errors:
            raise RuntimeError(f"generated data failed validation: {report.errors[0]}")
        if history:
            started = _start_history(lab.id, made, seed, index)
            if pending is not None:
                _write_history(*pending, lab_history)
            pending = (started, lab)
        else:
            _mark_generated(lab)
        start += size
        written += size
    if pending is not None:
        _write_history(*pending, lab_history)
    return written


def _write_history(history, lab, progress) -> None:
    history.write(progress=progress)
    _mark_generated(lab)


def _marker(lab) -> Path:
    return config.subdir("generated") / lab.finess


def _generated(lab) -> bool:
    return _marker(lab).exists()


def _mark_generated(lab) -> None:
    """Written once the lab's patients and history are committed: a crash before it
    only makes the rerun redo this lab."""
    _marker(lab).write_text("done\n")


def _discard_unfinished(lab, expected_name: str) -> None:
    """Delete what a killed ``generate`` wrote for ``lab`` (patients, orders, specimens,
    results, day counters), in one transaction, so the rerun makes it whole again. Only
    for a lab this generation made (same name for the same seed): never real data.
    Audit entries of the discarded rows stay, as the log is append-only."""
    from django.db import connection, transaction

    from coffre.identity.models import Patient
    from coffre.labwork.models import CriticalValue, Order, OrderCounter, Result, Specimen

    if lab.name != expected_name:
        raise RuntimeError(f"lab {lab.finess} exists and was not made by `coffre generate` "
                           "with this seed: generate into another installation")
    with transaction.atomic(), connection.cursor() as cursor:
        for model in (CriticalValue, Result, Specimen, Order, OrderCounter, Patient):
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE lab_id = %s",  # noqa: S608 - table names from the models
                           [lab.id])


def _sealed_row() -> Callable[..., dict]:
    from coffre.identity.registry import sealed_row

    return sealed_row


def _recording(into: list[tuple]) -> Callable[..., dict]:
    """The import's encryption, noting what the lab history needs of each patient
    (id, wrapped data key, sex, birth date, doctor) so nothing is decrypted again."""
    from coffre.identity.registry import sealed_row

    def encrypt(lab_id: int, values: dict[str, str], generation=None) -> dict:
        row = sealed_row(lab_id, values, generation)
        into.append((row["id"], row["data_key"], values.get("sex", ""),
                     values.get("birth_date", ""), values.get("doctor_rpps", ""),
                     values.get("doctor_name", "")))
        return row

    return encrypt


def _start_history(lab_id: int, made: list[tuple], seed: int, index: int):
    """Start making one generated lab's orders and results (a stream of its own per lab);
    ``write()`` on the result stores them."""
    from coffre.labwork.synthetic import History

    return History(lab_id, made, seed=seed * 1_000 + index)


def _demo_portals(lab) -> Iterator[str]:
    """A patient activation code and a prescriber login, to try both portals."""
    from django.contrib.auth import get_user_model

    from coffre.accounts import mfa, temporary
    from coffre.identity.models import Patient
    from coffre.identity.registry import open_patient
    from coffre.labwork.demo import PRESCRIBERS, staff_for
    from coffre.labwork.models import Order, ResultState
    from coffre.portal import activation, prescriber
    from coffre.portal.models import PatientAccount

    order = (Order.unscoped.filter(lab=lab, results__state=ResultState.PUBLISHED,
                                   bi_prescriber__isnull=False)
             .exclude(patient_id__in=PatientAccount.objects.values("patient_id"))
             .order_by("-created_at").first())
    if order is not None:
        code = activation.issue_code(staff_for(1, lab.id).secretary, order.patient_id)
        born = open_patient(Patient.unscoped.get(pk=order.patient_id), ["birth_date"])
        yield (f"  patient portal: /portail/activation/ with code {code} and birth date "
               f"{born.birth_date} (synthetic patient; the code serves once)")
    rpps, name = PRESCRIBERS[0]
    # New password and key at every start, as for the staff demo logins.
    get_user_model().objects.filter(username="dr.bernard").delete()
    account, password = prescriber.add_prescriber(rpps, "dr.bernard")
    temporary.waive_for_demo(account.user)  # printed below for the person trying the demo
    secret = mfa.enroll_confirmed(account.user)
    yield (f"  prescriber portal: dr.bernard / {password}  (Dr {name}, RPPS {rpps}); "
           f"TOTP key (DEMO ONLY): {secret}")


def _split(total: int, parts: int, seed: int) -> list[int]:
    """Uneven but deterministic lab sizes, as real labs differ."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
    sizes = [int(total * w / sum(weights)) for w in weights]
    sizes[0] += total - sum(sizes)
    return sizes


def load_demo(patients_per_lab: int) -> Iterator[str]:
    """Demo labs with one account each; passwords are new at every run and printed once."""
    from django.contrib.auth import get_user_model

    from coffre.accounts import mfa, temporary
    from coffre.accounts.models import Membership, Role
    from coffre.identity import synthetic
    from coffre.identity.models import Patient
    from coffre.labwork.demo import demo_usernames, load_lab_demo
    from coffre.tenancy.models import Lab

    user_model = get_user_model()
    total = patients_per_lab * DEMO_LABS
    if not Lab.objects.exists():
        generate_patients(total, DEMO_LABS, seed=DEMO_SEED,
                          add=lambda description, count: lambda n: None)
        yield f"generated {total} synthetic patients in {DEMO_LABS} labs"
    yield ("demo logins (new passwords and authenticator keys at every start; each account "
           "is one person's):")
    starts = [sum(_split(total, DEMO_LABS, DEMO_SEED)[:i]) for i in range(DEMO_LABS)]
    for number, lab in enumerate(Lab.objects.order_by("id")[:DEMO_LABS], start=1):
        for username, role in demo_usernames(number):
            password = secrets.token_urlsafe(12)
            user, _ = user_model.objects.get_or_create(username=username)
            user.set_password(password)
            user.save()
            Membership.objects.get_or_create(user=user, lab=lab, defaults={"role": role})
            temporary.waive_for_demo(user)  # the printed password is the demo user's own
            secret = mfa.enroll_confirmed(user)
            yield (f"  {username} / {password}  ({Role(role).label}, {lab.name}, "
                   f"FINESS {lab.finess})")
            yield (f"      TOTP key (DEMO ONLY: a real key is shown once, on the enrollment "
                   f"page): {secret}  — add it to an authenticator app (time-based, 6 "
                   "digits, 30 s)")
        patient_ids = list(Patient.unscoped.filter(lab=lab, data_key__isnull=False)
                           .order_by("created_at", "id").values_list("id", flat=True)[:13])
        created = load_lab_demo(number, lab.id, patient_ids)
        if created:
            yield f"      {created} demo lab orders in every state"
        example = next(synthetic.generate_patients(1, DEMO_SEED, start_index=starts[number - 1]))
        yield (f"      try: name {example['birth_name']}, born {example['birth_date']} "
               "(synthetic patient)")
        if number == 1:
            yield from _demo_portals(lab)


# --- commands ------------------------------------------------------------------------

def add_init_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create the key file and database (idempotent)")
    p.add_argument("--expected-patients", type=int, default=None,
                   help="planned number of patients of the installation: sizes the legacy "
                        "installation-wide index key only (each lab's indexes are sized by "
                        "`lab add --planned-patients`)")
    p.add_argument("--auditor-key-out", type=Path, metavar="FILE",
                   help="write the auditor's private key there (0600, outside COFFRE_HOME)"
                        " instead of printing it once")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="load a small demo data set and print the demo logins")
    p.add_argument("--patients", type=int, default=300, help="patients per demo lab")

    p = sub.add_parser("generate", help="generate synthetic patients (Faker fr_FR)")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--labs", type=int, default=1)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--profile", choices=["seed"], help="seed = 491,840 patients in 28 labs")


@command("init")
def init(args: argparse.Namespace) -> int:
    out = args.auditor_key_out
    if out is not None and config.inside_home(out):
        raise BadInput(f"--auditor-key-out: {out} is inside COFFRE_HOME ({config.home()}): "
                       "the auditor's private key must not stay with the data; give a path "
                       "outside it, or leave the option out to have the key printed once")
    if out is not None and out.exists():
        raise BadInput(f"--auditor-key-out: {out} already exists; not overwriting")
    for line in initialise(args.expected_patients, out):
        print(line)
    return 0


@command("demo")
def demo(args: argparse.Namespace) -> int:
    for line in load_demo(args.patients):
        print(line)
    return 0


@command("generate")
def generate(args: argparse.Namespace) -> int:
    from coffre.bulk import refresh_statistics
    from coffre.progress import bars

    patients, labs = (SEED_PATIENTS, SEED_LABS) if args.profile == "seed" \
        else (args.patients, args.labs)
    if patients < 1 or labs < 1:
        raise CommandError("--patients and --labs must be at least 1")
    with bars() as add:
        done = generate_patients(patients, labs, args.seed, add)
    refresh_statistics()
    kept = f"; {patients - done} already made by an earlier run" if done < patients else ""
    print(f"generated {done} patients in {labs} laboratories (seed {args.seed}){kept}")
    return 0

