"""Each watermark fingerprint names the "exports" key version it derives from, so that
`coffre keys rotate --installation exports` keeps older versions while a fingerprint
needs them. Until now there was one version: existing rows get its id (a clear key id,
no key material is read)."""

from django.db import migrations, models


def name_the_version(apps, schema_editor) -> None:
    InstallationKey = apps.get_model("keyring", "InstallationKey")
    ExportWatermark = apps.get_model("exports", "ExportWatermark")
    alias = schema_editor.connection.alias
    key = InstallationKey.objects.using(alias).filter(purpose="exports").first()
    if key is not None:
        ExportWatermark.objects.using(alias).filter(key_id="").update(key_id=key.key_id)


class Migration(migrations.Migration):

    dependencies = [
        ("exports", "0004_exportrequest_approved_os_user"),
        ("keyring", "0004_installation_key_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="exportwatermark",
            name="key_id",
            field=models.CharField(default="", max_length=8),
        ),
        migrations.RunPython(name_the_version, migrations.RunPython.noop),
    ]
