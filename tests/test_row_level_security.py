"""PostgreSQL row-level security, the second line of tenancy defence: even a query that
forgets the lab filter reaches only the labs the request acts for.

The suite connects as a superuser, which PostgreSQL exempts from row-level security;
these tests switch to an ordinary role (as production must use) for what they check."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from coffre.identity.access import create_patient
from coffre.identity.models import Patient
from coffre.lab.models import Order, Result, Specimen
from coffre.labs import rls
from tests.conftest import make_nir, patient_row, second_factor_done
from tests.lab_helpers import order_for, staff_of

pytestmark = pytest.mark.postgres
PROBE = "coffre_rls_probe"


@pytest.fixture
def postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("runs in the PostgreSQL pass of the suite (COFFRE_DATABASE_URL)")


@pytest.fixture
def two_labs(postgres, lab_a, lab_b):
    """A patient with an order in each lab."""
    for lab, sex in ((lab_a, "F"), (lab_b, "M")):
        staff = staff_of(lab, suffix=f"rls{lab.id}")
        person = create_patient(staff.secretary, patient_row(
            sex=sex, nir=make_nir(sex, 1985, 3), used_name=""))
        order_for(staff.secretary, person.id, "K")
    return lab_a, lab_b


@pytest.fixture
def ordinary_role(two_labs):
    """Act as a role without superuser or BYPASSRLS (rolled back with the test)."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {PROBE} NOLOGIN")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public "
                       f"TO {PROBE}")
        cursor.execute(f"SET ROLE {PROBE}")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def _labs_seen() -> dict[str, frozenset[int]]:
    return {model.__name__: frozenset(model.unscoped.values_list("lab_id", flat=True))
            for model in (Patient, Order, Specimen, Result)}


def test_an_unscoped_query_sees_only_the_labs_of_the_scope(two_labs, ordinary_role):
    lab_a, lab_b = two_labs
    rls.limit_to([lab_a.id])
    assert set(_labs_seen().values()) == {frozenset({lab_a.id})}
    rls.widen([lab_b.id])
    assert _labs_seen()["Patient"] == {lab_a.id, lab_b.id}
    rls.limit_to([])
    assert set(_labs_seen().values()) == {frozenset()}
    rls.open_all()
    assert _labs_seen()["Result"] == {lab_a.id, lab_b.id}


def test_a_write_into_another_lab_is_refused_by_the_database(two_labs, ordinary_role):
    lab_a, lab_b = two_labs
    rls.limit_to([lab_a.id])
    with (pytest.raises(ProgrammingError, match="row-level security"),
          transaction.atomic(), connection.cursor() as cursor):
        cursor.execute("UPDATE lab_order SET lab_id = %s", [lab_b.id])


def test_a_staff_page_limits_its_connection_to_the_acting_lab(two_labs, client):
    from django.contrib.auth import get_user_model

    lab_a, _ = two_labs
    client.force_login(get_user_model().objects.get(username=f"secretaryrls{lab_a.id}{lab_a.id}"))
    second_factor_done(client)
    assert client.get("/paillasses/").status_code == 200
    assert rls.current() == str(lab_a.id)


def test_the_superuser_exemption_is_why_production_needs_an_ordinary_role(two_labs):
    """The suite's own connection (a superuser) sees every lab whatever the scope: the
    policy protects only a deployment that follows docs/operations.md."""
    lab_a, lab_b = two_labs
    rls.limit_to([lab_a.id])
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles "
                       "WHERE rolname = current_user")
        exempt = cursor.fetchone()[0]
    assert exempt and _labs_seen()["Patient"] == {lab_a.id, lab_b.id}
