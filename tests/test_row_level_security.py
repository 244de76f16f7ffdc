"""PostgreSQL row-level security, the second line of tenancy defence: even a query that
forgets the lab filter reaches only the labs the request acts for.

The PostgreSQL pass of the suite connects as an ordinary application role, as
production must (tests/app_role.py), so these tests and every other one run under the
policies; the one that shows the superuser exemption opens a superuser connection of
its own."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from coffre.identity.access import create_patient
from coffre.identity.models import Patient
from coffre.labwork.models import Order, Result, Specimen
from coffre.tenancy import rls
from tests.conftest import make_nir, patient_row, second_factor_done
from tests.lab_helpers import order_for, staff_of

pytestmark = pytest.mark.postgres


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


def _labs_seen() -> dict[str, frozenset[int]]:
    return {model.__name__: frozenset(model.unscoped.values_list("lab_id", flat=True))
            for model in (Patient, Order, Specimen, Result)}


def test_an_unscoped_query_sees_only_the_labs_of_the_scope(two_labs):
    lab_a, lab_b = two_labs
    rls.limit_to([lab_a.id])
    assert set(_labs_seen().values()) == {frozenset({lab_a.id})}
    rls.widen([lab_b.id])
    assert _labs_seen()["Patient"] == {lab_a.id, lab_b.id}
    rls.limit_to([])
    assert set(_labs_seen().values()) == {frozenset()}
    rls.open_all()
    assert _labs_seen()["Result"] == {lab_a.id, lab_b.id}


def test_a_write_into_another_lab_is_refused_by_the_database(two_labs):
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


def test_the_suite_connects_as_an_ordinary_role_that_owns_no_patient_table(postgres):
    """What makes every test of the PostgreSQL pass a test of the policies too."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = "
                       "current_user")
        assert cursor.fetchone() == (False, False)
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND "
                       "relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)",
                       [list(rls.TABLES)])
        assert cursor.fetchone()[0] == 0
        with pytest.raises(ProgrammingError), transaction.atomic():
            cursor.execute("ALTER TABLE identity_patient DISABLE ROW LEVEL SECURITY")
        with pytest.raises(ProgrammingError), transaction.atomic():
            cursor.execute("TRUNCATE lab_result")


@pytest.mark.django_db(transaction=True)
def test_the_superuser_exemption_is_why_production_needs_an_ordinary_role(two_labs):
    """A superuser sees every lab whatever the scope: the policy protects only a
    deployment that serves as the application role (docs/deploy.md)."""
    import psycopg

    from tests.app_role import admin_url

    lab_a, lab_b = two_labs
    with psycopg.connect(admin_url(connection.settings_dict["NAME"])) as superuser:
        superuser.execute("SELECT set_config(%s, %s, false)", [rls.SETTING, str(lab_a.id)])
        labs = {row[0] for row in superuser.execute("SELECT lab_id FROM identity_patient")}
    assert labs == {lab_a.id, lab_b.id}
    rls.limit_to([lab_a.id])  # the suite's own connection is bound
    assert _labs_seen()["Patient"] == {lab_a.id}
