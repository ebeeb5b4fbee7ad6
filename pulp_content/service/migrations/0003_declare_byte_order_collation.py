"""The models declare the C collation that 0002 set by hand, so that a later AlterField
keeps it (on PostgreSQL this re-applies the same collation; SQLite has none)."""

from django.db import migrations

import pulp_content.service.models


class Migration(migrations.Migration):
    dependencies = [
        ("service", "0002_relative_path_byte_order"),
    ]

    operations = [
        migrations.AlterField(
            model_name="publishedartifact",
            name="relative_path",
            field=pulp_content.service.models.BytewisePathField(db_collation="C", max_length=1024),
        ),
        migrations.AlterField(
            model_name="publishedmetadata",
            name="relative_path",
            field=pulp_content.service.models.BytewisePathField(db_collation="C", max_length=1024),
        ),
        migrations.AlterField(
            model_name="repositoryversioncontent",
            name="relative_path",
            field=pulp_content.service.models.BytewisePathField(db_collation="C", max_length=1024),
        ),
    ]
