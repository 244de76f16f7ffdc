"""Seal the purpose and the recipient of export requests (they can name a patient or a
diagnosis).

Existing rows are sealed with the installation key "export-text"; this needs the master
key (run through `coffre init`, which loads it). The clear columns are then dropped:
SQLite overwrites the freed pages (secure_delete), PostgreSQL keeps dead tuples until
VACUUM (docs/operations.md, "Exports").
"""

from django.db import migrations, models


def seal_existing(apps, schema_editor) -> None:
    ExportRequest = apps.get_model("exports", "ExportRequest")
    rows = ExportRequest.objects.using(schema_editor.connection.alias)
    if not rows.exists():
        return  # a new installation: no key needed yet
    from coffre.exports import sealing

    for export in rows.iterator():
        export.purpose_sealed = sealing.seal("purpose", export.pk, export.purpose)
        export.recipient_sealed = sealing.seal("recipient", export.pk, export.recipient)
        export.save(update_fields=["purpose_sealed", "recipient_sealed"])


def open_existing(apps, schema_editor) -> None:
    ExportRequest = apps.get_model("exports", "ExportRequest")
    rows = ExportRequest.objects.using(schema_editor.connection.alias)
    if not rows.exists():
        return
    from coffre.exports import sealing

    for export in rows.iterator():
        export.purpose = sealing.open_text("purpose", export.pk, export.purpose_sealed)
        export.recipient = sealing.open_text("recipient", export.pk, export.recipient_sealed)
        export.save(update_fields=["purpose", "recipient"])


class Migration(migrations.Migration):

    dependencies = [
        ("exports", "0002_exportrequest_format"),
        ("keyring", "0004_installation_key_versions"),  # seal_existing reads the keyring
    ]

    operations = [
        migrations.AddField(
            model_name="exportrequest",
            name="purpose_sealed",
            field=models.BinaryField(default=b""),
        ),
        migrations.AddField(
            model_name="exportrequest",
            name="recipient_sealed",
            field=models.BinaryField(default=b""),
        ),
        # Reversible: unsealing needs the key, as sealing did.
        migrations.AlterField(
            model_name="exportrequest",
            name="purpose",
            field=models.TextField(default=""),
        ),
        migrations.AlterField(
            model_name="exportrequest",
            name="recipient",
            field=models.CharField(default="", max_length=200),
        ),
        migrations.RunPython(seal_existing, open_existing),
        migrations.RemoveField(model_name="exportrequest", name="purpose"),
        migrations.RemoveField(model_name="exportrequest", name="recipient"),
        migrations.RenameField(model_name="exportrequest", old_name="purpose_sealed",
                               new_name="purpose"),
        migrations.RenameField(model_name="exportrequest", old_name="recipient_sealed",
                               new_name="recipient"),
    ]
