"""Synthetic lab history: published orders, specimens and results for generated patients.

The seed profile (DESIGN.md, "Data at the scale of the 2021 leak") has samples from
2015-01-01 to 2020-10-31 with a few results each. ``generate_history`` writes that
history for one lab's patients, the way the services would have left it after
reception, entry, validation and publication: every value, flag, comment, prescriber
and note sealed under the patient's data key and bound to its table, column and row,
and each result's clear columns tagged (coffre.labwork.sealing), so ``access.access_order``
opens it like any other order.

It is a migration-like load: no audit entry (nothing is read or changed by a person),
no account created (validations name the lab's first biologist and technician when
the lab has them, nobody otherwise). Order numbers follow the lab's counters and the
counters are written back, so ``orders.create_order`` continues after them.

Deterministic for a seed (tests, sequence of orders, values, flags and times); row ids
and nonces are random. Row ids are UUIDs ordered by generation (a time prefix, like
UUIDv7, and a random tail): appended to the primary-key and order/specimen indexes
instead of scattered through them, which matters for 5.5 million results on SQLite.

Measured (bench/lab.py): see docs/benchmarks.md, "Lab workflow".
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import operator
import os
import queue
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from django.db import connection, models, transaction
from django.utils import timezone

from coffre.identity.registry import patient_key
from coffre.keyring import indexes
from coffre.labwork import catalogue
from coffre.labwork.models import (
    SEALED,
    CriticalValue,
    Order,
    OrderCounter,
    Result,
    ResultState,
    Specimen,
    SpecimenState,
)
from coffre.labwork.orders import prescriber_index
from coffre.labwork.sealing import OrderTags, seal, seal_columns
from coffre.vault import Key, context_prefix

START = dt.date(2015, 1, 1)
END = dt.date(2020, 10, 31)
# Results per write transaction: big enough for multi-row INSERTs to pay, small enough
# that a crash loses little and the WAL file stays small.
BATCH_RESULTS = 20_000

# (weight, codes, who): the usual prescriptions of a French town lab. About 6.5 results
# per order on average (NFS alone is 13): the full check-up of 30 tests is kept rare so
# that the seed profile's ~5 million results load in a few minutes (docs/benchmarks.md).
_ADULT, _ANY, _MEN_50 = "adult", "any", "men50"
MIXES: tuple[tuple[int, tuple[str, ...], str], ...] = (
    (8, ("NFS", "CRP"), _ANY),
    (8, ("NFS",), _ANY),
    (10, ("IONO", "CREA"), _ANY),
    (10, ("BILAN_LIPIDIQUE", "GLY"), _ADULT),
    (6, ("HBA1C", "GLY", "CREA"), _ADULT),
    (9, ("TSH",), _ANY),
    (6, ("CRP",), _ANY),
    (5, ("BILAN_HEPATIQUE",), _ADULT),
    (4, ("NFS", "IONO", "CREA", "BILAN_LIPIDIQUE", "GLY", "BILAN_HEPATIQUE"), _ADULT),
    (5, ("FERRI", "NFS"), _ANY),
    (3, ("BILAN_MARTIAL",), _ANY),
    (4, ("VITD",), _ANY),
    (3, ("THYROIDE",), _ANY),
    (4, ("TP", "INR"), _ADULT),
    (3, ("PSA",), _MEN_50),
    (4, ("UREE", "CREA", "K"), _ADULT),
)
_CLINICAL = ("", "", "", "Bilan annuel", "Fatigue", "Suivi diabète de type 2",
             "Bilan préopératoire", "Contrôle", "Suivi traitement AVK", "Fièvre",
             "Surveillance hypertension")
CRITICAL_NOTE = "Prescripteur prévenu par téléphone"
# Spread of a value about the middle of its reference interval: with a two-sided range,
# sd = half-width / 1.75 puts about 8% of values outside; one-sided ranges use a log-normal
# with the same share beyond the limit (z = 1.405).
_Z_TWO_SIDED = 1.75
_LOG_SD_HIGH, _LOG_SD_LOW = 0.6, 0.25

_VALUE, _FLAG, _COMMENT = (context_prefix("result", column)
                            for column in ("value", "flag", "comment"))
_VALUE_SIZE, _FLAG_SIZE, _COMMENT_SIZE = (SEALED["result"][column]
                                          for column in ("value", "flag", "comment"))

HistoryPatient = Sequence  # (id, wrapped data key, sex, birth date iso[, RPPS, name])


@dataclass
class Counts:
    patients: int = 0
    orders: int = 0
    specimens: int = 0
    results: int = 0
    criticals: int = 0
    abnormal: int = 0

    def add(self, other: Counts) -> None:
        for name in ("patients", "orders", "specimens", "results", "criticals", "abnormal"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def generate_history(lab_id: int, patients: Sequence[HistoryPatient], *, seed: int,
                     start: dt.date = START, end: dt.date = END,
                     orders_per_patient: float = 1.6,
                     progress: Callable[[int], None] | None = None,
                     counts: Counts | None = None, parallel: bool | None = None) -> int:
    """Published orders for ``patients`` of lab ``lab_id``; returns the results written.

    Each patient is ``(id, wrapped data key, sex, birth date iso)``, optionally followed
    by the referring doctor's RPPS and name (the prescriber): what the patient generator
    knew when it made them, so nothing is decrypted again. ``progress`` is called with
    the number of patients done after each write; ``counts`` (if given) receives the
    rows written per table.

    ``parallel`` (default: from PARALLEL_FROM patients, where os.fork exists) makes the
    rows in a forked process while this one writes the previous batch: the two halves
    of the work (values and sealing; SQLite's inserts) then share two cores. The child
    never touches the database: patient keys are unwrapped here before the fork.
    """
    history = History(lab_id, patients, seed=seed, start=start, end=end,
                      orders_per_patient=orders_per_patient, parallel=parallel)
    return history.write(progress=progress, counts=counts)


PARALLEL_FROM = 5_000


class History:
    """One lab's history, started (in a forked child when parallel: it begins at once)
    and written by ``write``. ``coffre generate`` starts a lab's history, then imports
    the next lab's patients while the child makes the rows, then writes them: the
    patient import, the values and seals, and SQLite's inserts share two cores."""

    def __init__(self, lab_id: int, patients: Sequence[HistoryPatient], *, seed: int,
                 start: dt.date = START, end: dt.date = END,
                 orders_per_patient: float = 1.6, parallel: bool | None = None) -> None:
        if end <= start:
            raise ValueError("the history needs end after start")
        self.setup = _Setup.read(lab_id)
        keyed = [(patient_key(p[0], lab_id, p[1]), *p) for p in patients]
        maker = _Maker(self.setup, seed, start, end, orders_per_patient)
        if parallel is None:
            parallel = len(keyed) >= PARALLEL_FROM and hasattr(os, "fork")
        self.child = _Child(maker, keyed) if parallel else None
        self.batches = self.child.batches() if self.child else maker.batches(keyed)

    def write(self, *, progress: Callable[[int], None] | None = None,
              counts: Counts | None = None) -> int:
        """Write every batch (one transaction each); returns the results written."""
        counts = counts if counts is not None else Counts()
        for batch in self.batches:
            _write(self.setup, batch)
            counts.add(batch.counts)
            if progress:
                progress(batch.counts.patients)
        return counts.results


@dataclass
class _Batch:
    rows: dict[str, list[tuple]]  # table -> values in the INSERT's column order
    counters: dict[dt.date, int]  # days whose counter moved -> last number given
    counts: Counts


class _Child:
    """A forked child making the maker's batches into a queue, which buffers them (the
    child never waits for the writer). It never touches the database: the patients'
    keys were unwrapped before the fork."""

    def __init__(self, maker: _Maker, keyed: list[tuple]) -> None:
        context = multiprocessing.get_context("fork")
        self.queue = context.Queue()
        self.process = context.Process(target=_produce, args=(maker, keyed, self.queue),
                                       daemon=True)
        self.process.start()

    def batches(self) -> Iterator[_Batch]:
        try:
            while True:
                try:
                    message = self.queue.get(timeout=1)
                except queue.Empty:
                    if not self.process.is_alive() and self.queue.empty():
                        raise RuntimeError("the lab history generator stopped "
                                           "unexpectedly") from None
                    continue
                if message is None:
                    break
                if isinstance(message, str):
                    raise RuntimeError(f"the lab history generator failed: {message}")
                yield message
        finally:
            self.queue.close()
            self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.kill()


def _produce(maker: _Maker, keyed: list[tuple], out) -> None:
    """Child side: no database, only values, seals and the queue."""
    try:
        for batch in maker.batches(keyed):
            out.put(batch)
        out.put(None)
    except Exception as exc:  # reported to the parent, which raises
        out.put(f"{type(exc).__name__}: {exc}")
    finally:
        out.close()
        out.join_thread()  # everything sent before the child exits


def _write(setup: _Setup, batch: _Batch) -> None:
    """One batch and the day counters it moved, in one transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        for name, table in setup.tables.items():
            if batch.rows[name]:
                cursor.executemany(table.sql, batch.rows[name])
        if batch.counters:
            OrderCounter.objects.bulk_create(
                [OrderCounter(lab_id=setup.lab_id, day=day, last=last)
                 for day, last in sorted(batch.counters.items())],
                update_conflicts=True, unique_fields=["lab", "day"],
                update_fields=["last"], batch_size=500)


def _poisson(rng: random.Random, limit: float) -> int:
    """Knuth's method: fine for a small mean."""
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class _Ids:
    """UUIDs in generation order: 48-bit milliseconds, version 7, then a counter and a
    random tail (the counter keeps them ordered within a millisecond)."""

    def __init__(self) -> None:
        self.prefix = (int(time.time() * 1000) << 80) | (0x7 << 76)
        self.counter = int.from_bytes(os.urandom(2), "big") << 20
        # Ids are not secrets (they appear in URLs, every read is scoped): a generator
        # seeded by the OS is enough for the tail, and far cheaper than urandom per id.
        self.tail = random.Random(os.urandom(16)).getrandbits  # noqa: S311

    def __call__(self) -> uuid.UUID:
        self.counter += 1
        tail = self.tail(32)
        # 12 bits of counter in rand_a, variant 10, then 30 more counter bits and 32
        # random bits in rand_b.
        value = (self.prefix | ((self.counter >> 30) & 0xFFF) << 64 | (0b10 << 62)
                 | (self.counter & 0x3FFFFFFF) << 32 | tail)
        return uuid.UUID(int=value)


@lru_cache(maxsize=64)
def _mix_tests(codes: tuple[str, ...]) -> tuple[catalogue.TestDef, ...]:
    return tuple(catalogue.TESTS[loinc] for loinc in catalogue.expand(codes))


def _choose_mix(rng: random.Random, sex: str, age_years: int) -> tuple[str, ...]:
    allowed = [(w, codes) for w, codes, who in MIXES
               if who == _ANY or (who == _ADULT and age_years >= 18)
               or (who == _MEN_50 and sex == "M" and age_years >= 50)]
    pick = rng.random() * sum(w for w, _ in allowed)
    for weight, codes in allowed:
        pick -= weight
        if pick < 0:
            return codes
    return allowed[-1][1]


def _value(rng: random.Random, test: catalogue.TestDef, sex: str, age_days: int
           ) -> str | None:
    """Canonical text of a plausible measurement, None when the test has no interval
    to draw from for this patient."""
    rng_ = catalogue.reference_range(test, sex, age_days)
    if rng_ is None or (rng_.low is None and rng_.high is None):
        rng_ = catalogue.reference_range(test, "", 40 * 365)
        if rng_ is None or (rng_.low is None and rng_.high is None):
            return None
    low, high = rng_.low, rng_.high
    if low is not None and high is not None:
        number = rng.gauss((low + high) / 2, (high - low) / 2 / _Z_TWO_SIDED)
    elif high is not None:
        number = high * math.exp(rng.gauss(-1.405 * _LOG_SD_HIGH, _LOG_SD_HIGH))
    else:
        number = low * math.exp(rng.gauss(1.405 * _LOG_SD_LOW, _LOG_SD_LOW))
    step = 10.0 ** -test.decimals
    return f"{max(number, step):.{test.decimals}f}"


def _minutes(rng: random.Random, low: int, high: int) -> dt.timedelta:
    return dt.timedelta(minutes=rng.randint(low, high))


class _Table:
    """A multi-row INSERT of rows already in the database's own form (UUIDs as the
    backend stores them, timestamps adapted once per order): coffre.bulk.bulk_insert
    prepares every value of every row, a third of the time at 5.5 million results."""

    def __init__(self, model: type[models.Model]) -> None:
        fields = [f for f in model._meta.concrete_fields
                  if not isinstance(f, models.AutoField | models.BigAutoField)]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        # Names come from the model; values are parameters.
        self.sql = (f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "  # noqa: S608
                    f"VALUES ({marks})")
        self.values = operator.itemgetter(*(f.attname for f in fields))


@dataclass
class _Setup:
    """What the generation needs from the database, read once before it starts."""

    lab_id: int
    counters: dict[dt.date, int]
    biologist: int | None
    technician: int | None
    native_uuid: bool
    utc_text: bool  # timestamps stored as naive UTC text (SQLite), else sent aware
    tables: dict[str, _Table]

    @classmethod
    def read(cls, lab_id: int) -> _Setup:
        from coffre.accounts.models import Membership, Role

        people = dict(Membership.objects.filter(
            lab_id=lab_id, role__in=[Role.BIOLOGIST, Role.TECHNICIAN])
            .order_by("-user_id").values_list("role", "user_id"))  # lowest id wins
        return cls(
            lab_id=lab_id,
            counters=dict(OrderCounter.objects.filter(lab_id=lab_id)
                          .values_list("day", "last")),
            biologist=people.get(Role.BIOLOGIST), technician=people.get(Role.TECHNICIAN),
            native_uuid=connection.features.has_native_uuid_field,
            utc_text=connection.vendor == "sqlite",
            tables={name: _Table(model) for name, model in (
                ("orders", Order), ("specimens", Specimen), ("results", Result),
                ("criticals", CriticalValue))})


class _Maker:
    """Orders, specimens and results of patients, in batches of database rows: pure
    computation (no query), so it can run in another process."""

    def __init__(self, setup: _Setup, seed: int, start: dt.date, end: dt.date,
                 orders_per_patient: float) -> None:
        self.setup = setup
        self.lab_id = setup.lab_id
        self.seed = seed
        self.start = start
        self.last_day = end - dt.timedelta(days=1)  # published at the latest the next day
        self.poisson = math.exp(-orders_per_patient)
        self.counters = dict(setup.counters)
        self.biologist, self.technician = setup.biologist, setup.technician
        self.db_id = _same if setup.native_uuid else operator.attrgetter("hex")
        self.db_time = _utc_text if setup.utc_text else _same
        self.zone = timezone.get_current_timezone()
        self.prescribers: dict[str, int] = {}
        # The lab's index key, unwrapped here, before any fork.
        self.generation = indexes.current(self.lab_id)
        self._reset()

    def _reset(self) -> None:
        self.dirty: set[dt.date] = set()
        self.counts = Counts()
        self.orders: list[dict] = []
        self.specimens: list[dict] = []
        self.results: list[dict] = []
        self.criticals: list[dict] = []

    def _prescriber(self, rpps: str) -> int:
        """The prescriber portal's blind index, as orders.create_order computes it
        (random when there is no RPPS); a lab's few hundred doctors are memoised."""
        if not rpps:
            return prescriber_index(self.generation, "")
        found = self.prescribers.get(rpps)
        if found is None:
            found = self.prescribers[rpps] = prescriber_index(self.generation, rpps)
        return found

    def batches(self, keyed: Sequence[tuple]) -> Iterator[_Batch]:
        """``keyed``: (data key, id, wrapped key, sex, birth date[, RPPS, name])."""
        rng = random.Random(f"coffre.labwork.synthetic/{self.seed}")  # noqa: S311
        ids = _Ids()
        for key, pid, _wrapped, sex, birth_iso, *doctor in keyed:
            birth = dt.date.fromisoformat(birth_iso) if birth_iso else None
            first = max(self.start, birth + dt.timedelta(days=1)) if birth else self.start
            count = _poisson(rng, self.poisson)
            if first <= self.last_day:
                span = (self.last_day - first).days
                days = sorted(first + dt.timedelta(days=rng.randint(0, span))
                              for _ in range(count))
                patient = (pid, self.db_id(pid))
                for day in days:
                    self.add_order(rng, ids, key, patient, sex, birth, day, doctor)
            self.counts.patients += 1
            if len(self.results) >= BATCH_RESULTS:
                yield self._batch()
        if self.counts.patients:
            yield self._batch()

    def _batch(self) -> _Batch:
        tables = self.setup.tables
        rows = {name: [tables[name].values(row) for row in getattr(self, name)]
                for name in tables}
        counts = self.counts
        counts.orders, counts.specimens = len(self.orders), len(self.specimens)
        counts.results, counts.criticals = len(self.results), len(self.criticals)
        batch = _Batch(rows, {day: self.counters[day] for day in self.dirty}, counts)
        self._reset()
        return batch

    def _number(self, day: dt.date) -> str:
        last = self.counters.get(day, 0) + 1
        if last > 9999:
            raise ValueError(f"more than 9999 orders on {day}")
        self.counters[day] = last
        self.dirty.add(day)
        return f"{day:%y%m%d}{last:04d}"

    def add_order(self, rng: random.Random, ids: _Ids, key: Key, patient: tuple, sex: str,
                  birth: dt.date | None, day: dt.date, doctor: list[str]) -> None:
        """One published order of a patient (``patient``: their id, and in database
        form)."""
        patient_id, patient = patient
        age_days = (day - birth).days if birth else 40 * 365
        age_years = age_days // 365
        tests = _mix_tests(_choose_mix(rng, sex, age_years))
        created = dt.datetime.combine(day, dt.time(7), self.zone) + _minutes(rng, 0, 300)
        collected = created + _minutes(rng, 0, 15)
        received = collected + _minutes(rng, 15, 90)
        entered = received + _minutes(rng, 30, 240)
        tech = entered + _minutes(rng, 5, 60)
        bio = tech + _minutes(rng, 20, 360)
        published = bio + _minutes(rng, 1, 20)
        when = self.db_time
        times = {"entered_at": when(entered), "tech_validated_at": when(tech),
                 "bio_validated_at": when(bio), "published_at": when(published)}
        taken = {"collected_at": when(collected), "received_at": when(received)}
        order_id = ids()
        order_db = self.db_id(order_id)
        number = self._number(day)
        rpps, name = [*doctor, "", ""][:2] if rng.random() < 0.9 else ("", "")
        name = name.removeprefix("Dr ")
        self.orders.append({
            "id": order_db, "lab_id": self.lab_id, "patient_id": patient,
            "number": number, "urgent": rng.random() < 0.03, "created_at": when(created),
            "created_by_id": None, "report_count": 1,
            "bi_prescriber": self._prescriber(rpps), "bi_key_id": self.generation.bi_key,
            **seal_columns(key, "order", order_id, {
                "prescriber_rpps": rpps, "prescriber_name": name,
                "clinical_info": rng.choice(_CLINICAL)})})
        specimens: dict[str, tuple[uuid.UUID, object, str]] = {}  # id, in database, text
        # What the order's results share in their tags (sealing.RESULT_BOUND, in order).
        tags = OrderTags(key, (self.lab_id, patient_id, order_id, ResultState.PUBLISHED.value,
                               1, None, entered, None, tech, self.technician, bio,
                               self.biologist, published))
        measured: dict[str, str] = {}
        position = 0
        for test in tests:
            if test.calculated:
                value = catalogue.calculate(test, measured, sex, age_years)
            else:
                value = _value(rng, test, sex, age_days)
                if value is not None:
                    measured[test.loinc] = value
            if value is None:
                continue  # not computable (a child's eGFR...) or no interval: not done
            specimen = specimens.get(test.specimen)
            if specimen is None:
                specimen_id = ids()
                specimen = specimens[test.specimen] = (specimen_id, self.db_id(specimen_id),
                                                       str(specimen_id))
                self.specimens.append({
                    "id": specimen[1], "lab_id": self.lab_id, "order_id": order_db,
                    "barcode": f"{number}{len(specimens):02d}",
                    "specimen_type": test.specimen, "state": SpecimenState.RECEIVED,
                    "collected_by_id": None, "received_by_id": None, **taken,
                    "rejection_reason": seal(key, "specimen", "rejection_reason",
                                             specimen_id, "")})
            flag = catalogue.flag(test, value, sex, age_days)
            result_id = ids()
            row_text = str(result_id)
            row = row_text.encode()
            source = "calculated" if test.calculated else "analyser"
            self.results.append({
                "id": self.db_id(result_id), "lab_id": self.lab_id, "patient_id": patient,
                "order_id": order_db, "specimen_id": specimen[1], "loinc": test.loinc,
                "position": position, "state": ResultState.PUBLISHED, "version": 1,
                "replaces_id": None, "source": source,
                # As sealing.seal_columns does, without formatting the row id thrice.
                "value": key.seal(value, _VALUE + row, _VALUE_SIZE),
                "flag": key.seal(flag, _FLAG + row, _FLAG_SIZE),
                "comment": key.seal("", _COMMENT + row, _COMMENT_SIZE),
                "mac": tags.tag(row_text, specimen[2], test.loinc, source),
                "entered_by_id": None, "tech_validated_by_id": self.technician,
                "bio_validated_by_id": self.biologist, **times})
            position += 1
            if flag:
                self.counts.abnormal += 1
            if flag in ("LL", "HH"):
                self.criticals.append({
                    "lab_id": self.lab_id, "result_id": self.db_id(result_id),
                    "raised_at": times["entered_at"],
                    "acknowledged_at": when(entered + _minutes(rng, 2, 30)),
                    "acknowledged_by_id": self.biologist,
                    "note": seal(key, "critical", "note", result_id, CRITICAL_NOTE)})


def _same(value: object) -> object:
    return value


def _utc_text(moment: dt.datetime) -> str:
    """What Django's SQLite backend stores for an aware datetime (naive UTC text)."""
    return str(moment.astimezone(dt.UTC).replace(tzinfo=None))
