"""A secret the hosts of one service share through the database (encrypted like the
others): `peer` signs the requests one host makes to read another's download in
progress (`service.peers`)."""

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
    ]
