"""On PostgreSQL, compare relative paths byte by byte (the C collation).

Resolution finds "everything below dir/" as the range `'dir/' < path < 'dir0'`, which
holds only in byte order; SQLite compares text that way already. With the C collation
the unique (parent, relative_path) indexes serve those range scans too.
"""

from django.db import migrations

TABLES = (
    "service_publishedartifact",
    "service_publishedmetadata",
    "service_repositoryversioncontent",
)


def to_c_collation(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f'ALTER TABLE {table} ALTER COLUMN relative_path TYPE varchar(1024) COLLATE "C"'
        )


def back(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f'ALTER TABLE {table} ALTER COLUMN relative_path TYPE varchar(1024) COLLATE "default"'
        )


class Migration(migrations.Migration):
    dependencies = [("service", "0001_initial")]
    operations = [migrations.RunPython(to_c_collation, back)]
