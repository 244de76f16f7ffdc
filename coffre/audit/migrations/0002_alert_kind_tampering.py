"""A new alert kind: lab rows changed outside Coffre (coffre.lab.sealing)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alert",
            name="kind",
            field=models.CharField(choices=[
                ("mass_reading", "Lecture massive"),
                ("account_locked", "Compte verrouillé"),
                ("canary", "Patient sentinelle consulté"),
                ("break_glass", "Bris de glace"),
                ("tampering", "Données modifiées hors de Coffre"),
            ], max_length=20),
        ),
    ]
