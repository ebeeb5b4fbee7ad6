"""A change generation, bumped by triggers in the same transaction as every change that
can alter how a path resolves; each worker's resolution cache follows it
(`service.invalidation`).

- `pulp_content_generation`: one row, the generation. Writers bump it as they commit, so
  generations are committed in order; a reader that saw generation N has seen every change
  up to N.
- `pulp_content_change`: for bumps that concern one content artifact only (its artifact
  was saved, a remote artifact of it failed or was cleared), the content artifact's id;
  every other bump concerns everything. The last 1,000 are kept: a reader further behind
  drops everything.
- PostgreSQL also sends `NOTIFY pulp_content_changes, '<generation> <content artifact
  id or *>'` on commit.

Re-encrypting secrets (`secrets rotate`) rewrites remotes and guards, so it bumps too
(their answers carry the decrypted values, which do not change; dropping is harmless).

Neither table is a model: `flush` leaves the generation alone, so it never goes back.
On PostgreSQL the triggers are deferred to commit (constraint triggers), so the
generation row is locked only while a transaction commits, after its other locks (no
deadlock with the rows it changed), and a transaction that changes everything bumps once.
"""

from django.db import migrations

# Tables where any row change may alter an answer.
EVERYTHING = (
    "service_distribution",
    "service_publication",
    "service_publishedartifact",
    "service_publishedmetadata",
    "service_repositoryversion",
    "service_repositoryversioncontent",
    "service_remote",
    "service_contentguard",
)
# A content artifact whose artifact is saved (NULL before), with nothing else changed.
CA_SAVED = (
    "OLD.artifact_id IS NULL AND OLD.content_id = NEW.content_id "
    "AND OLD.relative_path = NEW.relative_path"
)
# A remote artifact whose state changes (failed_at, digests) where it is looked up from.
RA_STATE = (
    "OLD.content_artifact_id = NEW.content_artifact_id AND OLD.remote_id = NEW.remote_id "
    "AND OLD.url = NEW.url"
)
# (table, operation, WHEN, scope expression or None for everything)
ROW_TRIGGERS = [
    *((t, op, None, None) for t in EVERYTHING for op in ("INSERT", "UPDATE", "DELETE")),
    ("service_content", "UPDATE", None, None),
    ("service_content", "DELETE", None, None),
    # The lazy save's INSERT ... ON CONFLICT DO UPDATE leaves an existing artifact as it was.
    ("service_artifact", "UPDATE", "OLD.* IS DISTINCT FROM NEW.*", None),
    ("service_artifact", "DELETE", None, None),
    ("service_contentartifact", "UPDATE", CA_SAVED, "NEW.id"),
    ("service_contentartifact", "UPDATE", f"NOT ({CA_SAVED})", None),
    ("service_contentartifact", "DELETE", None, None),
    ("service_remoteartifact", "INSERT", None, None),
    ("service_remoteartifact", "UPDATE", RA_STATE, "NEW.content_artifact_id"),
    ("service_remoteartifact", "UPDATE", f"NOT ({RA_STATE})", None),
    ("service_remoteartifact", "DELETE", None, None),
]
TRUNCATED = sorted({t for t, *_ in ROW_TRIGGERS})
KEEP = 1000

TABLES = [
    "CREATE TABLE pulp_content_generation (id integer PRIMARY KEY, value bigint NOT NULL)",
    "INSERT INTO pulp_content_generation (id, value) VALUES (1, 0)",
    "CREATE TABLE pulp_content_change "
    "(generation bigint PRIMARY KEY, content_artifact_id bigint NOT NULL)",
]

# -- PostgreSQL ------------------------------------------------------------------------------
PG_BUMP = f"""
CREATE FUNCTION pulp_content_bump(scope bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    seen text := coalesce(current_setting('pulp_content.changes', true), '');
    gen bigint;
BEGIN
    IF seen = 'all' THEN
        RETURN;  -- this transaction has told everyone to drop everything already
    END IF;
    IF scope IS NOT NULL THEN
        -- Past 100 single changes in one transaction, one "everything" says it cheaper.
        IF seen <> '' AND seen::integer >= 100 THEN
            scope := NULL;
        ELSE
            PERFORM set_config(
                'pulp_content.changes', (coalesce(nullif(seen, '')::integer, 0) + 1)::text, true
            );
        END IF;
    END IF;
    IF scope IS NULL THEN
        PERFORM set_config('pulp_content.changes', 'all', true);
    END IF;
    UPDATE pulp_content_generation SET value = value + 1 WHERE id = 1 RETURNING value INTO gen;
    IF scope IS NOT NULL THEN
        INSERT INTO pulp_content_change (generation, content_artifact_id) VALUES (gen, scope);
        DELETE FROM pulp_content_change WHERE generation <= gen - {KEEP};
    END IF;
    PERFORM pg_notify('pulp_content_changes', gen::text || ' ' || coalesce(scope::text, '*'));
END
$$"""
PG_TRIGGER_FUNCTION = """
CREATE FUNCTION pulp_content_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pulp_content_bump(CASE WHEN TG_NARGS > 0 THEN
        (to_jsonb(NEW) ->> TG_ARGV[0])::bigint END);
    RETURN NULL;
END
$$"""


def _pg_statements() -> list[str]:
    statements = [*TABLES, PG_BUMP, PG_TRIGGER_FUNCTION]
    for n, (table, op, when, scope) in enumerate(ROW_TRIGGERS):
        condition = f" WHEN ({when})" if when else ""
        arg = f"'{scope.removeprefix('NEW.')}'" if scope else ""
        statements.append(
            f"CREATE CONSTRAINT TRIGGER pulp_content_change_{n} AFTER {op} ON {table} "
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW{condition} "
            f"EXECUTE FUNCTION pulp_content_changed({arg})"
        )
    for table in TRUNCATED:
        statements.append(
            f"CREATE TRIGGER pulp_content_truncated AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pulp_content_changed()"
        )
    return statements


# -- SQLite ----------------------------------------------------------------------------------
SQLITE_BUMP = "UPDATE pulp_content_generation SET value = value + 1 WHERE id = 1;"


def _sqlite_statements() -> list[str]:
    return [*TABLES, *sqlite_triggers()]


def sqlite_triggers() -> list[str]:
    """The SQLite triggers (also put back by `database.restore_change_triggers` after a
    later migration rebuilt their table)."""
    statements = []
    for n, (table, op, when, scope) in enumerate(ROW_TRIGGERS):
        condition = f" WHEN {when}" if when and "OLD.*" not in when else ""
        if "OLD.*" in (when or ""):
            # SQLite has no row comparison: compare the columns that make an answer.
            condition = " WHEN " + " OR ".join(
                f"OLD.{c} IS NOT NEW.{c}" for c in ("sha256", "size", "file")
            )
        body = SQLITE_BUMP
        if scope:
            body += (
                " INSERT INTO pulp_content_change (generation, content_artifact_id)"
                f" SELECT value, {scope} FROM pulp_content_generation WHERE id = 1;"
                " DELETE FROM pulp_content_change WHERE generation <="
                f" (SELECT value FROM pulp_content_generation WHERE id = 1) - {KEEP};"
            )
        statements.append(
            f"CREATE TRIGGER pulp_content_change_{n} AFTER {op} ON {table}{condition} "
            f"BEGIN {body} END"
        )
    return statements


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in _pg_statements() if vendor == "postgresql" else _sqlite_statements():
        schema_editor.execute(sql)


def back(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for n, (table, *_) in enumerate(ROW_TRIGGERS):
        on = f" ON {table}" if vendor == "postgresql" else ""
        schema_editor.execute(f"DROP TRIGGER IF EXISTS pulp_content_change_{n}{on}")
    if vendor == "postgresql":
        for table in TRUNCATED:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS pulp_content_truncated ON {table}")
        schema_editor.execute("DROP FUNCTION IF EXISTS pulp_content_changed()")
        schema_editor.execute("DROP FUNCTION IF EXISTS pulp_content_bump(bigint)")
    schema_editor.execute("DROP TABLE IF EXISTS pulp_content_change")
    schema_editor.execute("DROP TABLE IF EXISTS pulp_content_generation")


class Migration(migrations.Migration):
    dependencies = [("service", "0005_remote_max_size_forward_query")]
    operations = [migrations.RunPython(forward, back)]
