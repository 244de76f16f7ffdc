from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('exports', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='exportrequest',
            name='format',
            field=models.CharField(choices=[('csv', 'CSV'), ('ndjson', 'FHIR NDJSON')], default='csv', max_length=8),
        ),
    ]
