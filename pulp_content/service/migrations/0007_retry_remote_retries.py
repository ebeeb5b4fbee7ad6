"""Remotes say how many times a request answered 429 or 5xx, or not answered, is sent
again before its first byte (Pulp's downloaders retry 3 times too)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("service", "0006_change_generation"),
    ]

    operations = [
        migrations.AddField(
            model_name="remote",
            name="retries",
            field=models.PositiveIntegerField(default=3),
        ),
    ]
