"""Secrets encrypted at rest, and no credential left in a URL.

Remote passwords (and the new proxy password), client keys, extra headers and content
guard settings become encrypted fields (service.fields; the key file is made on first
need). Existing rows are encrypted here; a `user:password@` in a remote's URL or proxy
URL moves into its own fields, and leaves the remote artifact URLs made from it.
"""

from urllib.parse import unquote, urlsplit, urlunsplit

from django.db import migrations, models

import pulp_content.service.fields

CREDENTIALS = {"url": ("username", "password"), "proxy_url": ("proxy_username", "proxy_password")}
SEALED_TEXT = {"service_remote": ("password", "proxy_password", "client_key")}
SEALED_JSON = {"service_remote": ("headers",), "service_contentguard": ("settings",)}


def split_userinfo(url):
    """(url without `user:password@`, user, password); user None when there was none."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=host))
    return clean, unquote(user), unquote(password) if sep else None


def move_credentials(remote):
    for key, (user_key, password_key) in CREDENTIALS.items():
        if not getattr(remote, key):
            continue
        clean, user, password = split_userinfo(getattr(remote, key))
        setattr(remote, key, clean)
        # Separate fields won over the URL's userinfo (aiohttp refused to combine them).
        if user is not None and getattr(remote, user_key) is None:
            setattr(remote, user_key, user)
            setattr(remote, password_key, password)


def encrypt(apps, schema_editor):
    Remote = apps.get_model("service", "Remote")
    RemoteArtifact = apps.get_model("service", "RemoteArtifact")
    ContentGuard = apps.get_model("service", "ContentGuard")
    for remote in Remote.objects.order_by("pk"):
        move_credentials(remote)
        remote.save()  # the fields encrypt on save
    changed = []
    for ra in RemoteArtifact.objects.filter(url__contains="@").only("pk", "url").iterator():
        clean = split_userinfo(ra.url)[0]
        if clean != ra.url:
            ra.url = clean
            changed.append(ra)
    RemoteArtifact.objects.bulk_update(changed, ["url"], batch_size=1000)
    for guard in ContentGuard.objects.order_by("pk"):
        guard.save()


def decrypt(apps, schema_editor):
    """Back to plaintext columns (the credentials stay in their own fields)."""
    import json

    from pulp_content.service.fields import unseal_json, unseal_text

    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for table, columns in SEALED_TEXT.items():
            for column in columns:
                cursor.execute(f"SELECT id, {column} FROM {table}")
                for pk, value in cursor.fetchall():
                    cursor.execute(
                        f"UPDATE {table} SET {column} = %s WHERE id = %s", [unseal_text(value), pk]
                    )
        for table, columns in SEALED_JSON.items():
            for column in columns:
                cursor.execute(f"SELECT id, {column} FROM {table}")
                for pk, value in cursor.fetchall():
                    plain = json.dumps(unseal_json(value))
                    cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [plain, pk])


class Migration(migrations.Migration):
    dependencies = [("service", "0003_declare_byte_order_collation")]

    operations = [
        migrations.AddField(
            model_name="remote",
            name="proxy_username",
            field=models.TextField(null=True),
        ),
        migrations.AddField(
            model_name="remote",
            name="proxy_password",
            field=pulp_content.service.fields.EncryptedTextField(null=True),
        ),
        migrations.AlterField(
            model_name="remote",
            name="password",
            field=pulp_content.service.fields.EncryptedTextField(null=True),
        ),
        migrations.AlterField(
            model_name="remote",
            name="client_key",
            field=pulp_content.service.fields.EncryptedTextField(null=True),
        ),
        migrations.AlterField(
            model_name="remote",
            name="headers",
            field=pulp_content.service.fields.EncryptedJSONField(default=dict),
        ),
        migrations.AlterField(
            model_name="contentguard",
            name="settings",
            field=pulp_content.service.fields.EncryptedJSONField(default=dict),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
