"""Results get a tag over their clear columns (coffre.labwork.sealing: test code, order,
state, validation stamps), and the accounts named in those stamps can no longer be
deleted from under them (PROTECT: deactivate them instead).

Existing results are tagged here, under each patient's data key: on a database that has
results this migration needs the master key (`coffre init` runs it with the key file or
COFFRE_MASTER_KEY in place). A fresh database has none and needs no key.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def tag_existing(apps, schema_editor) -> None:
    from coffre.labwork.sealing import tag_untagged_results
    from coffre.vault import KeyProviderError, VaultError

    results = apps.get_model("lab", "Result")
    if not results._default_manager.exists():
        return
    try:
        tag_untagged_results(results, apps.get_model("identity", "Patient"))
    except VaultError as exc:  # the command says "key problem: ..." (exit 2)
        raise KeyProviderError(
            f"tagging the existing lab results needs the master key ({exc}); nothing was "
            "migrated: run `coffre init` again with the key file (or COFFRE_MASTER_KEY) "
            "in place") from None


class Migration(migrations.Migration):

    dependencies = [
        ("lab", "0004_per_lab_index_keys"),
        ("keyring", "0004_installation_key_versions"),  # the tags need the keyring
        ("identity", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="result",
            name="mac",
            field=models.BinaryField(default=b""),
        ),
        migrations.AlterField(
            model_name="result",
            name="bio_validated_by",
            field=models.ForeignKey(blank=True, null=True,
                                    on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name="result",
            name="entered_by",
            field=models.ForeignKey(blank=True, null=True,
                                    on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name="result",
            name="tech_validated_by",
            field=models.ForeignKey(blank=True, null=True,
                                    on_delete=django.db.models.deletion.PROTECT,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(tag_existing, migrations.RunPython.noop),
    ]
