"""Remotes bound what a client's request may download (max_size) and say whether a
pull-through request's query string goes upstream (forward_query)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("service", "0004_encrypted_secrets"),
    ]

    operations = [
        migrations.AddField(
            model_name="remote",
            name="forward_query",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="remote",
            name="max_size",
            field=models.BigIntegerField(null=True),
        ),
    ]
