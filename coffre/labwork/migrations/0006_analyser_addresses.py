"""Each lab's allow-list of analyser addresses for the MLLP listener (coffre.labwork.mllp,
`coffre hl7 analysers`)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("lab", "0005_result_mac"),
    ]

    operations = [
        migrations.AddField(
            model_name="labworkflowsettings",
            name="analyser_addresses",
            field=models.CharField(blank=True, default="", max_length=1000),
        ),
    ]
