"""PostgreSQL row-level security on the patient-data tables (coffre.tenancy.rls)."""

from django.db import migrations

from coffre.tenancy import rls


def enable(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in rls.enable_sql():
            schema_editor.execute(statement)


def disable(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in rls.disable_sql():
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("lab", "0002_order_bi_prescriber_order_order_prescriber"),
        ("identity", "0001_initial"),
    ]

    operations = [migrations.RunPython(enable, disable)]
