"""When an artifact was last served, and a remote's quota: `pulp-content reclaim
--older-than` and the remotes' quotas reclaim the least recently used first
(`service.reclaim`).

Both NULL-able with no default: SQLite adds it in place (ALTER TABLE ... ADD COLUMN) instead
of rebuilding the table, which would drop the change triggers of migration 0006. NULL
means never served since it was stored (its `created` stands in), and no quota.

Workers write it in batches (`service.usage`); it never changes an answer, so on
PostgreSQL the artifact UPDATE trigger of migration 0006 (which fired on any column,
`OLD.* IS DISTINCT FROM NEW.*`) now fires on the columns that make an answer only, as the
SQLite one always did: recording use must not empty every worker's resolution cache.
"""

import importlib

from django.db import migrations, models

_GENERATION = importlib.import_module("pulp_content.service.migrations.0006_change_generation")
# Migration 0006's trigger on UPDATE of service_artifact, named by its place in ROW_TRIGGERS.
TRIGGER = next(
    f"pulp_content_change_{n}"
    for n, (table, op, *_) in enumerate(_GENERATION.ROW_TRIGGERS)
    if (table, op) == ("service_artifact", "UPDATE")
)
ANSWER_COLUMNS = ("sha256", "size", "file")


def _create(when: str) -> str:
    return (
        f"CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER UPDATE ON service_artifact "
        f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({when}) "
        "EXECUTE FUNCTION pulp_content_changed()"
    )


def narrow(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    when = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ANSWER_COLUMNS)
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON service_artifact")
    schema_editor.execute(_create(when))


def widen(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON service_artifact")
    schema_editor.execute(_create("OLD.* IS DISTINCT FROM NEW.*"))


class Migration(migrations.Migration):
    dependencies = [("service", "0008_fresh_pull_through_freshness")]

    operations = [
        migrations.AddField("artifact", "last_used", models.DateTimeField(null=True)),
        migrations.AddField("remote", "quota", models.BigIntegerField(null=True)),
        migrations.RunPython(narrow, widen),
    ]
