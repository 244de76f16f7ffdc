"""The synthetic lab history (coffre.labwork.synthetic): published orders that open through
the same access layer as real ones, within the seed profile's dates, deterministic for
a seed, numbered like create_order does, and sealed at rest."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from coffre.identity.importer import dict_rows, import_rows
from coffre.identity.synthetic import generate_patients
from coffre.labwork import access, catalogue
from coffre.labwork.models import CriticalValue, Order, OrderCounter, Result, Specimen
from coffre.labwork.orders import OrderRequest, create_order
from coffre.labwork.sealing import PatientKeys, unseal
from coffre.labwork.synthetic import _CLINICAL, END, START, Counts, generate_history
from coffre.setup import _recording
from coffre.tenancy.actors import cli_actor
from tests.cli_helpers import drop_database, make_cli
from tests.lab_helpers import staff_of

PATIENTS = 120
SEED = 31


def made_patients(lab, count: int = PATIENTS, seed: int = SEED) -> list[tuple]:
    made: list[tuple] = []
    report = import_rows(cli_actor(lab.id, role="generate"),
                         lambda: dict_rows(generate_patients(count, seed)),
                         encrypt=_recording(made))
    assert not report.errors
    return made


def history(lab, seed: int = SEED, parallel: bool = False) -> tuple[list[tuple], Counts]:
    made = made_patients(lab)
    counts = Counts()
    written = generate_history(lab.id, made, seed=seed, counts=counts, parallel=parallel)
    assert written == counts.results
    return made, counts


def sequence(lab) -> list[tuple]:
    """(order number, position, LOINC, state) of a lab's results, in order."""
    return list(Result.unscoped.filter(lab=lab).order_by("order__number", "position")
                .values_list("order__number", "position", "loinc", "state"))


@pytest.fixture
def generated(lab_a):
    made, counts = history(lab_a)
    return lab_a, made, counts


def test_counts_and_shape(generated):
    lab, _, counts = generated
    assert counts.patients == PATIENTS
    assert counts.orders == Order.unscoped.filter(lab=lab).count()
    assert counts.specimens == Specimen.unscoped.filter(lab=lab).count()
    assert counts.results == Result.unscoped.filter(lab=lab).count()
    assert counts.criticals == CriticalValue.objects.filter(lab=lab).count()
    # Poisson mean 1.6 orders per patient, about 6.5 results per order.
    assert 1.1 < counts.orders / PATIENTS < 2.1
    assert 4 < counts.results / counts.orders < 10
    assert set(Result.unscoped.filter(lab=lab).values_list("state", flat=True)) == \
        {"published"}
    assert set(Specimen.unscoped.filter(lab=lab).values_list("state", flat=True)) == \
        {"received"}
    assert set(Order.unscoped.filter(lab=lab).values_list("report_count", flat=True)) == {1}
    # Nobody validated (no account in this lab when it was generated).
    assert not Result.unscoped.filter(lab=lab, bio_validated_by__isnull=False).exists()


def test_orders_open_through_the_access_layer(generated):
    lab, _, _ = generated
    biologist = staff_of(lab).biologist
    checked = flagged = calculated = 0
    for order in Order.unscoped.filter(lab=lab).order_by("number")[:60]:
        view = access.access_order(biologist, order.id)
        assert view.results, order.number
        for result in view.results:
            number = catalogue.numeric(result.value)
            assert number is not None, result.test.code
            assert 0 < number < 100_000, (result.test.code, number)
            assert result.flag == catalogue.flag(result.test, result.value,
                                                 view.patient.sex, _age(view))
            assert result.comment == ""
            flagged += bool(result.flag)
            calculated += result.result.source == "calculated"
            checked += 1
        assert view.prescriber_rpps == "" or view.prescriber_rpps.startswith("19")
    assert checked > 200
    assert 0 < flagged < checked * 0.25  # about 8% abnormal
    assert calculated > 0


def _age(view) -> int:
    birth = dt.date.fromisoformat(view.patient.birth_date)
    return (timezone.localdate(view.order.created_at) - birth).days


def test_calculated_results_follow_the_catalogue(generated):
    lab, _, _ = generated
    keys = PatientKeys(lab.id)
    egfr = catalogue.test("DFG")
    rows = list(Result.unscoped.filter(lab=lab, loinc=egfr.loinc)[:20])
    assert rows
    biologist = staff_of(lab).biologist
    for row in rows:
        view = access.access_order(biologist, row.order_id)
        values = {r.result.loinc: r.value for r in view.results}
        age_years = _age(view) // 365
        assert unseal(keys[row.patient_id], "result", "value", row.id, row.value) == \
            catalogue.calculate(egfr, values, view.patient.sex, age_years)


def test_times_stay_within_the_period_and_in_order(generated):
    lab, _, _ = generated
    for order in Order.unscoped.filter(lab=lab):
        assert START <= timezone.localdate(order.created_at) <= END
    rows = Result.unscoped.filter(lab=lab).select_related("specimen", "order")
    for result in rows:
        specimen = result.specimen
        assert result.order.created_at <= specimen.collected_at <= specimen.received_at
        assert specimen.received_at < result.entered_at < result.tech_validated_at \
            < result.bio_validated_at < result.published_at
        days = (timezone.localdate(result.published_at)
                - timezone.localdate(result.order.created_at)).days
        assert days in (0, 1)
        assert START <= timezone.localdate(result.published_at) <= END


def test_no_order_before_the_patient_was_born(generated):
    lab, made, _ = generated
    births = {pid: dt.date.fromisoformat(birth) for pid, _, _, birth, *_ in made}
    for patient_id, created in Order.unscoped.filter(lab=lab).values_list(
            "patient_id", "created_at"):
        assert timezone.localdate(created) > births[patient_id]


def test_deterministic_for_a_seed(lab_a, lab_b):
    history(lab_a)
    history(lab_b, parallel=True)  # the forked maker makes the same rows
    first, second = sequence(lab_a), sequence(lab_b)
    assert first and first == second
    assert sorted(Specimen.unscoped.filter(lab=lab_a).values_list("barcode", flat=True)) \
        == sorted(Specimen.unscoped.filter(lab=lab_b).values_list("barcode", flat=True))


def test_another_seed_another_history(lab_a, lab_b):
    history(lab_a, seed=1)
    history(lab_b, seed=2)
    assert sequence(lab_a) != sequence(lab_b)


def test_order_numbers_unique_and_counters_written(generated):
    lab, _, counts = generated
    numbers = list(Order.unscoped.filter(lab=lab).values_list("number", flat=True))
    assert len(numbers) == len(set(numbers)) == counts.orders
    assert all(len(n) == 10 and n.isdigit() for n in numbers)
    last = {}
    for number in numbers:
        day = dt.date(2000 + int(number[:2]), int(number[2:4]), int(number[4:6]))
        last[day] = max(last.get(day, 0), int(number[6:]))
    assert dict(OrderCounter.objects.filter(lab=lab).values_list("day", "last")) == last


def test_create_order_after_generation_takes_a_fresh_number(generated):
    lab, made, _ = generated
    busiest = (OrderCounter.objects.filter(lab=lab).order_by("-last", "day").first())
    at = dt.datetime.combine(busiest.day, dt.time(10), timezone.get_current_timezone())
    secretary = staff_of(lab).secretary
    order = create_order(secretary, OrderRequest(patient_id=made[0][0], tests=("TSH",)),
                         now=at)
    assert order.number == f"{busiest.day:%y%m%d}{busiest.last + 1:04d}"
    assert Order.unscoped.filter(lab=lab, number=order.number).count() == 1


def test_validations_name_the_labs_biologist_when_there_is_one(lab_a):
    staff = staff_of(lab_a)
    from django.contrib.auth import get_user_model

    biologist = get_user_model().objects.get(username=staff.biologist.person)
    history(lab_a)
    assert set(Result.unscoped.filter(lab=lab_a).values_list(
        "bio_validated_by_id", flat=True)) == {biologist.id}


def test_values_are_sealed_at_rest(generated):
    """Each blob is a ciphertext of its own value (not the value in clear), and the clear
    columns of the tables hold none of the decimal values either."""
    lab, _, _ = generated
    keys = PatientKeys(lab.id)
    values, flag_sizes = set(), set()
    for row in Result.unscoped.filter(lab=lab):
        key = keys[row.patient_id]
        value = unseal(key, "result", "value", row.id, row.value)
        unseal(key, "result", "flag", row.id, row.flag)
        if len(value) >= 4:  # shorter byte strings occur in random bytes by chance
            assert value.encode() not in bytes(row.value)
        assert bytes(row.value)[0] == 1  # the vault's ciphertext format
        flag_sizes.add(len(bytes(row.flag)))
        if "." in value and len(value) >= 4:
            values.add(value)
    assert len(values) > 50
    assert len(flag_sizes) == 1  # padded: "", "L" and "HH" look alike
    clear = []
    with connection.cursor() as cursor:
        for table in ("lab_result", "lab_order", "lab_specimen", "lab_criticalvalue"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
            for row in cursor.fetchall():
                clear.extend(str(v) for v in row if isinstance(v, str))
    text = "\n".join(clear)
    # Timestamps are whole minutes and ids hexadecimal: a decimal value cannot hide there.
    leaked = [value for value in values if value in text]
    assert not leaked


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    cli.run("init")
    yield cli
    drop_database(database)


def test_generate_command_writes_sealed_history(cli):
    result = cli.run("generate", "--patients", "80", "--labs", "2", "--seed", "9")
    assert "generated 80 patients in 2 laboratories" in result.stdout
    assert "lab history" in result.stderr
    if "COFFRE_DATABASE_URL" in cli.env:
        return
    import sqlite3

    with sqlite3.connect(cli.home / "coffre.sqlite3") as db:
        orders = db.execute("SELECT COUNT(*) FROM lab_order").fetchone()[0]
        results = db.execute("SELECT COUNT(*) FROM lab_result").fetchone()[0]
        counters = db.execute("SELECT SUM(last) FROM lab_ordercounter").fetchone()[0]
    assert orders > 60 and results > 5 * orders // 2
    assert counters == orders
    data = b"".join(path.read_bytes() for path in cli.home.glob("coffre.sqlite3*"))
    for clinical in filter(None, _CLINICAL):
        assert clinical.encode() not in data


def test_prescriber_portal_finds_the_generated_orders(generated):
    from coffre.labwork.orders import prescriber_filter

    lab, _, _ = generated
    biologist = staff_of(lab).biologist
    found = 0
    for order in Order.unscoped.filter(lab=lab).order_by("number")[:20]:
        rpps = access.access_order(biologist, order.id).prescriber_rpps
        if rpps:
            assert Order.unscoped.filter(prescriber_filter([lab.id], rpps),
                                         id=order.id).exists()
            found += 1
    assert found > 10
