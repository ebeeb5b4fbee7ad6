"""Hosts reading each other's downloads (`service.peers`): a secret they share through the
database (encrypted like the others; `peer` signs their requests to each other), and
where the host behind each session of download claims is reached (`service.locks`)."""

from django.db import migrations, models

import pulp_content.service.fields


class Migration(migrations.Migration):
    dependencies = [("service", "0010_missing_upstream_404")]

    operations = [
        migrations.CreateModel(
            name="ServiceSecret",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=64, unique=True)),
                ("value", pulp_content.service.fields.EncryptedTextField()),
            ],
        ),
        migrations.CreateModel(
            name="PeerHost",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("backend_pid", models.IntegerField()),
                ("backend_start", models.DateTimeField()),
                ("url", models.TextField()),
            ],
            options={
                "indexes": [models.Index(fields=["backend_pid"], name="peerhost_pid")],
            },
        ),
    ]
