"""What the upstream of a pull-through distribution said it does not have (a 404), kept
in the database for the remote's metadata max age, so that every worker and host answers
it without asking again (`service.missing`). A table of its own: no change trigger, as
it never changes a resolution's answer."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("service", "0009_reclaim_last_used_quota")]

    operations = [
        migrations.CreateModel(
            name="UpstreamMissing",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("url", models.TextField()),
                ("noted", models.DateTimeField()),
                ("until", models.DateTimeField()),
                (
                    "remote",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, to="service.remote"
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["remote", "url"], name="missing_remote_url")],
            },
        ),
    ]
