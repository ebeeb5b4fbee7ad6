"""Pull-through freshness: a remote's mutable-file patterns, max age and max stale, and
what a pull-through copy remembers of its upstream (when it was last confirmed, its
ETag, Last-Modified and lifetime).

Every column is NULL-able with no default: SQLite then adds it in place
(ALTER TABLE ... ADD COLUMN) instead of rebuilding the table, which would drop the
change triggers of migration 0006. A change to these remote artifact columns keeps its
content artifact, remote and URL, so the existing trigger reports it as that content
artifact's state (each worker drops the cached answer for it)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("service", "0007_retry_remote_retries")]

    operations = [
        migrations.AddField("remote", "mutable", models.TextField(null=True)),
        migrations.AddField("remote", "metadata_max_age", models.IntegerField(null=True)),
        migrations.AddField("remote", "max_stale", models.IntegerField(null=True)),
        migrations.AddField("remoteartifact", "validated_at", models.DateTimeField(null=True)),
        migrations.AddField("remoteartifact", "etag", models.TextField(null=True)),
        migrations.AddField("remoteartifact", "last_modified", models.TextField(null=True)),
        migrations.AddField(
            "remoteartifact", "upstream_max_age", models.BigIntegerField(null=True)
        ),
    ]
