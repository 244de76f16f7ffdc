"""The operating-system user of a CLI approval (the account that signed is approved_by)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("exports", "0003_seal_purpose_recipient"),
    ]

    operations = [
        migrations.AddField(
            model_name="exportrequest",
            name="approved_os_user",
            field=models.CharField(blank=True, max_length=150),
        ),
    ]
